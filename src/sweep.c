/*-------------------------------------------------------------------------
 *
 * sweep.c
 *		Closing due orders: one round over the registered tables, shared by
 *		the background worker and by orderexp.run_due().
 *
 * A round first asks, with one index probe per registered table, for the
 * earliest deadline of each table (from 1.3 on read directly, without the
 * executor: read_overview; an idle worker does little else), and for a
 * table with plain deadlines reads the first entry of its partial index on
 * created-at (orderexp_plain_first_due, batch.c).  Tables whose
 * earliest deadline has passed get one close batch (batch.c): statements
 * kept prepared across rounds that lock the due timers with SKIP LOCKED,
 * close the rows that are still unpaid with a guarded update (as the
 * table's owner), drop the timers they are done with and write the
 * 'closed' events, their audit rows and the orders' outcomes, all in the
 * caller's transaction.  One NOTIFY per batch wakes the listeners at
 * commit.
 *
 * Before the close, the same round writes the table's due reminders with a
 * reminder batch, which locks in the same order and clears remind_at of
 * what it dealt with, so that a reminder goes out at most once per
 * deadline.
 *
 * run_due() does its work like the worker, but only for the tables on
 * which its caller holds UPDATE: a role that cannot close an order by hand
 * cannot have orderexp close it either.
 *
 * Each table's batch runs in a subtransaction, so that one broken table (a
 * mapped column dropped, say) gets a WARNING and an entry in
 * orderexp.tables.last_error instead of stopping the others.  In the worker
 * such a table is left alone for a minute before it is tried again.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "orderexp.h"
#include "batch.h"
#include "catalog.h"
#include "outbox.h"
#include "runas.h"
#include "spiplan.h"
#include "sweep.h"

PG_FUNCTION_INFO_V1(orderexp_run_due);

/* run_due(): most delivered events pruned per call, in batches */
#define RUN_DUE_PRUNE_BATCH			1000
#define RUN_DUE_PRUNE_BATCHES		10

/* how long the worker leaves a failing table alone */
#define ORDEREXP_RETRY_FAILED_MS	(60 * 1000)

/* per-table state kept across rounds in this backend */
typedef struct TablePlan
{
	Oid			relid;			/* hash key */
	BatchPlan	close;			/* the close batch */
	BatchPlan	remind;			/* the reminder batch */
	BatchPlan	plain;			/* the plain close batch (plain deadlines) */
	bool		has_plain;		/* the table has plain deadlines */
	TimestampTz retry_after;	/* worker: skip the table until then */
	bool		failed;			/* last batch failed: clear last_error on success */
	bool		denied;			/* run_due: told the caller it lacks privilege */
} TablePlan;

static HTAB *table_plans = NULL;

/* counts sweeps (a worker tick, a run_due call) in this backend */
static uint64 current_sweep_id = 0;

/*
 * Tables whose batch came back full in the last round of the current sweep:
 * the next round of the same sweep goes straight to them, without the
 * overview query, whose index probes would have to step over every timer
 * the sweep has deleted so far, and runs only the kinds of batch that came
 * back full (the others found all that was due).  A table with plain
 * deadlines and no timer row due has only its plain batch run, round after
 * round: its timers' batches are not even prepared.
 */
#define FULL_REMIND		0x01		/* the reminder batch came back full */
#define FULL_PLAIN		0x02		/* the plain batch did */
#define FULL_CLOSE		0x04		/* the close batch did */

static uint64 continue_sweep_id = 0;
static int	ncontinue = 0;
static Oid *continue_relids = NULL;	/* TopMemoryContext */
static char **continue_names = NULL;
static int *continue_full = NULL;	/* FULL_* of each */

/* statements every round runs; prepared once and kept */
static SPIPlanPtr overview_plan = NULL;
static bool overview_plain = false; /* overview_plan is overview_plain_sql */
static SPIPlanPtr set_error_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;

/*
 * Earliest deadline and earliest pending reminder of every registered table
 * that still exists: two index probes per table.
 */
static const char *overview_sql =
"SELECT t.order_table::oid, t.order_table::text, s.close_at, r.remind_at "
"  FROM orderexp.tables t "
"  JOIN pg_catalog.pg_class c ON c.oid = t.order_table "
" CROSS JOIN LATERAL (SELECT x.close_at FROM orderexp.timers x "
"                      WHERE x.order_table = t.order_table "
"                      ORDER BY x.close_at LIMIT 1) s "
"  LEFT JOIN LATERAL (SELECT x.remind_at FROM orderexp.timers x "
"                      WHERE x.order_table = t.order_table AND x.remind_at IS NOT NULL "
"                      ORDER BY x.remind_at LIMIT 1) r ON true "
" ORDER BY s.close_at";

