/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		The C side of the outbox: its current part, its marks, and the
 *		pruning of delivered and obsolete events after
 *		orderexp.event_retention.
 *
 * claim(), ack(), fail() and requeue() are SQL (sql/orderexp--1.3.sql); the
 * GUCs they read come through SQL getters in orderexp.c.
 *
 * From 1.3 on the outbox is partitioned (see outbox_parts in the SQL
 * script): outbox_0 keeps the records of changes and what a rotation kept,
 * the other events go to the current one of three rotating parts, which
 * the pruning empties whole (orderexp._rotate_outbox()) once the retention
 * has passed over it.  orderexp._outbox_part(), the default of
 * outbox.part, is here: it reads orderexp.outbox_parts directly, once per
 * transaction, because it runs as whichever role writes an event and for
 * every event a transaction writes.
 *
 * Pruning by row deletes delivered rows whose delivered_at is older than
 * the retention, oldest first, at most a batch per call, by way of the
 * partial index outbox_delivered (which the sweep's inserts never touch: a
 * new row is not delivered).  One kept statement: the rows are locked with
 * SKIP LOCKED, so the worker and run_due() can prune side by side, and
 * deleted by ctid (of outbox_0 alone once there are parts: a ctid names a
 * row only within one part).  Obsolete rows (reminders that claim()
 * settled without delivery, 1.3) go the same way by their own partial
 * index, outbox_obsolete.  Then orderexp._prune_batches() moves the
 * stream's pruning position past the batches delivered before the cut-off,
 * and orderexp._rotate_outbox() empties the oldest rotating part when its
 * time has come.
 * Undelivered and dead rows are never pruned, nor (1.3) the records of
 * changes: they are the orders' history, which forget_before() deletes.
 *
 * Every pruning pass (the worker's once a minute, every run_due()) first
 * marks the outbox's id sequence (orderexp._mark_outbox(), 1.3), so that
 * the views of the last hour or day find the recent rows by id.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "orderexp.h"
#include "catalog.h"
#include "outbox.h"
#include "spiplan.h"


/*
 * The oldest rows past the cut-off by one column (delivered_at, or
 * obsolete_at for reminders claim() settled), locked, then deleted; the
 * column's partial index (outbox_delivered, outbox_obsolete) finds them.
 * $1 the cut-off (now - retention), $2 the most rows to delete.  From 1.3
 * on the record of a change (via set) is kept with the history, and the
 * partial indexes leave it out: the statement says so too, or the planner
 * could not use them.  With parts, it reads outbox_0 alone: the rotating
 * parts are emptied whole, and a ctid is a row's only within its part.
 */
static const char *const prune_template =
"DELETE FROM orderexp.%3$s o "
" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.%3$s x "
"                            WHERE x.%1$s < $1%2$s "
"                            ORDER BY x.%1$s "
"                            LIMIT $2 "
"                              FOR UPDATE SKIP LOCKED))";

typedef enum PruneBy
{
	PRUNE_DELIVERED,
	PRUNE_OBSOLETE
} PruneBy;

static const char *const prune_column[2] = {"delivered_at", "obsolete_at"};

/* kept plans: [PruneBy][records kept][outbox_0 alone] */
static SPIPlanPtr prune_plans[2][2][2];

/* kept plan of the pruning of events delivered in batches (1.3) */
static SPIPlanPtr prune_batches_plan;

/* kept plan of the rotation of the outbox's parts (1.3) */
static SPIPlanPtr rotate_plan;

/* least time between two calls of orderexp._mark_outbox() in a backend */
#define OUTBOX_MARK_INTERVAL_MS		(60 * 1000)

/* kept plan of the marks of the outbox (1.3), and when to mark next */
static SPIPlanPtr mark_plan;
static TimestampTz next_mark_at = 0;

/* orderexp._outbox_part(): the transaction that read the current part, and it */
static LocalTransactionId part_lxid = InvalidLocalTransactionId;
static int16 part_current = 0;

PG_FUNCTION_INFO_V1(orderexp_outbox_part);

/*
 * Delete up to "limit" rows of one kind older than "cutoff"; returns how
 * many went.  The statement text is made only when its plan is not kept yet.
 */
static int64
prune_rows(PruneBy by, bool records, bool parts, TimestampTz cutoff, int limit)
{
	SPIPlanPtr *slot = &prune_plans[by][records][parts];
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	int			ret;

	if (*slot == NULL)
	{
		char	   *sql = psprintf(prune_template, prune_column[by],
								   records ? " AND x.via IS NULL" : "",
								   parts ? "outbox_0" : "outbox");

		orderexp_keep_plan(slot, sql, 2, argtypes, 0);
		pfree(sql);
	}
	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = Int32GetDatum(limit);
	ret = SPI_execute_plan(*slot, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "prune statement failed: %s", SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * Delete the events delivered by batches finished before "cutoff", up to
 * about "limit" of them (whole batches): orderexp._prune_batches(), which
 * keeps the records of changes, as the statements above do.
 */
static int64
prune_batches(TimestampTz cutoff, int limit)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	bool		isnull;
	int			ret;
	Datum		n;

	if (prune_batches_plan == NULL)
		orderexp_keep_plan(&prune_batches_plan,
						   "SELECT orderexp._prune_batches($1, $2)", 2, argtypes, 0);
	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = Int32GetDatum(limit);
	ret = SPI_execute_plan(prune_batches_plan, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "prune statement failed: %s", SPI_result_code_string(ret));
	n = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(n);
}

/*
 * Empty the oldest rotating part of the outbox if its time has come:
 * orderexp._rotate_outbox() with the same cut-off and half the retention
 * as the period a part stays current.  Returns nothing: what it drops is
 * not counted (a TRUNCATE does not know), and it never asks for another
 * pass at once.
 */
static void
rotate_parts(TimestampTz cutoff)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, INTERVALOID};
	Datum		values[2];
	Interval   *period = palloc0(sizeof(Interval));
	int			ret;

	if (rotate_plan == NULL)
		orderexp_keep_plan(&rotate_plan,
						   "SELECT orderexp._rotate_outbox($1, $2)", 2, argtypes, 0);
	period->time = (TimeOffset) orderexp_event_retention * USECS_PER_SEC / 2;
	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = IntervalPGetDatum(period);
	ret = SPI_execute_plan(rotate_plan, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "rotate statement failed: %s", SPI_result_code_string(ret));
	pfree(period);
}

