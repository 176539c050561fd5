/*-------------------------------------------------------------------------
 *
 * outcome.c
 *		What became of each tracked order: the outcome trigger.
 *
 * The outcome trigger sits on every registered table as AFTER UPDATE OF the
 * status column FOR EACH ROW, and does something only when a row leaves the
 * unpaid state.  Since 1.2 it has no WHEN clause for that but tests the old
 * and the new status itself, the unpaid value being its seventh argument: a
 * WHEN clause is parsed anew for every statement, which on a one-row payment
 * cost more than recording the outcome.  (1.1's triggers, with six
 * arguments, still come with their WHEN clause.)  It runs on the
 * application's payment path, so it does the least work that records the
 * outcome:
 *
 *	- no SPI and no planner: the order's timer is read with one index probe
 *	  of orderexp.timers' primary key (orderexp_timer_fetch, through the
 *	  relations timer.c keeps open and locked for the rest of the
 *	  transaction, as it does for a new order's probe), and the outcome row
 *	  is written with simple_heap_insert() into orderexp.outcomes, which
 *	  has no indexes (the statistics read it whole, nothing looks one row
 *	  up);
 *	- the timer is only read, never locked or changed: the payment holds the
 *	  order row, which every orderexp function that changes a timer locks
 *	  first, so the timer cannot change under it; locking it too would only
 *	  add a lock to the payment.  The paid order's timer is still dropped
 *	  lazily by the sweep.
 *
 * The same trigger records the cancels made by orderexp itself
 * (cancel_order(s)): those statements delete the timer in the same command
 * or a later one, and the trigger reads the timer under the statement's own
 * snapshot, to which a row deleted by that very command is still visible.
 * An order without a timer gets an outcome only if it has a plain deadline
 * (set_plain_deadlines: its table's default policy gives what the timer
 * would have held, timer.c); otherwise it was not tracked (no policy
 * applied to it) and gets none.
 *
 * The trigger writes one row per order, order_count 1 (the column is
 * 1.3's: a database not yet updated gets a row of 1.2's table, without
 * it).  The sweep's closes are the exception: its batch statement writes
 * their outcomes itself, from the timers it has already read (1.2: one row
 * per order, orderexp._sweep_sql; 1.3: one row per batch and policy
 * version, variant and reopened, order_count saying how many,
 * _record_close_sql).  While that statement runs, orderexp_sweep_closing
 * names its table, and the trigger returns at once for a row of that table
 * set to the closed value.  (A user's trigger that closes some other order
 * of the same table from inside the sweep's update would have that close
 * go unrecorded; nothing of orderexp's does that.)  In the sweep's orders
 * statement itself the trigger is not even called: batch.c switches it off
 * in that statement's copy of the table's triggers, unless the table has a
 * BEFORE UPDATE row trigger, which might set another status.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "orderexp.h"
#include "catalog.h"
#include "batch.h"
#include "timer.h"

PG_FUNCTION_INFO_V1(orderexp_outcome_trigger);

/* columns of orderexp.outcomes, in table order */
enum
{
	OC_ORDER_TABLE,
	OC_ORDER_KEY,
	OC_OUTCOME,
	OC_STATUS,
	OC_POLICY_ID,
	OC_POLICY_VERSION,
	OC_VARIANT,
	OC_CREATED_AT,
	OC_CLOSE_AT,
	OC_DECIDED_AT,
	OC_REMINDED,
	OC_EXTENSIONS,
	OC_TOKEN_EXTENSIONS,
	OC_REOPENED,
	OC_ORDER_COUNT,				/* 1.3 */
	OC_NATTS
};

/* the timer columns the outcome copies (some were added in 1.1) */
static Datum record_outcome(Oid order_table, const char *key, const char *outcome,
							const char *status, Datum *values, bool *nulls);

static const TimerColumn timer_columns[] = {
	TC_POLICY_ID, TC_POLICY_VERSION, TC_VARIANT, TC_CLOSE_AT, TC_REMINDED_FOR,
	TC_EXTENSIONS, TC_TOKEN_EXTENSIONS, TC_REOPENED
};
#define N_TIMER_COLUMNS lengthof(timer_columns)

/*
 * Write one outcome row: values and nulls hold what came from the order's
 * timer (or its plain deadline) and its created-at; the rest is filled in
 * here.  Returns the trigger's result.
 */