/*
 * The same, with the tables that have plain deadlines (1.3), whose due
 * orders need no timer row: each gets a plain batch when its earliest
 * unpaid order is due (or the probe of its index cannot tell), which
 * finds what is due in the orders table itself (batch.c).  read_overview()
 * reads the same rows without the executor; this statement is what it
 * stands for, and what runs when it cannot (see there).  Their stamp
 * changes whenever the registration, the policy, the table's pg_class row
 * or the extension (an update) does (the row versions' xmin): the batch
 * makes its statements anew only then, not at every idle tick.
 */
static const char *overview_plain_sql =
"SELECT t.order_table::oid, t.order_table::text, s.close_at, r.remind_at, p.stamp "
"  FROM orderexp.tables t "
"  JOIN pg_catalog.pg_class c ON c.oid = t.order_table "
"  LEFT JOIN LATERAL (SELECT x.xmin::text || '/' || t.xmin::text || '/' || c.xmin::text "
"                            || '/' || e.xmin::text AS stamp "
"                      FROM orderexp.policies x, pg_catalog.pg_extension e "
"                     WHERE e.extname = 'orderexp' "
"                       AND x.order_table = t.order_table "
"                       AND x.plain_since IS NOT NULL) p ON true "
"  LEFT JOIN LATERAL (SELECT x.close_at FROM orderexp.timers x "
"                      WHERE x.order_table = t.order_table "
"                      ORDER BY x.close_at LIMIT 1) s ON true "
"  LEFT JOIN LATERAL (SELECT x.remind_at FROM orderexp.timers x "
"                      WHERE x.order_table = t.order_table AND x.remind_at IS NOT NULL "
"                      ORDER BY x.remind_at LIMIT 1) r ON true "
" WHERE s.close_at IS NOT NULL OR p.stamp IS NOT NULL "
" ORDER BY s.close_at";

/*
 * When a table swept this round next has something to do: its earliest
 * deadline or reminder after the start of this transaction.  The index scans
 * start after now(), so they do not step over the timers just deleted.
 */
static const char *next_due_sql =
"SELECT least((SELECT min(x.close_at) FROM orderexp.timers x "
"               WHERE x.order_table = $1 AND x.close_at > now()), "
"             (SELECT min(x.remind_at) FROM orderexp.timers x "
"               WHERE x.order_table = $1 AND x.remind_at > now()))";

/*
 * Record the last error of a table, unless another sweep (or a policy
 * change) holds its row right now: the sweep never waits for that.
 */
static const char *set_error_sql =
"UPDATE orderexp.tables SET last_error = $2, "
"       last_error_at = CASE WHEN $2 IS NULL THEN NULL ELSE now() END "
" WHERE order_table = (SELECT t.order_table FROM orderexp.tables t "
"                       WHERE t.order_table = $1 FOR UPDATE SKIP LOCKED)";

typedef struct DueTable
{
	Oid			relid;
	char	   *name;
	TimestampTz close_at;		/* earliest deadline */
	TimestampTz remind_at;		/* earliest pending reminder, or 0 */
	bool		plain;			/* has plain deadlines: a plain batch when due */
	char	   *plain_stamp;	/* and its registration's stamp, or NULL */
} DueTable;

static DueTable *read_overview(const OrderexpCatalog *cat, uint64 *ntables);

/*
 * The notifications of one table's batches (a reminder, a plain and a close
 * batch at most), sent once their subtransaction is released: a NOTIFY made
 * inside a subtransaction is kept in that subtransaction's memory context,
 * which then stays, 8 kB of it, until the top transaction ends, one for
 * every batch of a run_due() call.
 */
typedef struct BatchNotes
{
	int			n;
	const char *kind[3];
	int64		count[3];
} BatchNotes;

static TablePlan *table_plan_entry(Oid relid);
static void set_table_error(Oid relid, const char *msg);
static void notify_batch(const char *kind, int64 count);
static bool count_batch(BatchResult *r, int batch_limit, SweepRound *round);
static int	table_batches(TablePlan *entry, DueTable *dt, TimestampTz now,
						  int batch_limit, SweepRound *round, BatchNotes *notes);
static int	table_batches_guarded(TablePlan *entry, DueTable *dt,
								  TimestampTz now, int batch_limit,
								  bool in_worker, SweepRound *round);
