/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		The row trigger that starts the timer of a new unpaid order.
 *
 * set_close_policy() puts this trigger on a registered table twice: AFTER
 * INSERT for rows that arrive unpaid, and AFTER UPDATE OF the status column
 * for rows set back to unpaid.  Both carry a WHEN clause, so the trigger
 * fires only for unpaid rows, and a payment (unpaid to paid) never fires it:
 * the application's payment path does no orderexp work at all.
 *
 * The trigger arguments are the names of the key, created-at and category
 * columns (the last may be empty) and the OID of the registered table: on a
 * partitioned table the trigger fires on the partition, and the timer
 * belongs to the registered parent.  The timer row is written with one
 * prepared statement that also picks the policy: the category's own, else
 * the table's default.  It runs as the owner of the orderexp schema, so that
 * application roles need no privileges on orderexp's tables.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "orderexp.h"

PG_FUNCTION_INFO_V1(orderexp_timer_trigger);

/*
 * Operators and functions are schema-qualified: the plan may be re-planned
 * under whatever search_path the application has.
 */
static const char *timer_insert_sql =
"INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, remind_at) "
"SELECT $1, $2, p.id, "
"       COALESCE($3, pg_catalog.now()) OPERATOR(pg_catalog.+) p.close_after, "
"       COALESCE($3, pg_catalog.now()) OPERATOR(pg_catalog.+) p.close_after "
"           OPERATOR(pg_catalog.-) p.remind_before "
"  FROM orderexp.policies p "
" WHERE p.order_table OPERATOR(pg_catalog.=) $1 "
"   AND (p.category OPERATOR(pg_catalog.=) $4 OR p.category IS NULL) "
" ORDER BY p.category IS NULL "
" LIMIT 1 "
"ON CONFLICT (order_table, order_key) DO UPDATE "
"   SET policy_id = excluded.policy_id, close_at = excluded.close_at, "
"       remind_at = excluded.remind_at, extensions = 0";

static SPIPlanPtr timer_insert_plan = NULL;

/* column number of a mapped column, or a clear error if it is gone */
static int
mapped_column(Relation rel, const char *colname, const char *role)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), colname);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" mapped as the %s column of table \"%s\" does not exist",
						colname, role, RelationGetRelationName(rel)),
				 errhint("Register the table again with orderexp.set_close_policy().")));
	return attnum;
}

/*
 * orderexp_timer_trigger
 *		AFTER ROW trigger: insert or refresh the timer of an unpaid order.
 */
Datum
orderexp_timer_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	int			key_att;
	int			created_att;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char	   *key;
	bool		isnull;
	Datum		created;
	Oid			save_userid;
	int			save_sec_context;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.timer_trigger() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.timer_trigger() must be fired AFTER INSERT or UPDATE FOR EACH ROW")));

	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs != 4)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.timer_trigger() needs 4 arguments, got %d", trigger->tgnargs),
				 errhint("Register the table again with orderexp.set_close_policy().")));

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	key_att = mapped_column(rel, trigger->tgargs[0], "key");
	created_att = mapped_column(rel, trigger->tgargs[1], "created-at");

	key = SPI_getvalue(tuple, tupdesc, key_att);
	if (key == NULL)
		return PointerGetDatum(NULL);	/* no key, nothing to track */

	values[0] = ObjectIdGetDatum(atooid(trigger->tgargs[3]));
	values[1] = CStringGetTextDatum(key);

	created = SPI_getbinval(tuple, tupdesc, created_att, &isnull);
	if (isnull)
		nulls[2] = 'n';
	else if (SPI_gettypeid(tupdesc, created_att) == TIMESTAMPOID)
		values[2] = DirectFunctionCall1(timestamp_timestamptz, created);
	else if (SPI_gettypeid(tupdesc, created_att) == TIMESTAMPTZOID)
		values[2] = created;
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("created-at column \"%s\" of table \"%s\" is not a timestamp",
						trigger->tgargs[1], RelationGetRelationName(rel)),
				 errhint("Register the table again with orderexp.set_close_policy().")));

	if (trigger->tgargs[2][0] != '\0')
	{
		int			cat_att = mapped_column(rel, trigger->tgargs[2], "category");
		char	   *cat = SPI_getvalue(tuple, tupdesc, cat_att);

		if (cat == NULL)
			nulls[3] = 'n';
		else
			values[3] = CStringGetTextDatum(cat);
	}
	else
		nulls[3] = 'n';

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(orderexp_owner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));

	if (timer_insert_plan == NULL)
	{
		Oid			argtypes[4] = {REGCLASSOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare(timer_insert_sql, 4, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		timer_insert_plan = plan;
	}

	ret = SPI_execute_plan(timer_insert_plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "inserting the order timer failed: %s", SPI_result_code_string(ret));

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);

	return PointerGetDatum(NULL);
}
