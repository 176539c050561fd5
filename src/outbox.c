/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		The C side of the outbox: pruning of delivered and obsolete events
 *		after orderexp.event_retention.
 *
 * claim(), ack(), fail() and requeue() are SQL (sql/orderexp--1.3.sql); the
 * GUCs they read come through SQL getters in orderexp.c.
 *
 * Pruning deletes delivered rows whose delivered_at is older than the
 * retention, oldest first, at most a batch per call, by way of the partial
 * index outbox_delivered (which the sweep's inserts never touch: a new row
 * is not delivered).  One kept statement: the rows are locked with SKIP
 * LOCKED, so the worker and run_due() can prune side by side, and deleted
 * by ctid.  Obsolete rows (reminders that claim() settled without delivery,
 * 1.3) go the same way by their own partial index, outbox_obsolete, and
 * events delivered in batches (1.3) a batch at a time, oldest first
 * (orderexp._prune_batches()).
 * Undelivered and dead rows are never pruned, nor (1.3) the records of
 * changes: they are the orders' history, which forget_before() deletes.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
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
 * could not use them.
 */
static const char *const prune_template =
"DELETE FROM orderexp.outbox o "
" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.outbox x "
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

/* kept plans: [PruneBy][records kept] */
static SPIPlanPtr prune_plans[2][2];

/* kept plan of the pruning of events delivered in batches (1.3) */
static SPIPlanPtr prune_batches_plan;

/*
 * Delete up to "limit" rows of one kind older than "cutoff"; returns how
 * many went.  The statement text is made only when its plan is not kept yet.
 */
static int64
prune_rows(PruneBy by, bool records, TimestampTz cutoff, int limit)
{
	SPIPlanPtr *slot = &prune_plans[by][records];
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	int			ret;

	if (*slot == NULL)
	{
		char	   *sql = psprintf(prune_template, prune_column[by],
								   records ? " AND x.via IS NULL" : "");

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
 * Delete up to "limit" delivered or obsolete rows older than
 * orderexp.event_retention.
 * The caller is connected to SPI, in a transaction with a snapshot, as a
 * role that may delete from the outbox.  Returns the number of rows
 * deleted: as many as "limit" means there may be more.  Does nothing (and
 * returns 0) when retention is off, or when the installed version of the
 * extension predates pruning (no outbox_delivered index to find the rows
 * by: a scan of the whole outbox every tick would cost more than keeping
 * the rows).
 */
int64
orderexp_prune_outbox(int limit)
{
	const OrderexpCatalog *cat;
	TimestampTz cutoff;
	int64		deleted;

	if (orderexp_event_retention <= 0 || limit <= 0)
		return 0;
	cat = orderexp_catalog();
	if (!cat->has_prune_index)
		return 0;

	cutoff = GetCurrentTimestamp() -
		(TimestampTz) orderexp_event_retention * USECS_PER_SEC;
	deleted = prune_rows(PRUNE_DELIVERED, cat->events_are_records, cutoff, limit);

	/* obsolete rows with what is left of the limit */
	if (deleted < limit && cat->has_obsolete_index)
		deleted += prune_rows(PRUNE_OBSOLETE, cat->events_are_records, cutoff,
							  limit - (int) deleted);
	/* then events delivered in batches (1.3) */
	if (deleted < limit && cat->has_batches)
		deleted += prune_batches(cutoff, limit - (int) deleted);
	return deleted;
}