static void fold_next_due(SweepRound *round, TimestampTz at);
static void note_next_due(Oid relid, SweepRound *round);
static void forget_continuation(void);
static void add_continuation(DueTable *dt, int full);

static TablePlan *
table_plan_entry(Oid relid)
{
	bool		found;
	TablePlan  *entry;

	if (table_plans == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TablePlan);
		table_plans = hash_create("orderexp table plans", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(table_plans, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(&entry->close, 0, sizeof(BatchPlan));
		memset(&entry->remind, 0, sizeof(BatchPlan));
		memset(&entry->plain, 0, sizeof(BatchPlan));
		entry->has_plain = false;
		entry->retry_after = 0;
		entry->failed = false;
		entry->denied = false;
	}
	return entry;
}

/*
 * Drop every cached per-table plan, e.g. when the extension went away.
 */
void
orderexp_forget_plans(void)
{
	HASH_SEQ_STATUS status;
	TablePlan  *entry;

	if (table_plans == NULL)
		return;
	hash_seq_init(&status, table_plans);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		orderexp_forget_batch(&entry->close);
		orderexp_forget_batch(&entry->remind);
		orderexp_forget_batch(&entry->plain);
	}
	hash_destroy(table_plans);
	table_plans = NULL;
}

/* record (or clear, with msg NULL) the last error of a table */
static void
set_table_error(Oid relid, const char *msg)
{
	Oid			argtypes[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int			ret;

	values[0] = ObjectIdGetDatum(relid);
	if (msg)
		values[1] = CStringGetTextDatum(msg);
	else
		nulls[1] = 'n';
	ret = SPI_execute_plan(orderexp_keep_plan(&set_error_plan, set_error_sql, 2, argtypes, 0),
						   values, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "recording the last error failed: %s", SPI_result_code_string(ret));
}

/* a batch wrote "count" events of "kind": to be notified */
static void
note_batch(BatchNotes *notes, const char *kind, int64 count)
{
	Assert(notes->n < lengthof(notes->kind));
	notes->kind[notes->n] = kind;
	notes->count[notes->n] = count;
	notes->n++;
}

/*
 * One NOTIFY for a batch that wrote events.  It names no table: every role
 * that may LISTEN on the channel hears it, and a relay only needs waking
 * (it claims what it may deliver).
 */
static void
notify_batch(const char *kind, int64 count)
{
	char		payload[128];

	/* same shape as the SQL functions' notifications */
	snprintf(payload, sizeof(payload), "{\"kind\" : \"%s\", \"count\" : " INT64_FORMAT "}",
			 kind, count);
	Async_Notify(ORDEREXP_NOTIFY_CHANNEL, payload);
}

/*
 * Fold one batch's result into the round.  A full batch means there may be
 * more, even if all of it was busy: the next batch starts after it.
 */
static bool
count_batch(BatchResult *r, int batch_limit, SweepRound *round)
{
	if (r->busy > 0)
		round->stuck = true;
	if (r->taken == batch_limit)
	{
		round->more = true;
		return true;
	}
	return false;
}

/*
 * Fold a table's next deadline into the round's earliest, "at" being none
 * when 0 (unknown) or DT_NOEND (no deadline at all)
 */
static void
fold_next_due(SweepRound *round, TimestampTz at)
{
	if (at != 0 && at != DT_NOEND &&
		(round->next_due == 0 || at < round->next_due))
		round->next_due = at;
}

/*
 * A table's work for this round: its due reminders, then its due orders,
 * one batch each.  Returns which batches came back full (FULL_*), 0 if none.
 */
static int
table_batches(TablePlan *entry, DueTable *dt, TimestampTz now, int batch_limit,
			  SweepRound *round, BatchNotes *notes)
{
	BatchResult r;
	int			full = 0;

	if (dt->remind_at != 0 && dt->remind_at <= now)
	{
		if (!orderexp_run_batch(&entry->remind, false, dt->relid, batch_limit,
								current_sweep_id, &r))
			return 0;
		round->reminded += r.done;
		round->reminded_taken += r.taken - r.busy;
		if (count_batch(&r, batch_limit, round))
			full |= FULL_REMIND;
		if (r.done > 0)
			note_batch(notes, "reminder", r.done);
		ereport(DEBUG1,
				(errmsg("orderexp wrote " INT64_FORMAT " reminders for " INT64_FORMAT " due orders of table %s",
						r.done, r.taken, dt->name)));
	}

	if (dt->plain)
	{
		TimestampTz next_at;

		if (!orderexp_run_plain_batch(&entry->plain, dt->relid, dt->plain_stamp, batch_limit,
									  current_sweep_id, &r, &next_at))
			entry->has_plain = false;
		else if (r.blocked)
			round->stuck = true;	/* an order's timer row is being written */
		else
		{
			round->processed += r.taken - r.busy;
			round->closed += r.done;
			if (count_batch(&r, batch_limit, round))
				full |= FULL_PLAIN;
			else
				fold_next_due(round, next_at);
			if (r.done > 0)
				note_batch(notes, "closed", r.done);
			ereport(DEBUG1,
					(errmsg("orderexp closed " INT64_FORMAT " of " INT64_FORMAT " due orders with plain deadlines of table %s",
							r.done, r.taken, dt->name)));
		}
	}

	if (dt->close_at <= now)
	{
		if (!orderexp_run_batch(&entry->close, true, dt->relid, batch_limit,
								current_sweep_id, &r))
			return 0;
		round->processed += r.taken - r.busy;
		round->closed += r.done;
		if (count_batch(&r, batch_limit, round))
			full |= FULL_CLOSE;
		if (r.done > 0)
			note_batch(notes, "closed", r.done);
		ereport(DEBUG1,
				(errmsg("orderexp closed " INT64_FORMAT " of " INT64_FORMAT " due orders of table %s",
						r.done, r.taken, dt->name)));
	}

	if (entry->failed)
	{
		set_table_error(dt->relid, NULL);
		entry->failed = false;
	}
	return full;
}

/*
 * One table's batch in a subtransaction: an error is reported as a WARNING
 * and recorded, and the round goes on with the other tables.  A cancel or a
 * shutdown request is not swallowed.
 *
 * The batches run in an SPI connection of their own, inside the
 * subtransaction, which takes their memory with it when they end: the
 * result tables of their statements (SPI keeps each until its connection
 * ends) and the arrays built from them.  In the connection of the caller,
 * which holds for a whole worker transaction or run_due() call, they piled
 * up batch after batch: the more batches a transaction held, the more
 * memory (bench/README.md, 5. Memory).  On an error, the subtransaction's
 * abort ends the connection (AtEOSubXact_SPI).  The batches' notifications
 * are sent after the release (BatchNotes), and not at all on an error, as
 * the subtransaction's abort would have dropped them.
 */
static int
table_batches_guarded(TablePlan *entry, DueTable *dt, TimestampTz now,
					  int batch_limit, bool in_worker, SweepRound *round)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile int full = 0;
	volatile bool released = false;
	BatchNotes	notes;

	notes.n = 0;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		int			ret;

		if ((ret = SPI_connect()) != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
		full = table_batches(entry, dt, now, batch_limit, round, &notes);
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		released = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);

		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("orderexp could not sweep table %s: %s",
						dt->name, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 in_worker ?
				 errhint("The worker tries this table again in %d seconds; "
						 "see orderexp.tables.last_error.", ORDEREXP_RETRY_FAILED_MS / 1000) :
				 errhint("See orderexp.tables.last_error.")));

		set_table_error(dt->relid, edata->message);
		entry->failed = true;
		if (in_worker)
			entry->retry_after =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ORDEREXP_RETRY_FAILED_MS);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	if (released)
	{
		for (int i = 0; i < notes.n; i++)
			notify_batch(notes.kind[i], notes.count[i]);
	}
	return full;
}

