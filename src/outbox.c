/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		The C side of outbox delivery: the delivery GUCs as SQL functions,
 *		and the pruning of delivered events after orderexp.event_retention.
 *
 * claim(), ack(), fail() and requeue() are SQL (sql/upgrade-1.1/
 * 20-delivery.sql).  They read orderexp.max_attempts through
 * orderexp._max_attempts(): calling a C function of the module loads the
 * library, so the GUC is defined (and its postgresql.conf or ALTER DATABASE
 * value applied) even in a backend that did not preload orderexp, such as
 * the relay's or pg_cron's.
 *
 * Pruning deletes delivered rows whose delivered_at is older than the
 * retention, oldest first, at most a batch per call, by way of the partial
 * index outbox_delivered (which the sweep's inserts never touch: a new row
 * is not delivered).  One kept statement: the rows are locked with SKIP
 * LOCKED, so the worker and run_due() can prune side by side, and deleted
 * by ctid.  Undelivered and dead rows are never pruned.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "orderexp.h"

PG_FUNCTION_INFO_V1(orderexp_get_max_attempts);
PG_FUNCTION_INFO_V1(orderexp_get_event_retention);

/*
 * The oldest delivered rows past the cut-off, locked, then deleted.
 * $1 the cut-off (now - retention), $2 the most rows to delete.
 */
static const char *prune_sql =
"DELETE FROM orderexp.outbox o "
" WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM orderexp.outbox x "
"                            WHERE x.delivered_at < $1 "
"                            ORDER BY x.delivered_at "
"                            LIMIT $2 "
"                              FOR UPDATE SKIP LOCKED))";

static SPIPlanPtr prune_plan = NULL;

/*
 * orderexp._max_attempts() returns integer
 */
Datum
orderexp_get_max_attempts(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(orderexp_max_attempts);
}

/*
 * orderexp._event_retention() returns interval: the retention as days and
 * a time of day, or NULL when delivered events are kept forever
 */
Datum
orderexp_get_event_retention(PG_FUNCTION_ARGS)
{
	Interval   *result;

	if (orderexp_event_retention <= 0)
		PG_RETURN_NULL();

	result = (Interval *) palloc0(sizeof(Interval));
	result->day = orderexp_event_retention / SECS_PER_DAY;
	result->time = (int64) (orderexp_event_retention % SECS_PER_DAY) * USECS_PER_SEC;
	PG_RETURN_INTERVAL_P(result);
}

/*
 * Delete up to "limit" delivered rows older than orderexp.event_retention.
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
	Oid			nspid;
	Datum		values[2];
	int			ret;

	if (orderexp_event_retention <= 0 || limit <= 0)
		return 0;

	nspid = get_namespace_oid(ORDEREXP_SCHEMA_NAME, true);
	if (!OidIsValid(nspid) || !OidIsValid(get_relname_relid("outbox_delivered", nspid)))
		return 0;

	if (prune_plan == NULL)
	{
		Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
		SPIPlanPtr	plan;

		plan = SPI_prepare(prune_sql, 2, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for the prune statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed for the prune statement");
		prune_plan = plan;
	}

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
									(TimestampTz) orderexp_event_retention * USECS_PER_SEC);
	values[1] = Int32GetDatum(limit);
	ret = SPI_execute_plan(prune_plan, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "prune statement failed: %s", SPI_result_code_string(ret));
	return (int64) SPI_processed;
}
