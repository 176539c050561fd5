/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The orderexp launcher and the per-database workers.
 *
 * The launcher is a static background worker, started once recovery has
 * finished (so never on a standby) and restarted by the postmaster after a
 * crash.  It is connected to no database; every second it reads
 * orderexp.databases, looks the names up in pg_database, and starts one
 * dynamic worker per existing database that has none.  A database that does
 * not exist yet is simply looked up again a second later: nothing is logged
 * and nothing is started until it appears.
 *
 * A per-database worker checks that the orderexp extension is installed and
 * leaves again at once if not (exit code 0, so the postmaster says nothing);
 * the launcher starts it again a couple of seconds later, which is how a
 * CREATE EXTENSION is picked up without holding a connection to a database
 * that has no use for one.  With the extension present the worker loops:
 * a sweep, then a sleep until the earliest pending deadline, capped by
 * orderexp.naptime.  It takes a session advisory lock so that there is never
 * more than one worker per database, even while an orphan of a restarted
 * launcher is still finishing.
 *
 * The per-database worker recovers from an ERROR the way the autovacuum
 * launcher does: abort the transaction, report, back off, go on.  A batch
 * that fails for one table does not even get that far (see sweep.c).
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "orderexp.h"
#include "catalog.h"
#include "outbox.h"
#include "sweep.h"
#include "worker.h"

/* backend_type of the per-database workers */
#define ORDEREXP_WORKER_TYPE		"orderexp worker"
/* how often the launcher looks at orderexp.databases and its workers */
#define LAUNCHER_INTERVAL_MS		1000
/* least time between two starts of the worker of one database */
#define WORKER_RESTART_DELAY_MS		2000
/* longest back-off of a worker after an unexpected error */
#define WORKER_MAX_BACKOFF_MS		60000
/* shortest sleep between ticks when something comes due soon */
#define WORKER_MIN_SLEEP_MS			10
/* longest a worker transaction keeps taking rounds of batches */
#define WORKER_TRANSACTION_MS		100
/* least time between two prune passes that found nothing more to prune */
#define WORKER_PRUNE_INTERVAL_MS	(60 * 1000)
/* most delivered outbox rows one prune pass deletes */
#define WORKER_PRUNE_BATCH			1000
/* advisory lock key: one worker per database ("oexp", 1), see orderexp.h */
#define ORDEREXP_LOCK_KEY2			1

/* one database the launcher looks after */
typedef struct DatabaseWorker
{
	char		dbname[NAMEDATALEN];
	Oid			dboid;
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
	bool		listed;			/* still in orderexp.databases */
	bool		warned;			/* told the log that it cannot start */
} DatabaseWorker;

static List *database_workers = NIL;	/* of DatabaseWorker *, in TopMemoryContext */

/* per-database worker: when the next prune pass is due (0: at the next tick) */
static TimestampTz next_prune_at = 0;

static bool database_is_listed(const char *dbname);
static DatabaseWorker *find_database_worker(const char *dbname);
static Oid connectable_database(const char *dbname);
static bool worker_running_in(Oid dboid);
static void start_database_worker(DatabaseWorker *dw);
static void launcher_sync(void);
static void worker_prune(void);
static long worker_tick(MemoryContext tick_context);

/*
 * Register the launcher; called from _PG_init when preloaded.
 */
void
orderexp_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "orderexp");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "orderexp_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "orderexp launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "orderexp launcher");
	worker.bgw_notify_pid = 0;
	worker.bgw_main_arg = (Datum) 0;

	RegisterBackgroundWorker(&worker);
}

/* is dbname among the names in orderexp.databases? */
static bool
database_is_listed(const char *dbname)
{
	char	   *rawstring = pstrdup(orderexp_databases);
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (!SplitIdentifierString(rawstring, ',', &names))
		names = NIL;			/* the check hook makes this unreachable */
	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), dbname) == 0)
		{
			found = true;
			break;
		}
	}
	list_free(names);
	pfree(rawstring);
	return found;
}