/* fold the next deadline or reminder of a table just swept into the round */
static void
note_next_due(Oid relid, SweepRound *round)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1];
	TimestampTz next = 0;
	Datum		d;
	bool		isnull;
	int			ret;

	values[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_plan(orderexp_keep_plan(&next_due_plan, next_due_sql, 1, argtypes, 0),
						   values, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the next deadline failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		next = DatumGetTimestampTz(d);
	/* kept until the caller's SPI connection ends otherwise */
	SPI_freetuptable(SPI_tuptable);
	fold_next_due(round, next);
}

/* the next round of this sweep starts with no table to continue */
static void
forget_continuation(void)
{
	int			i;

	for (i = 0; i < ncontinue; i++)
		pfree(continue_names[i]);
	ncontinue = 0;
	continue_sweep_id = current_sweep_id;
}

/* the next round of this sweep goes straight on with this table's full batches */
static void
add_continuation(DueTable *dt, int full)
{
	static int	allocated = 0;

	if (ncontinue == allocated)
	{
		int			n = Max(8, allocated * 2);

		if (allocated == 0)
		{
			continue_relids = MemoryContextAlloc(TopMemoryContext, n * sizeof(Oid));
			continue_names = MemoryContextAlloc(TopMemoryContext, n * sizeof(char *));
			continue_full = MemoryContextAlloc(TopMemoryContext, n * sizeof(int));
		}
		else
		{
			continue_relids = repalloc(continue_relids, n * sizeof(Oid));
			continue_names = repalloc(continue_names, n * sizeof(char *));
			continue_full = repalloc(continue_full, n * sizeof(int));
		}
		allocated = n;
	}
	continue_relids[ncontinue] = dt->relid;
	continue_names[ncontinue] = MemoryContextStrdup(TopMemoryContext, dt->name);
	continue_full[ncontinue] = full;
	ncontinue++;
}

/* open a relation of the overview, or NULL if it went (a REINDEX CONCURRENTLY) */
static Relation
overview_open(Oid relid, char relkind)
{
	Relation	rel = try_relation_open(relid, AccessShareLock);

	if (rel != NULL && rel->rd_rel->relkind != relkind)
	{
		relation_close(rel, AccessShareLock);
		rel = NULL;
	}
	return rel;
}

/*
 * Column "column" (close_at, remind_at) of the first row of timers for table
 * relid in index idx's order, or dflt if it has none
 */
static TimestampTz
overview_first_timer(const OrderexpCatalog *cat, Relation timers, Relation idx, Oid relid,
					 Snapshot snapshot, TimerColumn column, TimestampTz dflt)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	TimestampTz result = dflt;

	ScanKeyInit(&key, cat->timer_attnum[TC_ORDER_TABLE], BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan_ordered(timers, idx, snapshot, 1, &key);
	tup = systable_getnext_ordered(scan, ForwardScanDirection);
	if (tup != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, cat->timer_attnum[column],
									 RelationGetDescr(timers), &isnull);

		if (!isnull)
			result = DatumGetTimestampTz(d);
	}
	systable_endscan_ordered(scan);
	return result;
}