static Datum
record_outcome(Oid order_table, const char *key, const char *outcome, const char *status,
			   Datum *values, bool *nulls)
{
	const OrderexpCatalog *cat = orderexp_catalog();
	Relation	outcomes;
	int			natts;

	values[OC_ORDER_TABLE] = ObjectIdGetDatum(order_table);
	values[OC_ORDER_KEY] = CStringGetTextDatum(key);
	values[OC_OUTCOME] = CStringGetTextDatum(outcome);
	if (status == NULL)
		nulls[OC_STATUS] = true;
	else
		values[OC_STATUS] = CStringGetTextDatum(status);
	values[OC_DECIDED_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[OC_ORDER_COUNT] = Int32GetDatum(1);

	/*
	 * A plain heap insert: the table has no indexes to maintain, no
	 * constraints and no triggers.  Should someone add an index, refuse
	 * rather than leave it without the new rows.
	 */
	outcomes = table_open(cat->outcomes, RowExclusiveLock);

	/*
	 * With or without order_count (1.3), asked again now that the lock is
	 * held: an update that added the column since the lookup above has
	 * reset the description, and the table is now as the catalog says.
	 */
	cat = orderexp_catalog();
	natts = cat->outcome_count ? OC_NATTS : OC_ORDER_COUNT;
	if (RelationGetDescr(outcomes)->natts != natts)
		elog(ERROR, "orderexp.outcomes has %d columns, expected %d",
			 RelationGetDescr(outcomes)->natts, natts);
	if (RelationGetIndexList(outcomes) != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orderexp.outcomes must not have indexes"),
				 errdetail("The outcome trigger writes the table without index maintenance."),
				 errhint("Drop the indexes on orderexp.outcomes; copy the rows elsewhere to index them.")));
	simple_heap_insert(outcomes, heap_form_tuple(RelationGetDescr(outcomes), values, nulls));
	table_close(outcomes, NoLock);

	return PointerGetDatum(NULL);
}

/*
 * What the status trigger knows of its table: from its arguments (the
 * triggers of 1.1 and 1.2) or from the registration (1.3's, which has
 * none: see orderexp_registration)
 */
typedef struct StatusArgs
{
	const char *key_column;
	const char *created_column;
	const char *status_column;
	const char *closed_value;
	const char *cancelled_value;
	const char *unpaid_value;	/* NULL: 1.1's, whose WHEN clause tests it */
	const char *category_column;	/* NULL: before 1.3, which does not
									 * track a row set back to unpaid */
} StatusArgs;

/*
 * orderexp_outcome_trigger
 *		AFTER UPDATE OF the status row trigger: write the outcome of a row
 *		that was unpaid and is no longer; and, from 1.3 on, start the timer
 *		of a row set back to unpaid.
 *
 * 1.3's trigger (orderexp_status) takes no arguments: the registered table
 * is found from the trigger itself (catalog.c), its columns and values in
 * orderexp.tables (orderexp_registration).  The library serves the older
 * layouts until the extension is updated: 1.1's six arguments (key,
 * created-at and status column names, the closed and the cancelled value,
 * and the table's OID when the trigger was made, which is not used: a
 * restore gives the table a new OID), fired through a WHEN clause for rows
 * that leave the unpaid state only; 1.2's seven (the unpaid value added),
 * which tests that here.
 *
 * 1.3's trigger also does the work of 1.2's second trigger on the status,
 * orderexp_timer_unpaid, which it replaces: PostgreSQL queues and fires
 * every AFTER row trigger for every row of an update, so one trigger
 * instead of two saves a queued event and two tuple fetches on every
 * payment and every order the sweep closes (bench/instructions.md).
 */