static DatabaseWorker *
find_database_worker(const char *dbname)
{
	ListCell   *lc;

	foreach(lc, database_workers)
	{
		DatabaseWorker *dw = (DatabaseWorker *) lfirst(lc);

		if (strcmp(dw->dbname, dbname) == 0)
			return dw;
	}
	return NULL;
}

/*
 * Oid of a database that a worker can connect to, or InvalidOid if there is
 * no such database (yet) or it does not allow connections.
 *
 * The launcher is connected to no database, so it cannot use the catalog
 * indexes or caches; like the autovacuum launcher it reads pg_database with
 * a plain heap scan, which is cheap for a catalog of a few rows.
 */
static Oid
connectable_database(const char *dbname)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Oid			dboid = InvalidOid;

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), dbname) != 0)
			continue;
		if (!db->datallowconn)
			break;
		/* a database left half-dropped by an interrupted DROP DATABASE */
		if (db->datconnlimit == -2)
			break;
		dboid = db->oid;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return dboid;
}

/*
 * Is an orderexp worker running in the database?  Reads the backend status
 * array, which the launcher sees afresh in every transaction.
 */
static bool
worker_running_in(Oid dboid)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
#if PG_VERSION_NUM >= 160000
		LocalPgBackendStatus *local = pgstat_get_local_beentry_by_index(i);
#else
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
#endif
		PgBackendStatus *be;
		const char *type;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_backendType != B_BG_WORKER || be->st_databaseid != dboid)
			continue;
		type = GetBackgroundWorkerTypeByPid(be->st_procpid);
		if (type != NULL && strcmp(type, ORDEREXP_WORKER_TYPE) == 0)
			return true;
	}
	return false;
}

/* start the worker of one database */
static void
start_database_worker(DatabaseWorker *dw)
{
	BackgroundWorker worker;
	MemoryContext oldcxt;
	bool		registered;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "orderexp");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "orderexp_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "orderexp worker for database %s", dw->dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, ORDEREXP_WORKER_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(dw->dboid);
	worker.bgw_notify_pid = MyProcPid;

	dw->last_start = GetCurrentTimestamp();

	/* the handle outlives the transaction we are called in */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &dw->handle);
	MemoryContextSwitchTo(oldcxt);

	if (!registered)
	{
		dw->handle = NULL;
		if (!dw->warned)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("orderexp could not start a worker for database \"%s\"",
							dw->dbname),
					 errdetail("No background worker slot is free."),
					 errhint("Raise max_worker_processes: orderexp needs one slot for its launcher and one per database in orderexp.databases.")));
		dw->warned = true;
		return;
	}
	dw->warned = false;
}

/*
 * Bring the running workers in line with orderexp.databases: start missing
 * ones, notice stopped ones, stop those no longer listed.
 */
static void
launcher_sync(void)
{
	char	   *rawstring;
	List	   *names;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	foreach(lc, database_workers)
		((DatabaseWorker *) lfirst(lc))->listed = false;

	rawstring = pstrdup(orderexp_databases);
	if (!SplitIdentifierString(rawstring, ',', &names))
		names = NIL;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	foreach(lc, names)
	{
		char	   *dbname = (char *) lfirst(lc);
		DatabaseWorker *dw = find_database_worker(dbname);

		if (dw == NULL)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

			dw = palloc0(sizeof(DatabaseWorker));
			strlcpy(dw->dbname, dbname, NAMEDATALEN);
			database_workers = lappend(database_workers, dw);
			MemoryContextSwitchTo(oldcxt);
		}
		dw->listed = true;

		if (dw->handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(dw->handle, &pid) != BGWH_STOPPED)
				continue;
			pfree(dw->handle);
			dw->handle = NULL;
		}

		if (!TimestampDifferenceExceeds(dw->last_start, now, WORKER_RESTART_DELAY_MS))
			continue;

		dw->dboid = connectable_database(dbname);
		if (!OidIsValid(dw->dboid))
			continue;			/* not there (yet): look again later */

		/*
		 * A worker this launcher did not start (the previous launcher's, if
		 * this one was restarted) may still be serving the database.
		 */
		if (worker_running_in(dw->dboid))
		{
			dw->last_start = now;
			continue;
		}

		start_database_worker(dw);
	}
	CommitTransactionCommand();

	/*
	 * Workers of databases taken off the list leave by themselves when they
	 * see the same reload (after finishing the batch in hand), so they are
	 * not terminated from here; just notice when they are gone.
	 */
	foreach(lc, database_workers)
	{
		DatabaseWorker *dw = (DatabaseWorker *) lfirst(lc);
		pid_t		pid;

		if (!dw->listed && dw->handle != NULL &&
			GetBackgroundWorkerPid(dw->handle, &pid) == BGWH_STOPPED)
		{
			pfree(dw->handle);
			dw->handle = NULL;
		}
	}

	list_free(names);
	pfree(rawstring);
}