/* sort: earliest deadline first, tables without a timer (DT_NOEND) last */
static int
due_table_cmp(const void *a, const void *b)
{
	const DueTable *x = (const DueTable *) a;
	const DueTable *y = (const DueTable *) b;

	if (x->close_at != y->close_at)
		return x->close_at < y->close_at ? -1 : 1;
	return x->relid < y->relid ? -1 : (x->relid > y->relid ? 1 : 0);
}

/*
 * read_overview
 *		overview_plain_sql's rows, read without the executor: every
 *		registered table that still exists, with its earliest deadline and
 *		earliest pending reminder (the first entry of timers_due and of
 *		timers_remind for it) and, if it has plain deadlines, its stamp (the
 *		row versions of its default policy, its registration, its pg_class
 *		row and the extension); only tables with a timer or plain deadlines,
 *		earliest deadline first.  Under the active snapshot, as the
 *		statement ran (read-only SPI); as the extension owner, who may read
 *		all of these.  An idle worker ran this statement every tick, and its
 *		plan's start alone (three laterals, two joins, a sort, sequential
 *		scans that each ask the kernel for the table's size) was about half
 *		of the tick (bench/results.md).  Returns NULL, and the caller runs
 *		the statement, when one of the relations is missing (a version
 *		without them, or an index being rebuilt concurrently).
 */
