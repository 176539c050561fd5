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
 * 1.3) go the same way by their own partial index, outbox_obsolete.
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
 * The oldest delivered rows past the cut-off, locked, then deleted.
 * $1 the cut-off (now - retention), $2 the most rows to delete.  [records]:
 * from 1.3 on the record of a change (via set) is kept with the history, and
 * the partial indexes leave it out.
 */
static const char *const prune_sql[2] = {
	"DELETE FROM orderexp.outbox o "
	" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.outbox x "
	"                            WHERE x.delivered_at < $1 "
	"                            ORDER BY x.delivered_at "
	"                            LIMIT $2 "
	"                              FOR UPDATE SKIP LOCKED))",
	"DELETE FROM orderexp.outbox o "
	" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.outbox x "
	"                            WHERE x.delivered_at < $1 AND x.via IS NULL "
	"                            ORDER BY x.delivered_at "
	"                            LIMIT $2 "
	"                              FOR UPDATE SKIP LOCKED))"
};

/* the same for obsolete rows, by obsolete_at */
static const char *const prune_obsolete_sql[2] = {
	"DELETE FROM orderexp.outbox o "
	" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.outbox x "
	"                            WHERE x.obsolete_at < $1 "
	"                            ORDER BY x.obsolete_at "
	"                            LIMIT $2 "
	"                              FOR UPDATE SKIP LOCKED))",
	"DELETE FROM orderexp.outbox o "
	" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.outbox x "
	"                            WHERE x.obsolete_at < $1 AND x.via IS NULL "
	"                            ORDER BY x.obsolete_at "
	"                            LIMIT $2 "
	"                              FOR UPDATE SKIP LOCKED))"
};

static SPIPlanPtr prune_plan[2];
static SPIPlanPtr prune_obsolete_plan[2];

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
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	int			ret;
	int64		deleted;
	int			records;

	if (orderexp_event_retention <= 0 || limit <= 0)
		return 0;
	if (!orderexp_catalog()->has_prune_index)
		return 0;
	records = orderexp_catalog()->events_are_records ? 1 : 0;

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
									(TimestampTz) orderexp_event_retention * USECS_PER_SEC);
	values[1] = Int32GetDatum(limit);
	ret = SPI_execute_plan(orderexp_keep_plan(&prune_plan[records], prune_sql[records],
											  2, argtypes, 0),
						   values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "prune statement failed: %s", SPI_result_code_string(ret));
	deleted = (int64) SPI_processed;

	/* obsolete rows with what is left of the limit */
	if (deleted < limit && orderexp_catalog()->has_obsolete_index)
	{
		values[1] = Int32GetDatum(limit - (int) deleted);
		ret = SPI_execute_plan(orderexp_keep_plan(&prune_obsolete_plan[records],
												  prune_obsolete_sql[records],
												  2, argtypes, 0),
							   values, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "prune statement failed: %s", SPI_result_code_string(ret));
		deleted += (int64) SPI_processed;
	}
	return deleted;
}