/*
 * orderexp_launcher_main
 *		Keep one worker running per listed database.
 */
void
orderexp_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("orderexp launcher");

	ereport(LOG,
			(errmsg("orderexp launcher started"),
			 errdetail("Databases: %s.", orderexp_databases)));

	for (;;)
	{
		launcher_sync();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_INTERVAL_MS,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Delete delivered outbox rows older than orderexp.event_retention, a batch
 * per tick, in a transaction of its own.  After a pass that deleted less
 * than a batch there is nothing more to do for a while: the next pass comes
 * a minute later (or at once after a configuration reload), so an idle
 * database pays one index probe a minute for pruning.  The pass also marks
 * the outbox (outbox.c), with the retention off too.
 */
static void
worker_prune(void)
{
	int64		pruned;

	/* with the retention off, the pass still marks the outbox (outbox.c) */
	if (GetCurrentTimestamp() < next_prune_at)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* dropped since the tick: the next tick leaves */
	if (!orderexp_extension_ready())
	{
		CommitTransactionCommand();
		return;
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "orderexp: pruning delivered events");

	pruned = orderexp_prune_outbox(WORKER_PRUNE_BATCH);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (pruned > 0)
		ereport(DEBUG1,
				(errmsg("orderexp worker pruned " INT64_FORMAT " delivered events", pruned)));
	if (pruned >= WORKER_PRUNE_BATCH)
		next_prune_at = 0;
	else
		next_prune_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													WORKER_PRUNE_INTERVAL_MS);
}

/*
 * One tick of a database worker: rounds of batches until no table has a
 * full batch.  A transaction holds rounds for up to WORKER_TRANSACTION_MS,
 * so that a large backlog does not pay a commit (a WAL flush) per batch,
 * while the events of a round still reach listeners within a fraction of a
 * second.  Returns how long to sleep.
 */