static DueTable *
read_overview(const OrderexpCatalog *cat, uint64 *ntables)
{
	enum
	{
		OV_TABLES, OV_TABLES_PKEY, OV_TIMERS, OV_DUE, OV_REMIND, OV_POLICIES,
		OV_POLICIES_DEFAULT, OV_NRELS
	};
	const Oid	relids[OV_NRELS] = {cat->tables, cat->tables_pkey, cat->timers,
		cat->timers_due, cat->timers_remind, cat->policies, cat->policies_default};
	const char	relkinds[OV_NRELS] = {RELKIND_RELATION, RELKIND_INDEX, RELKIND_RELATION,
		RELKIND_INDEX, RELKIND_INDEX, RELKIND_RELATION, RELKIND_INDEX};
	Relation	rels[OV_NRELS] = {NULL};
	Snapshot	snapshot = GetActiveSnapshot();
	DueTable   *result = NULL;
	uint64		n = 0;
	uint64		size = 16;
	TransactionId ext_xmin;
	Relation	tables_rel,
				timers,
				policies;
	SysScanDesc tscan;
	HeapTuple	ttup;
	int			i;

	if (cat->tables_order_table == InvalidAttrNumber ||
		cat->policies_order_table == InvalidAttrNumber ||
		cat->policies_plain_since == InvalidAttrNumber ||
		cat->timer_attnum[TC_ORDER_TABLE] == 0 || cat->timer_attnum[TC_CLOSE_AT] == 0 ||
		cat->timer_attnum[TC_REMIND_AT] == 0)
		return NULL;
	for (i = 0; i < OV_NRELS; i++)
		if (!OidIsValid(relids[i]) ||
			(rels[i] = overview_open(relids[i], relkinds[i])) == NULL)
			goto done;
	tables_rel = rels[OV_TABLES];
	timers = rels[OV_TIMERS];
	policies = rels[OV_POLICIES];

	/* the extension's row version, for the stamps */
	ext_xmin = orderexp_extension_xmin(snapshot);
	if (!TransactionIdIsValid(ext_xmin))
		goto done;

	result = palloc0(sizeof(DueTable) * (size + 1));
	tscan = systable_beginscan_ordered(tables_rel, rels[OV_TABLES_PKEY], snapshot, 0, NULL);
	while ((ttup = systable_getnext_ordered(tscan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(heap_getattr(ttup, cat->tables_order_table,
														  RelationGetDescr(tables_rel),
														  &isnull));
		TransactionId t_xmin = HeapTupleHeaderGetRawXmin(ttup->t_data);
		TransactionId c_xmin;
		HeapTuple	ctup;
		HeapTuple	tup;
		SysScanDesc scan;
		DueTable	dt;

		/* JOIN pg_class: a registration outliving its table is left out */
		ctup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		if (!HeapTupleIsValid(ctup))
			continue;
		c_xmin = HeapTupleHeaderGetRawXmin(ctup->t_data);
		ReleaseSysCache(ctup);

		memset(&dt, 0, sizeof(dt));
		dt.relid = relid;
		dt.close_at = overview_first_timer(cat, timers, rels[OV_DUE], relid, snapshot,
										   TC_CLOSE_AT, DT_NOEND);
		dt.remind_at = overview_first_timer(cat, timers, rels[OV_REMIND], relid, snapshot,
											TC_REMIND_AT, 0);

		/* the default policy, if it has plain deadlines: the stamp */
		{
			ScanKeyData key;

			ScanKeyInit(&key, cat->policies_order_table, BTEqualStrategyNumber, F_OIDEQ,
						ObjectIdGetDatum(relid));
			scan = systable_beginscan_ordered(policies, rels[OV_POLICIES_DEFAULT], snapshot,
											  1, &key);
			tup = systable_getnext_ordered(scan, ForwardScanDirection);
			if (tup != NULL)
			{
				(void) heap_getattr(tup, cat->policies_plain_since,
									RelationGetDescr(policies), &isnull);
				if (!isnull)
				{
					dt.plain = true;
					dt.plain_stamp = psprintf("%u/%u/%u/%u",
											  HeapTupleHeaderGetRawXmin(tup->t_data),
											  t_xmin, c_xmin, ext_xmin);
				}
			}
			systable_endscan_ordered(scan);
		}

		if (dt.close_at == DT_NOEND && !dt.plain)
			continue;
		dt.name = DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)));
		if (n == size)
		{
			size *= 2;
			result = repalloc(result, sizeof(DueTable) * (size + 1));
		}
		result[n++] = dt;
	}
	systable_endscan_ordered(tscan);
	if (n > 1)
		qsort(result, n, sizeof(DueTable), due_table_cmp);
	memset(&result[n], 0, sizeof(DueTable));
	*ntables = n;

done:
	for (i = OV_NRELS - 1; i >= 0; i--)
		if (rels[i] != NULL)
			relation_close(rels[i], AccessShareLock);
	return result;
}

/*
 * orderexp_sweep_begin
 *		Start a sweep: the rounds that follow, up to the next call, take due
 *		orders in deadline order, each batch after the previous one.
 */
void
orderexp_sweep_begin(void)
{
	current_sweep_id++;
}

/*
 * orderexp_sweep_round
 *		Give every table with due orders one batch of at most batch_limit.
 *
 * The caller has connected to SPI, holds a snapshot and a transaction, and
 * runs with a safe search_path, as the extension owner.  With a valid
 * "caller", tables on which that role lacks UPDATE, or to which row-level
 * security applies for it, are skipped with a WARNING (once per table and
 * backend).
 */