/*
 * Mark the outbox's id sequence (orderexp.outbox_marks, 1.3) at most once a
 * minute from this backend: orderexp._mark_outbox() writes a mark when no
 * backend wrote one in the last minute.  The views of the last hour or day
 * read the ids above a mark.  A mark lost with its transaction is written
 * a minute later; meanwhile those views read a minute more.
 */
static void
mark_outbox(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ret;

	if (now < next_mark_at)
		return;
	if (mark_plan == NULL)
		orderexp_keep_plan(&mark_plan, "SELECT orderexp._mark_outbox()", 0, NULL, 0);
	ret = SPI_execute_plan(mark_plan, NULL, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "marking the outbox failed: %s", SPI_result_code_string(ret));
	next_mark_at = TimestampTzPlusMilliseconds(now, OUTBOX_MARK_INTERVAL_MS);
}

/*
 * Delete up to "limit" delivered or obsolete rows older than
 * orderexp.event_retention.
 * The caller is connected to SPI, in a transaction with a snapshot, as a
 * role that may delete from the outbox.  Returns the number of rows
 * deleted: as many as "limit" means there may be more.  Does nothing (and
 * returns 0) when retention is off, or when the installed version of the
 * extension predates pruning (no outbox_delivered index to find the rows
 * by: a scan of the whole outbox every tick would cost more than keeping
 * the rows).  Marks the outbox first (1.3), whatever the retention.
 */
int64
orderexp_prune_outbox(int limit)
{
	const OrderexpCatalog *cat;
	TimestampTz cutoff;
	int64		deleted;

	cat = orderexp_catalog();
	if (cat->has_outbox_marks)
		mark_outbox();
	if (orderexp_event_retention <= 0 || limit <= 0)
		return 0;
	if (!cat->has_prune_index)
		return 0;

	cutoff = GetCurrentTimestamp() -
		(TimestampTz) orderexp_event_retention * USECS_PER_SEC;
	deleted = prune_rows(PRUNE_DELIVERED, cat->events_are_records,
						 cat->has_outbox_parts, cutoff, limit);

	/* obsolete rows with what is left of the limit */
	if (deleted < limit && cat->has_obsolete_index)
		deleted += prune_rows(PRUNE_OBSOLETE, cat->events_are_records,
							  cat->has_outbox_parts, cutoff, limit - (int) deleted);
	/* then events delivered in batches (1.3) */
	if (deleted < limit && cat->has_batches)
		deleted += prune_batches(cutoff, limit - (int) deleted);
	/* and, once that has caught up, the parts (1.3) */
	if (deleted < limit && cat->has_outbox_parts)
		rotate_parts(cutoff);
	return deleted;
}

/* orderexp_scan_own_table's callback: the part whose closed_at is NULL */
static bool
current_part(const Datum *values, const bool *isnull, void *arg)
{
	if (isnull[0] || !isnull[1])
		return true;
	*(int16 *) arg = DatumGetInt16(values[0]);
	return false;
}

/*
 * orderexp._outbox_part() → smallint
 *		The default of orderexp.outbox.part: the current rotating part, the
 *		row of orderexp.outbox_parts whose closed_at is NULL, read under the
 *		active snapshot once per transaction (a transaction that writes a
 *		thousand events reads it once, and writes them all to one part; a
 *		rotation waits for it with its lock).  0, the part kept row by row,
 *		if no part is current, so that an event is never refused for it.
 */
Datum
orderexp_outbox_part(PG_FUNCTION_ARGS)
{
	static const char *const attnames[] = {"part", "closed_at"};

	if (MyProc->lxid != part_lxid || part_lxid == InvalidLocalTransactionId)
	{
		part_current = 0;
		orderexp_scan_own_table("outbox_parts", attnames, 2, NULL, current_part, &part_current);
		part_lxid = MyProc->lxid;
	}
	PG_RETURN_INT16(part_current);
}