Datum
orderexp_outcome_trigger(PG_FUNCTION_ARGS)
{
	/* 1.1 (with a WHEN clause), 1.2 (the unpaid value), 1.3 (none) */
	static const int layouts[] = {6, 7, 0};
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	newtup;
	Oid			order_table;
	StatusArgs	args;
	char	   *key;
	char	   *status;
	int			status_att;
	Oid			status_type;
	const char *outcome;
	Datum		created;
	bool		isnull;
	const OrderexpCatalog *cat;
	TupleTableSlot *timer;
	Datum		values[OC_NATTS];
	bool		nulls[OC_NATTS];
	int			i;

	orderexp_check_trigger_call(fcinfo, "outcome_trigger", true, layouts, lengthof(layouts));
	trigger = trigdata->tg_trigger;

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	newtup = trigdata->tg_newtuple;
	order_table = orderexp_trigger_table(rel, trigger);
	if (trigger->tgnargs == 0)
	{
		const OrderexpRegistration *reg = orderexp_registration(order_table);

		args.key_column = reg->key_column;
		args.created_column = reg->created_column;
		args.status_column = reg->status_column;
		args.closed_value = reg->closed_value;
		args.cancelled_value = reg->cancelled_value;
		args.unpaid_value = reg->unpaid_value;
		args.category_column = reg->category_column;
	}
	else
	{
		args.key_column = trigger->tgargs[0];
		args.created_column = trigger->tgargs[1];
		args.status_column = trigger->tgargs[2];
		args.closed_value = trigger->tgargs[3];
		args.cancelled_value = trigger->tgargs[4];
		args.unpaid_value = trigger->tgnargs >= 7 ? trigger->tgargs[6] : NULL;
		args.category_column = NULL;
	}
	status_att = orderexp_mapped_column(rel, args.status_column, "status");

	status_type = SPI_gettypeid(tupdesc, status_att);
	status = orderexp_column_text(newtup, tupdesc, status_att);

	/*
	 * Closed by the sweep's batch, which writes the outcome itself: the
	 * sweep's every closed row comes here, so this is asked first.  (Were
	 * the row not unpaid before, there would be no outcome either.)
	 */
	if (order_table == orderexp_sweep_closing &&
		orderexp_status_equals(status, status_type, args.closed_value))
		return PointerGetDatum(NULL);

	/* only a row that leaves the unpaid state (1.1: the WHEN clause says so) */
	if (args.unpaid_value != NULL)
	{
		bool		was_unpaid = orderexp_status_equals(orderexp_column_text(trigdata->tg_trigtuple,
																		 tupdesc, status_att),
													status_type, args.unpaid_value);
		bool		is_unpaid = orderexp_status_equals(status, status_type, args.unpaid_value);

		/* 1.3: a row set back to unpaid is tracked again */
		if (is_unpaid && !was_unpaid && args.category_column != NULL)
			orderexp_track_order(rel, trigger, newtup, args.key_column, args.created_column,
								 args.category_column);
		if (!was_unpaid || is_unpaid)
			return PointerGetDatum(NULL);
	}

	if (orderexp_status_equals(status, status_type, args.closed_value))
		outcome = "closed";
	else if (orderexp_status_equals(status, status_type, args.cancelled_value))
		outcome = "cancelled";
	else
		outcome = "paid";

	key = orderexp_column_text(newtup, tupdesc, orderexp_mapped_column(rel, args.key_column, "key"));
	if (key == NULL)
		return PointerGetDatum(NULL);

	memset(nulls, false, sizeof(nulls));

	/* the created-at of the order: time to pay counts from it */
	i = orderexp_mapped_column(rel, args.created_column, "created-at");
	created = SPI_getbinval(newtup, tupdesc, i, &isnull);
	if (isnull)
		nulls[OC_CREATED_AT] = true;
	else if (SPI_gettypeid(tupdesc, i) == TIMESTAMPOID)
		values[OC_CREATED_AT] = DirectFunctionCall1(timestamp_timestamptz, created);
	else
		values[OC_CREATED_AT] = created;

	/* the timer, under the statement's snapshot: one index probe */
	cat = orderexp_catalog();
	if (!OidIsValid(cat->outcomes))
		elog(ERROR, "relation \"%s.outcomes\" does not exist", ORDEREXP_SCHEMA_NAME);
	for (i = 0; i < (int) N_TIMER_COLUMNS; i++)
		if (cat->timer_attnum[timer_columns[i]] == 0)
			elog(ERROR, "a column of orderexp.timers the outcome needs does not exist");
	timer = orderexp_timer_fetch(order_table, key);
	if (timer == NULL)
	{
		int32		policy_id;
		int32		policy_version;
		TimestampTz close_at;

		/*
		 * A plain deadline has no timer row: the policy gives what the
		 * outcome needs (never reminded, extended or reopened: any of
		 * those writes the row).  Otherwise the order was not tracked.
		 */
		if (nulls[OC_CREATED_AT] || !cat->plain_deadlines ||
			!orderexp_plain_deadline(order_table, DatumGetTimestampTz(values[OC_CREATED_AT]),
									 &policy_id, &policy_version, &close_at))
			return PointerGetDatum(NULL);
		values[OC_POLICY_ID] = Int32GetDatum(policy_id);
		values[OC_POLICY_VERSION] = Int32GetDatum(policy_version);
		nulls[OC_VARIANT] = true;
		values[OC_CLOSE_AT] = TimestampTzGetDatum(close_at);
		values[OC_REMINDED] = BoolGetDatum(false);
		values[OC_EXTENSIONS] = Int32GetDatum(0);
		values[OC_TOKEN_EXTENSIONS] = Int32GetDatum(0);
		values[OC_REOPENED] = BoolGetDatum(false);
		return record_outcome(order_table, key, outcome, status, values, nulls);
	}

	for (i = 0; i < (int) N_TIMER_COLUMNS; i++)
	{
		Datum		d;
		bool		null;

		d = slot_getattr(timer, cat->timer_attnum[timer_columns[i]], &null);
		switch (i)
		{
			case 0:
				values[OC_POLICY_ID] = d;
				nulls[OC_POLICY_ID] = null;
				break;
			case 1:
				values[OC_POLICY_VERSION] = d;
				nulls[OC_POLICY_VERSION] = null;
				break;
			case 2:
				values[OC_VARIANT] = d;
				nulls[OC_VARIANT] = null;
				break;
			case 3:
				values[OC_CLOSE_AT] = d;
				nulls[OC_CLOSE_AT] = null;
				break;
			case 4:
				values[OC_REMINDED] = BoolGetDatum(!null);
				break;
			case 5:
				values[OC_EXTENSIONS] = d;
				nulls[OC_EXTENSIONS] = null;
				break;
			case 6:
				values[OC_TOKEN_EXTENSIONS] = d;
				nulls[OC_TOKEN_EXTENSIONS] = null;
				break;
			case 7:
				values[OC_REOPENED] = d;
				nulls[OC_REOPENED] = null;
				break;
		}
	}
	/* all of them are pass-by-value: safe to let go of the row */
	ExecClearTuple(timer);

	return record_outcome(order_table, key, outcome, status, values, nulls);
}