void
orderexp_sweep_round(int batch_limit, int64 budget, bool in_worker, Oid caller,
					 SweepRound *round)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz wallclock = GetCurrentTimestamp();
	DueTable   *tables;
	uint64		ntables;
	uint64		i;
	int			ret;

	memset(round, 0, sizeof(*round));

	if (continue_sweep_id == current_sweep_id && ncontinue > 0)
	{
		/* the tables that had more, and the kinds of batch that had more */
		ntables = ncontinue;
		tables = palloc0(sizeof(DueTable) * (ntables + 1));
		for (i = 0; i < ntables; i++)
		{
			int			full = continue_full[i];

			tables[i].relid = continue_relids[i];
			tables[i].name = pstrdup(continue_names[i]);
			tables[i].close_at = (full & FULL_CLOSE) ? now : DT_NOEND;
			tables[i].remind_at = (full & FULL_REMIND) ? now : 0;
			tables[i].plain = (full & FULL_PLAIN) != 0;
		}
	}
	else
	{
		const OrderexpCatalog *cat = orderexp_catalog();
		bool		plain = cat->plain_deadlines;

		round->from_overview = true;
		tables = plain ? read_overview(cat, &ntables) : NULL;
	}
	if (tables == NULL)
	{
		bool		plain = orderexp_catalog()->plain_deadlines;

		if (plain != overview_plain)
		{
			orderexp_forget_plan(&overview_plan);
			overview_plain = plain;
		}
		ret = SPI_execute_plan(orderexp_keep_plan(&overview_plan,
												  plain ? overview_plain_sql : overview_sql,
												  0, NULL, 0),
							   NULL, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading the due overview failed: %s", SPI_result_code_string(ret));

		/* copy out: the batches below reuse SPI_tuptable */
		ntables = SPI_processed;
		tables = palloc0(sizeof(DueTable) * (ntables + 1));
		for (i = 0; i < ntables; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			Datum		d;

			tables[i].relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
			tables[i].name = SPI_getvalue(tup, desc, 2);
			/* a table with plain deadlines may have no timer at all */
			d = SPI_getbinval(tup, desc, 3, &isnull);
			tables[i].close_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
			tables[i].remind_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
			if (isnull)
				tables[i].remind_at = 0;
			if (plain)
			{
				tables[i].plain_stamp = SPI_getvalue(tup, desc, 5);
				tables[i].plain = (tables[i].plain_stamp != NULL);
			}
		}
		/* kept until the caller's SPI connection ends otherwise */
		SPI_freetuptable(SPI_tuptable);
	}
	forget_continuation();

	for (i = 0; i < ntables; i++)
	{
		DueTable   *dt = &tables[i];
		TablePlan  *entry;
		int			limit = batch_limit;
		int			full;

		TimestampTz first = dt->close_at;

		if (dt->remind_at != 0 && dt->remind_at < first)
			first = dt->remind_at;
		if (first > now)
		{
			fold_next_due(round, first);
			if (!dt->plain)
				continue;
		}

		entry = table_plan_entry(dt->relid);
		/*
		 * The overview says whether a table has plain deadlines; go on with
		 * that (a plain batch that found the table unregistered says no).
		 */
		if (round->from_overview)
			entry->has_plain = dt->plain;
		else
			dt->plain = dt->plain && entry->has_plain;
		if (in_worker && entry->retry_after > wallclock)
			continue;
		if (OidIsValid(caller) &&
			pg_class_aclcheck(dt->relid, caller, ACL_UPDATE) != ACLCHECK_OK)
		{
			if (!entry->denied)
				ereport(WARNING,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("orderexp.run_due() skips table %s: permission denied", dt->name),
						 errdetail("Closing its orders needs the UPDATE privilege on it.")));
			entry->denied = true;
			continue;
		}
		/* as the gates do: the close could not honour the caller's policies */
		if (OidIsValid(caller) &&
			check_enable_rls(dt->relid, caller, true) == RLS_ENABLED)
		{
			if (!entry->denied)
				ereport(WARNING,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("orderexp.run_due() skips table %s: row-level security applies to role %s",
								dt->name, GetUserNameFromId(caller, false)),
						 errdetail("The sweep closes every due order of a table; it cannot apply the table's policies for the caller."),
						 errhint("Call run_due() as a role that bypasses row-level security on this table, or one that owns it.")));
			entry->denied = true;
			continue;
		}

		/*
		 * Plain deadlines: run the plain batch only if an order's has come,
		 * which the first entry of the table's index tells.  Not for a table
		 * whose last batch failed: a batch that goes well clears its error.
		 */
		if (dt->plain && round->from_overview && !entry->failed)
		{
			TimestampTz plain_at;

			if (orderexp_plain_first_due(&entry->plain, dt->relid, dt->plain_stamp,
										 current_sweep_id, now, &plain_at) &&
				plain_at > now)
			{
				fold_next_due(round, plain_at);
				if (first > now)
					continue;
				dt->plain = false;	/* only the timers' batches */
			}
		}

		if (in_worker)
			pgstat_report_activity(STATE_RUNNING,
								   psprintf("closing due orders of %s", dt->name));
		/* with a budget, the tables share it: no more than that is taken */
		if (budget >= 0)
		{
			int64		left = budget - round->processed - round->reminded_taken;

			if (left <= 0)
			{
				round->more = true;
				break;
			}
			limit = (int) Min((int64) batch_limit, left);
		}
		if ((full = table_batches_guarded(entry, dt, now, limit, in_worker, round)) != 0)
			add_continuation(dt, full);
		else
			note_next_due(dt->relid, round);
		CHECK_FOR_INTERRUPTS();
	}

	/*
	 * Let the WAL writer flush what this transaction has written so far,
	 * while the next round runs, as it does for an asynchronous commit:
	 * otherwise it wakes every wal_writer_delay only, the commit at the end
	 * of a worker transaction waited for the flush of all of it (0.6 s of a
	 * 500,000-order drain, bench/results.md), and a long run_due() wrote and
	 * synced full WAL segments itself.  Flushing WAL early is harmless; the
	 * commit stays synchronous.
	 */
	if (XactLastRecEnd != InvalidXLogRecPtr)
		XLogSetAsyncXactLSN(XactLastRecEnd);
}