static long
worker_tick(MemoryContext tick_context)
{
	TimestampTz next_due = 0;
	bool		stuck = false;
	bool		progress = false;
	bool		done = false;
	long		sleep_ms = orderexp_naptime;

	orderexp_sweep_begin();
	while (!done)
	{
		TimestampTz xact_start;
		bool		xact_progress = false;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		xact_start = GetCurrentTimestamp();

		if (!orderexp_extension_ready())
		{
			CommitTransactionCommand();
			ereport(DEBUG1,
					(errmsg("orderexp is not installed in database \"%s\", worker leaving",
							get_database_name(MyDatabaseId))));
			proc_exit(0);
		}

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());

		for (;;)
		{
			SweepRound	round;
			MemoryContext oldcxt;

			oldcxt = MemoryContextSwitchTo(tick_context);
			orderexp_sweep_round(orderexp_batch_size, -1, true, InvalidOid, &round);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(tick_context);

			if (round.processed > 0)
				progress = xact_progress = true;
			stuck = round.stuck;
			next_due = round.next_due;

			/* done when a round over the overview found nothing more */
			if ((!round.more && round.from_overview) ||
				ConfigReloadPending || !orderexp_enabled)
			{
				done = true;
				break;
			}
			if (TimestampDifferenceExceeds(xact_start, GetCurrentTimestamp(),
										   WORKER_TRANSACTION_MS))
				break;
			CHECK_FOR_INTERRUPTS();
		}

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
#ifdef __GLIBC__

		/*
		 * Give the pages that the batches' executor memory has left free
		 * back to the kernel.  PostgreSQL frees that memory when a batch
		 * ends, but glibc keeps freed pages in its heap, and the next
		 * batches' blocks land in other places of it: without this the
		 * worker's private memory creeps up through a long drain and stays
		 * there.  Once per transaction that did work, not per idle tick: a
		 * walk of the heap's free lists and a few madvise() calls, small
		 * against a transaction of batches.  bench/README.md, 5. Memory,
		 * has the figures.
		 */
		if (xact_progress)
			malloc_trim(0);
#endif
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		CHECK_FOR_INTERRUPTS();
	}

	worker_prune();

	if (stuck)
	{
		/* rows locked by someone else: look again soon, do not spin */
		sleep_ms = Min(sleep_ms, progress ? 10 : 100);
	}
	if (next_due != 0)
	{
		long		secs;
		int			usecs;

		/*
		 * Until the next deadline or reminder, but not less than a floor:
		 * under a steady stream of orders the next deadline is always a
		 * moment away, and a tick per order would cost more than it saves.
		 */
		TimestampDifference(GetCurrentTimestamp(), next_due, &secs, &usecs);
		sleep_ms = Min(sleep_ms,
					   Max(secs * 1000 + (usecs + 999) / 1000, WORKER_MIN_SLEEP_MS));
	}
	return Max(sleep_ms, 1);
}

/*
 * orderexp_worker_main
 *		Close due orders in one database until told to stop.
 */
void
orderexp_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	sigjmp_buf	local_sigjmp_buf;
	MemoryContext tick_context;
	volatile long backoff_ms = 0;
	char	   *dbname;
	LOCKTAG		tag;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("orderexp worker");

	/* nothing the worker runs follows a user's search_path */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * No JIT.  A batch statement handles a thousand rows in milliseconds,
	 * but its generic plan over a big table, worse a partitioned one with
	 * every partition in the plan, is costed above jit_above_cost, and JIT
	 * code is compiled anew for every execution, which cost more than the
	 * batch itself (bench/partitioned-results.md has the figures).
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "orderexp worker", PGC_USERSET, PGC_S_SESSION);

	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	if (!orderexp_extension_ready())
	{
		CommitTransactionCommand();
		ereport(DEBUG1,
				(errmsg("orderexp is not installed in database \"%s\"", dbname)));
		proc_exit(0);
	}
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ORDEREXP_LOCK_KEY1, ORDEREXP_LOCK_KEY2, 2);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		CommitTransactionCommand();
		ereport(DEBUG1,
				(errmsg("another orderexp worker is running in database \"%s\"", dbname)));
		proc_exit(0);
	}
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("orderexp worker started for database \"%s\"", dbname)));

	tick_context = AllocSetContextCreate(TopMemoryContext,
										 "orderexp tick",
										 ALLOCSET_DEFAULT_SIZES);

	/*
	 * An ERROR outside the per-table subtransactions lands here: clean up as
	 * PostgresMain does, then back off so that a persistent failure costs a
	 * log line a minute, not a crash loop.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		HOLD_INTERRUPTS();
		error_context_stack = NULL;
		EmitErrorReport();
		AbortCurrentTransaction();
		SPI_finish();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(tick_context);
		orderexp_forget_plans();
		RESUME_INTERRUPTS();

		backoff_ms = backoff_ms == 0 ? 1000 : Min(backoff_ms * 2, WORKER_MAX_BACKOFF_MS);
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 backoff_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		long		sleep_ms = orderexp_naptime;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a new retention applies at once */
			next_prune_at = 0;
			if (!database_is_listed(dbname))
			{
				ereport(LOG,
						(errmsg("orderexp worker for database \"%s\" stopping: the database is no longer in orderexp.databases",
								dbname)));
				proc_exit(0);
			}
		}

		if (orderexp_enabled)
		{
			sleep_ms = worker_tick(tick_context);
			backoff_ms = 0;
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