/*
 * orderexp.run_due(max_rows int) returns (reminded bigint, closed bigint)
 *
 * What one worker tick does, in the current database and the caller's
 * transaction: rounds of batches until nothing is due, or max_rows due
 * orders have been taken.  Safe beside the worker and beside itself: due
 * timers are taken with SKIP LOCKED.  Does nothing on a standby.
 */
Datum
orderexp_run_due(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		max_rows = -1;
	int64		total_closed = 0;
	int64		total_reminded = 0;
	int64		total_taken = 0;
	Oid			caller;
	RunAs		runas;
	int			ret;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	if (!PG_ARGISNULL(0))
	{
		max_rows = PG_GETARG_INT32(0);
		if (max_rows <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_rows must be positive"),
					 errdetail("max_rows is " INT64_FORMAT ".", max_rows),
					 errhint("Pass NULL to take every due order.")));
	}

	if (RecoveryInProgress())
	{
		ereport(DEBUG1, (errmsg("orderexp.run_due() does nothing on a standby")));
		values[0] = Int64GetDatum(0);
		values[1] = Int64GetDatum(0);
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	/*
	 * Work as the extension owner, like the worker, for the tables the
	 * caller may update; and with a search_path the caller cannot steer.
	 */
	caller = GetUserId();
	orderexp_run_as_begin(&runas, orderexp_owner(), SECURITY_LOCAL_USERID_CHANGE, true);
	/* no JIT for batch statements: see orderexp_worker_main */
	(void) set_config_option("jit", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));

	orderexp_sweep_begin();
	for (;;)
	{
		SweepRound	round;
		int			limit = orderexp_batch_size;

		if (max_rows >= 0 && max_rows - total_taken < limit)
			limit = (int) (max_rows - total_taken);

		orderexp_sweep_round(limit, max_rows >= 0 ? max_rows - total_taken : -1,
							 false, caller, &round);
		total_taken += round.processed + round.reminded_taken;
		total_closed += round.closed;
		total_reminded += round.reminded;

		if (max_rows >= 0 && total_taken >= max_rows)
			break;
		/* done when a round over the overview found nothing more */
		if (!round.more && round.from_overview)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	/*
	 * Prune delivered events as a worker tick does.  pg_cron calls this
	 * once a minute rather than every second: take up to ten batches.
	 */
	for (int i = 0; i < RUN_DUE_PRUNE_BATCHES; i++)
	{
		if (orderexp_prune_outbox(RUN_DUE_PRUNE_BATCH) < RUN_DUE_PRUNE_BATCH)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	SPI_finish();
	orderexp_run_as_end(&runas);

	values[0] = Int64GetDatum(total_reminded);
	values[1] = Int64GetDatum(total_closed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
