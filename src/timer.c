/*-------------------------------------------------------------------------
 *
 * timer.c
 *		The row trigger that starts the timer of a new unpaid order.
 *
 * set_close_policy() puts this trigger on a registered table AFTER INSERT,
 * for rows that arrive unpaid (up to 1.2 also AFTER UPDATE OF the status
 * column, for rows set back to unpaid, which from 1.3 on the status trigger
 * does through orderexp_track_order).  Only unpaid rows get a timer: a
 * payment (unpaid to paid) does nothing here.
 *
 * The trigger arguments are the names of the key, created-at and category
 * columns (the last may be empty), the OID of the registered table at the
 * time the trigger was made and, since 1.2, the status column and the
 * unpaid value, with which the trigger tests the status itself instead of a
 * WHEN clause (see orderexp_timer_trigger).  That OID is not used: a dump
 * and restore gives the table a new one but keeps the arguments.  The
 * registered table is the one the trigger was created on; on a partitioned
 * table the trigger fires on the partition as a clone, and the timer
 * belongs to the table of the clone's topmost parent trigger.
 *
 * The trigger is on the application's insert path, so it is kept cheap: the
 * policies of a table (the category's own, else the table's default) come
 * from a backend-local cache, and a new order's timer row goes straight
 * into the heap and the indexes of orderexp.timers, without SPI or an
 * executor plan (insert_timer_direct: about half the instructions of the
 * kept INSERT, see bench/instructions.md), as a speculative insertion that
 * needs no probe of its own, through relations kept open for the rest of
 * the transaction (TimerInserter: a bulk INSERT opens them once).  Only an
 * order that has a timer already (set back to unpaid, a key used again)
 * takes the kept single-row INSERT ... ON CONFLICT DO UPDATE.  SPI is
 * connected only for that, and to read a table's policies into the cache,
 * which happens once per table and backend.  The cache is dropped whenever
 * orderexp.policies changes: a statement trigger on that table sends a
 * relcache invalidation for it, which every backend receives at the commit
 * of the change.  Starting and ending an experiment change the policy row
 * too, so the cache never holds the variants of an experiment that ended.
 *
 * A policy running an experiment (orderexp.start_experiment) has variants:
 * each new order is assigned one from a hash of its key (experiment.c), gets
 * that variant's close_after, and the timer records the variant and the
 * policy version, so that outcomes can be compared per variant.
 *
 * A table with plain deadlines whose created-at column is NOT NULL has no
 * such trigger on INSERT (1.3, _install_triggers): each new unpaid order
 * has its plain deadline without a row.  What the insert did for an order
 * whose key has a lingering timer row (one paid while it had a deadline of
 * its own, then deleted) the AFTER DELETE trigger does there instead
 * (orderexp_delete_trigger): the deleted order's row goes, so that a new
 * order of its key does not inherit it.
 *
 * The insert runs as the owner of the orderexp schema, so that application
 * roles need no privileges on orderexp's tables.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "orderexp.h"
#include "catalog.h"
#include "experiment.h"
#include "runas.h"
#include "spiplan.h"
#include "timer.h"

PG_FUNCTION_INFO_V1(orderexp_timer_trigger);
PG_FUNCTION_INFO_V1(orderexp_delete_trigger);
PG_FUNCTION_INFO_V1(orderexp_policies_changed);

/* one close policy, as the trigger needs it */
typedef struct CachedPolicy
{
	int32		id;
	char	   *category;		/* NULL: the table's default */
	Interval	close_after;
	Interval	remind_before;
	bool		has_remind;
	int32		version;		/* orderexp.policies.version */
	int32		experiment_id;	/* running experiment, or 0 */
	int			nvariants;		/* 0 unless an experiment runs */
	Interval   *variants;		/* close_after of each variant */
	int32	   *weights;		/* and its weight */
	bool		plain;			/* plain deadlines (set_plain_deadlines) */
} CachedPolicy;

/* the policies of one registered table */
typedef struct TablePolicies
{
	Oid			relid;			/* hash key: the registered table */
	int			npolicies;
	CachedPolicy *policies;		/* in PolicyCacheContext */
} TablePolicies;

static HTAB *policy_cache = NULL;
static MemoryContext PolicyCacheContext = NULL;
static Oid	policies_relid = InvalidOid;

static SPIPlanPtr timer_insert_plan = NULL;
static SPIPlanPtr policies_plan = NULL;

/*
 * The library serves databases still at version 1.0 of the extension (until
 * ALTER EXTENSION UPDATE), whose catalog has no policy versions, experiments
 * or timer variants: the plans follow the catalog they find.  The choice is
 * made again whenever the policy cache is rebuilt, which an update of the
 * extension causes (it alters orderexp.policies).
 */
static bool plans_for_1_1 = false;
static bool plans_for_plain = false;	/* 1.3: policies.plain_since */

/*
 * Operators and functions are schema-qualified: the plans may be re-planned
 * under whatever search_path the application has.
 */
static const char *timer_insert_sql =
"INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, remind_at, "
"                                   policy_version, variant, order_created) "
"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
"ON CONFLICT (order_table, order_key) DO UPDATE "
"   SET policy_id = excluded.policy_id, close_at = excluded.close_at, "
"       remind_at = CASE WHEN excluded.close_at OPERATOR(pg_catalog.=) t.reminded_for "
"                        THEN NULL ELSE excluded.remind_at END, "
"       extensions = 0, token_extensions = 0, generation = DEFAULT, "
"       policy_version = excluded.policy_version, variant = excluded.variant, "
"       reopened = false, order_created = excluded.order_created";

static const char *timer_insert_sql_1_0 =
"INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, remind_at) "
"VALUES ($1, $2, $3, $4, $5) "
"ON CONFLICT (order_table, order_key) DO UPDATE "
"   SET policy_id = excluded.policy_id, close_at = excluded.close_at, "
"       remind_at = CASE WHEN excluded.close_at OPERATOR(pg_catalog.=) t.reminded_for "
"                        THEN NULL ELSE excluded.remind_at END, "
"       extensions = 0, token_extensions = 0, generation = DEFAULT";

static const char *policies_sql_1_0 =
"SELECT p.id, p.category, p.close_after, p.remind_before, 0, NULL::integer, "
"       NULL::interval[], NULL::integer[] "
"  FROM orderexp.policies p WHERE p.order_table OPERATOR(pg_catalog.=) $1";

static const char *policies_sql =
"SELECT p.id, p.category, p.close_after, p.remind_before, p.version, "
"       e.id, e.variants, e.weights "
"  FROM orderexp.policies p "
"  LEFT JOIN orderexp.experiments e ON e.id OPERATOR(pg_catalog.=) p.experiment_id "
" WHERE p.order_table OPERATOR(pg_catalog.=) $1";

static const char *policies_sql_plain =
"SELECT p.id, p.category, p.close_after, p.remind_before, p.version, "
"       e.id, e.variants, e.weights, p.plain_since "
"  FROM orderexp.policies p "
"  LEFT JOIN orderexp.experiments e ON e.id OPERATOR(pg_catalog.=) p.experiment_id "
" WHERE p.order_table OPERATOR(pg_catalog.=) $1";

static void policy_cache_invalidate(Datum arg, Oid relid);
static TablePolicies *table_policies(Oid relid);
static bool insert_timer_direct(Datum *values, bool *isnull);
static CachedPolicy *choose_policy(TablePolicies *tp, const char *category);

/*
 * relcache callback: orderexp.policies changed (its statement trigger sends
 * the invalidation, see orderexp_policies_changed), or every relation did:
 * drop the policy cache
 */
static void
policy_cache_invalidate(Datum arg, Oid relid)
{
	if (policy_cache == NULL)
		return;
	if (relid == InvalidOid || relid == policies_relid)
	{
		hash_destroy(policy_cache);
		policy_cache = NULL;
		MemoryContextReset(PolicyCacheContext);
		policies_relid = InvalidOid;
	}
}

/* the policies of a registered table, from the cache or read afresh */
static TablePolicies *
table_policies(Oid relid)
{
	TablePolicies *tp;
	bool		found;
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1];
	MemoryContext oldcxt;
	uint64		i;
	int			ret;

	if (PolicyCacheContext == NULL)
	{
		PolicyCacheContext = AllocSetContextCreate(TopMemoryContext,
												   "orderexp policy cache",
												   ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(policy_cache_invalidate, (Datum) 0);
	}
	if (policy_cache == NULL)
	{
		HASHCTL		ctl;
		const OrderexpCatalog *cat = orderexp_catalog();

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TablePolicies);
		ctl.hcxt = PolicyCacheContext;

		policy_cache = hash_create("orderexp policy cache", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		policies_relid = cat->policies;
		if (cat->has_experiments != plans_for_1_1 ||
			cat->plain_deadlines != plans_for_plain)
		{
			orderexp_forget_plan(&policies_plan);
			orderexp_forget_plan(&timer_insert_plan);
			plans_for_1_1 = cat->has_experiments;
			plans_for_plain = cat->plain_deadlines;
		}
	}

	tp = hash_search(policy_cache, &relid, HASH_FIND, &found);
	if (found)
		return tp;

	/*
	 * A miss: read them, through SPI (a hit, nearly every call, needs
	 * none), under a new snapshot, not the statement's.  The cache outlives
	 * the statement, and is reset only by an invalidation, which may have
	 * been processed already for a change that the statement's snapshot,
	 * taken earlier, does not see (an application's statement that waited
	 * for a row lock while an experiment started, say: isolation spec
	 * policy_cache).  A new snapshot sees every change whose invalidation
	 * was processed, and one that arrives while reading resets the cache
	 * again (below).
	 */
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	values[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_snapshot(orderexp_keep_plan(&policies_plan,
												  plans_for_plain ? policies_sql_plain :
												  plans_for_1_1 ? policies_sql : policies_sql_1_0,
												  1, argtypes, 0),
							   values, NULL, GetLatestSnapshot(), InvalidSnapshot,
							   true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the close policies failed: %s", SPI_result_code_string(ret));

	/* an invalidation while reading may have reset the cache: look again */
	if (policy_cache == NULL)
	{
		SPI_finish();
		return table_policies(relid);
	}

	oldcxt = MemoryContextSwitchTo(PolicyCacheContext);
	tp = hash_search(policy_cache, &relid, HASH_ENTER, &found);
	tp->npolicies = (int) SPI_processed;
	tp->policies = palloc0(sizeof(CachedPolicy) * Max(tp->npolicies, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		CachedPolicy *cp = &tp->policies[i];
		bool		isnull;
		Datum		d;

		cp->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		cp->category = SPI_getvalue(tup, desc, 2);	/* NULL for the default */
		d = SPI_getbinval(tup, desc, 3, &isnull);
		cp->close_after = *DatumGetIntervalP(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		cp->has_remind = !isnull;
		if (!isnull)
			cp->remind_before = *DatumGetIntervalP(d);
		cp->version = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		if (!isnull)
		{
			ArrayType  *vars;
			ArrayType  *wts;
			Datum	   *elems;
			bool	   *elemnulls;
			int			n;
			int			nw;
			int			j;

			cp->experiment_id = DatumGetInt32(d);
			vars = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 7, &isnull));
			deconstruct_array(vars, INTERVALOID, sizeof(Interval), false,
							  TYPALIGN_DOUBLE, &elems, &elemnulls, &n);
			cp->variants = palloc(sizeof(Interval) * Max(n, 1));
			for (j = 0; j < n; j++)
				cp->variants[j] = *DatumGetIntervalP(elems[j]);
			wts = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 8, &isnull));
			deconstruct_array(wts, INT4OID, sizeof(int32), true,
							  TYPALIGN_INT, &elems, &elemnulls, &nw);
			if (nw != n || n == 0)
				elog(ERROR, "experiment %d has %d variants and %d weights",
					 cp->experiment_id, n, nw);
			cp->weights = palloc(sizeof(int32) * n);
			for (j = 0; j < n; j++)
				cp->weights[j] = DatumGetInt32(elems[j]);
			cp->nvariants = n;
		}
		if (plans_for_plain)
		{
			(void) SPI_getbinval(tup, desc, 9, &isnull);
			cp->plain = !isnull;
		}
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	return tp;
}

/*
 * What the direct insert keeps open from one new order to the next within a
 * transaction: orderexp.timers, its indexes (the IndexInfo of each, with
 * what a speculative insertion needs) and an executor state with a slot.
 * Opening and closing them cost as much as the insert itself (a third of
 * the trigger, see bench/instructions.md); a bulk INSERT of orders opens
 * them once.
 *
 * A transaction that only probes for a timer row (an order with a plain
 * deadline, set_plain_deadlines) opens the table and its primary key only:
 * the rest, as much again as the probe, is opened at the first insert.  A
 * probe of a key without any row opens the key alone (inserter_open_key).
 *
 * They are opened under the transaction's resource owner, so that a
 * subtransaction's abort does not close them under us, and closed before
 * its commit (inserter_xact_callback), so that commit finds nothing left
 * open; an abort closes whatever is open anyway, and we only forget.  A
 * relcache invalidation of orderexp.timers (an index added in this very
 * transaction, the extension updated) makes the next insert reopen them.
 */
typedef struct TimerInserter
{
	LocalTransactionId lxid;	/* the transaction they are open in, or 0 */
	bool		stale;			/* orderexp.timers changed: reopen */
	Oid			relid;
	Relation	timers;			/* NULL until a probe reads it */
	Relation	pkey;			/* the primary key, for timer_exists() */
	TupleTableSlot *probe_slot; /* and a slot of the table's own kind */
	/* opened at the first insert (inserter_open_full) */
	EState	   *estate;			/* in TopTransactionContext */
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	List	   *arbiters;		/* the primary key, for the speculative insert */
} TimerInserter;

static TimerInserter inserter;
static bool inserter_callbacks = false;
static ProcessUtility_hook_type prev_process_utility = NULL;

/* close what the inserter holds open (under the resource owner it used) */
static void
inserter_close(void)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = TopTransactionResourceOwner;
	/* an open that failed half-way left some of these unset */
	if (inserter.rri != NULL && inserter.rri->ri_IndexRelationDescs != NULL)
		ExecCloseIndices(inserter.rri);
	if (inserter.estate != NULL)
	{
		ExecResetTupleTable(inserter.estate->es_tupleTable, false);
		FreeExecutorState(inserter.estate);
	}
	if (inserter.probe_slot != NULL)
		ExecDropSingleTupleTableSlot(inserter.probe_slot);
	if (inserter.pkey != NULL)
		index_close(inserter.pkey, NoLock);
	if (inserter.timers != NULL)
		table_close(inserter.timers, NoLock);
	CurrentResourceOwner = save;
	memset(&inserter, 0, sizeof(inserter));
}

/* before commit or prepare: close; after an abort: forget (already closed) */
static void
inserter_xact_callback(XactEvent event, void *arg)
{
	if (inserter.lxid == InvalidLocalTransactionId)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			inserter_close();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			memset(&inserter, 0, sizeof(inserter));
			break;
		default:
			break;
	}
}

/*
 * Before any utility statement: close.  A table that is open in this
 * session cannot be altered, dropped, truncated or indexed by it ("being
 * used by active queries in this session"): without this, ALTER EXTENSION
 * orderexp UPDATE, or DROP EXTENSION, after new orders in the same
 * transaction would fail.  No utility statement runs while an insert is
 * under way: the direct insert calls out to nothing of the user's.
 */
static void
inserter_process_utility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	if (inserter.lxid != InvalidLocalTransactionId && inserter.lxid == MyProc->lxid)
		inserter_close();
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* relcache callback: orderexp.timers (or every relation) changed */
static void
inserter_invalidate(Datum arg, Oid relid)
{
	if (inserter.lxid != InvalidLocalTransactionId &&
		(relid == InvalidOid || relid == inserter.relid))
		inserter.stale = true;
}

/*
 * The inserter of this transaction with orderexp.timers' primary key open,
 * for a probe: the table itself is locked first, in the order in which
 * PostgreSQL locks a table and its indexes, but opened only when a probe
 * reads it (inserter_open).  A probe of an empty key reads the key's
 * metapage and nothing else; the table's relcache entry and the probe's
 * slot were some 900 instructions a payment (bench/instructions.md), and
 * the slot is made only when a probe finds an index entry
 * (inserter_probe_slot).
 */
static TimerInserter *
inserter_open_key(const OrderexpCatalog *cat)
{
	ResourceOwner save = CurrentResourceOwner;
	MemoryContext oldcxt;

	if (!inserter_callbacks)
	{
		RegisterXactCallback(inserter_xact_callback, NULL);
		CacheRegisterRelcacheCallback(inserter_invalidate, (Datum) 0);
		prev_process_utility = ProcessUtility_hook;
		ProcessUtility_hook = inserter_process_utility;
		inserter_callbacks = true;
	}
	if (inserter.lxid == MyProc->lxid && !inserter.stale &&
		inserter.relid == cat->timers)
		return &inserter;
	if (inserter.lxid == MyProc->lxid)
		inserter_close();
	else
		memset(&inserter, 0, sizeof(inserter));

	CurrentResourceOwner = TopTransactionResourceOwner;
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	PG_TRY();
	{
		LockRelationOid(cat->timers, RowExclusiveLock);
		inserter.relid = cat->timers;
		/* from here on, the end of the transaction closes what is open */
		inserter.lxid = MyProc->lxid;
		inserter.pkey = index_open(cat->timers_pkey, RowExclusiveLock);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	inserter.lxid = MyProc->lxid;
	inserter.stale = false;
	return &inserter;
}

/*
 * The inserter of this transaction, opened if need be: orderexp.timers and
 * its primary key (see inserter_open_full for the rest)
 */
static TimerInserter *
inserter_open(const OrderexpCatalog *cat)
{
	TimerInserter *ti = inserter_open_key(cat);
	ResourceOwner save = CurrentResourceOwner;

	if (ti->timers != NULL)
		return ti;
	/* locked by inserter_open_key, for the rest of the transaction */
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		ti->timers = table_open(cat->timers, NoLock);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	return ti;
}

/*
 * The inserter's slot to read a probe's row into, made when a probe first
 * finds one: most probes find none (a paid order with a plain deadline),
 * and a slot pins the table's descriptor in the resource owner, some 1,100
 * instructions (bench/instructions.md)
 */
static TupleTableSlot *
inserter_probe_slot(TimerInserter *ti)
{
	ResourceOwner save = CurrentResourceOwner;
	MemoryContext oldcxt;

	if (ti->probe_slot != NULL)
		return ti->probe_slot;
	CurrentResourceOwner = TopTransactionResourceOwner;
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	PG_TRY();
	{
		ti->probe_slot = MakeSingleTupleTableSlot(RelationGetDescr(ti->timers),
												  table_slot_callbacks(ti->timers));
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	return ti->probe_slot;
}

/*
 * The inserter of this transaction with what an insert needs besides:
 * every index (with what a speculative insertion needs) and an executor
 * state with a slot
 */
static TimerInserter *
inserter_open_full(const OrderexpCatalog *cat)
{
	TimerInserter *ti = inserter_open(cat);
	ResourceOwner save = CurrentResourceOwner;
	MemoryContext oldcxt;

	if (ti->slot != NULL)
		return ti;
	if (ti->estate != NULL)
	{
		/* an open that failed half-way, in a subtransaction: start over */
		inserter_close();
		ti = inserter_open(cat);
	}
	CurrentResourceOwner = TopTransactionResourceOwner;
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	PG_TRY();
	{
		ti->estate = CreateExecutorState();
		ti->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(ti->rri, ti->timers, 1, NULL, 0);
		ExecOpenIndices(ti->rri, true);
		ti->slot = ExecInitExtraTupleSlot(ti->estate, RelationGetDescr(ti->timers),
										  &TTSOpsVirtual);
		ti->arbiters = list_make1_oid(cat->timers_pkey);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	return ti;
}

/*
 * insert_timer_direct
 *		Insert the timer of an order that has none, as INSERT would, but
 *		without planning or starting an executor: a heap insert, the
 *		table's constraints, and its index entries.  Returns false, having
 *		inserted nothing, if the order has a timer already (the caller takes
 *		the INSERT ... ON CONFLICT then) or if the table is not the one this
 *		code knows.
 *
 * "Has a timer" is found out the way INSERT ... ON CONFLICT does it, by a
 * speculative insertion: the primary key's entry is made without raising a
 * unique violation, and if a timer of the same key exists, or another
 * transaction is inserting one right now, the new row is killed again and
 * the caller goes the way of ON CONFLICT, which waits for that transaction.
 * A key without a timer, nearly always, costs no probe beyond the
 * uniqueness check the index makes anyway.
 */
static bool
insert_timer_direct(Datum *values, bool *isnull)
{
	const OrderexpCatalog *cat = orderexp_catalog();
	TimerInserter *ti;
	TupleTableSlot *slot;
	TransactionId xid;
	uint32		token;
	bool		conflict = false;
	List	   *recheck;
	int			i;

	if (!cat->timer_direct_insert)
		return false;
	ti = inserter_open_full(cat);
	slot = ti->slot;

	/* the defaults of the columns INSERT leaves out */
	values[TC_EXTENSIONS] = Int32GetDatum(0);
	isnull[TC_EXTENSIONS] = false;
	values[TC_TOKEN_EXTENSIONS] = Int32GetDatum(0);
	isnull[TC_TOKEN_EXTENSIONS] = false;
	values[TC_GENERATION] = Int64GetDatum(nextval_internal(cat->generation_seq, false));
	isnull[TC_GENERATION] = false;
	isnull[TC_REMINDED_FOR] = true;
	values[TC_REOPENED] = BoolGetDatum(false);
	isnull[TC_REOPENED] = false;

	ExecClearTuple(slot);
	for (i = 0; i < slot->tts_tupleDescriptor->natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
	for (i = 0; i < TC_NCOLUMNS; i++)
	{
		slot->tts_values[cat->timer_attnum[i] - 1] = values[i];
		slot->tts_isnull[cat->timer_attnum[i] - 1] = isnull[i];
	}
	ExecStoreVirtualTuple(slot);

	if (ti->timers->rd_att->constr)
		ExecConstraints(ti->rri, slot, ti->estate);

	xid = GetCurrentTransactionId();
	token = SpeculativeInsertionLockAcquire(xid);
	table_tuple_insert_speculative(ti->timers, slot, GetCurrentCommandId(true), 0,
								   NULL, token);
#if PG_VERSION_NUM >= 160000
	recheck = ExecInsertIndexTuples(ti->rri, slot, ti->estate, false, true,
									&conflict, ti->arbiters, false);
#else
	recheck = ExecInsertIndexTuples(ti->rri, slot, ti->estate, false, true,
									&conflict, ti->arbiters);
#endif
	table_tuple_complete_speculative(ti->timers, slot, token, !conflict);
	SpeculativeInsertionLockRelease(xid);
	list_free(recheck);
	ResetPerTupleExprContext(ti->estate);
	return !conflict;
}

/*
 * Is the b-tree empty, without a root page?  Then no probe can find
 * anything, and the probe is skipped.  PostgreSQL's b-tree caches its
 * metapage (rd_amcache) only once the tree has a root, so every probe of an
 * empty one reads and locks the metapage again (_bt_metaversion and
 * _bt_getroot): about 4,900 instructions with the scan's start and end
 * (bench/instructions.md), where one read of the metapage here is a fifth
 * of that.  A table with plain deadlines may well have no timer row at all,
 * and every new order and every payment probes.  Once a tree has a root it
 * keeps one, and its cached metapage says so without a read.
 */
static bool
btree_is_empty(Relation index)
{
	Buffer		buf;
	Page		page;
	BTMetaPageData *metad;
	bool		empty;

	if (index->rd_amcache != NULL || index->rd_rel->relam != BTREE_AM_OID)
		return false;
	buf = ReadBuffer(index, BTREE_METAPAGE);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	metad = BTPageGetMeta(page);
	empty = !PageIsNew(page) && metad->btm_magic == BTREE_MAGIC &&
		metad->btm_root == P_NONE;
	UnlockReleaseBuffer(buf);
	return empty;
}

/*
 * orderexp_timer_fetch
 *		The order's timer row as the current statement sees it, or NULL if
 *		it has none: one probe of the primary key, through the relations the
 *		inserter keeps open for the transaction.  The row is in a slot of
 *		the inserter's, valid until the next probe or the end of the
 *		transaction.
 *
 * The statement's snapshot is enough: whoever writes a timer row holds the
 * order's row (see _lock_order), which the caller holds too, and a
 * transaction that writes the rows of a whole table (_materialize_plain)
 * has it locked against our insert or update.  A row that a sweep deletes
 * right now is still seen, and the caller takes the upsert, which waits.
 * (A deleted order's row was locked by another writer until just now:
 * orderexp_delete_trigger probes under a fresh snapshot of its own.)
 *
 * The outcome trigger reads the timer of a paid order here too: the
 * relations stay open and locked until the transaction ends, as the
 * executor keeps the relations of a statement, rather than being opened
 * and closed (a lock taken and released each) for every payment.
 */
TupleTableSlot *
orderexp_timer_fetch(Oid order_table, const char *key)
{
	const OrderexpCatalog *cat = orderexp_catalog();
	TimerInserter *ti = inserter_open_key(cat);
	IndexScanDesc scan;
	ScanKeyData skey[2];
	bool		found = false;

	if (btree_is_empty(ti->pkey))
		return NULL;
	ti = inserter_open(cat);
	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(order_table));
	ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(key));
	skey[1].sk_collation = C_COLLATION_OID;
	scan = index_beginscan(ti->timers, ti->pkey, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, skey, 2, NULL, 0);

	/*
	 * index_getnext_slot()'s loop, with the slot made only for an index
	 * entry found (inserter_probe_slot)
	 */
	for (;;)
	{
		if (!scan->xs_heap_continue &&
			index_getnext_tid(scan, ForwardScanDirection) == NULL)
			break;
		if (index_fetch_heap(scan, inserter_probe_slot(ti)))
		{
			found = true;
			break;
		}
	}
	index_endscan(scan);
	/* the slot keeps its own pin of the row's buffer until it is cleared */
	return found ? ti->probe_slot : NULL;
}

/* has the order a timer row, as the current statement sees it? */
static bool
timer_exists(Oid order_table, const char *key)
{
	TupleTableSlot *slot = orderexp_timer_fetch(order_table, key);

	if (slot == NULL)
		return false;
	ExecClearTuple(slot);
	return true;
}

/* the category's own policy, else the table's default, else NULL */
static CachedPolicy *
choose_policy(TablePolicies *tp, const char *category)
{
	CachedPolicy *fallback = NULL;
	int			i;

	for (i = 0; i < tp->npolicies; i++)
	{
		CachedPolicy *cp = &tp->policies[i];

		if (cp->category == NULL)
			fallback = cp;
		else if (category != NULL && strcmp(cp->category, category) == 0)
			return cp;
	}
	return fallback;
}

/*
 * orderexp_plain_deadline
 *		For the outcome trigger, about an order that has no timer row and
 *		was created at "created": in a table with plain deadlines, such an
 *		order has one, whenever it was created (an order older than plain
 *		deadlines has a timer row unless it was inserted since).  If so,
 *		returns true with the policy, its version and the deadline.
 */
bool
orderexp_plain_deadline(Oid order_table, TimestampTz created, int32 *policy_id,
						int32 *policy_version, TimestampTz *close_at)
{
	CachedPolicy *policy;
	RunAs		runas;
	bool		plain = false;

	/* every name in the statement that fills the cache is qualified */
	orderexp_run_as_begin(&runas, orderexp_owner(), SECURITY_LOCAL_USERID_CHANGE, false);
	policy = choose_policy(table_policies(order_table), NULL);
	if (policy != NULL && policy->plain)
	{
		*policy_id = policy->id;
		*policy_version = policy->version;
		*close_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															TimestampTzGetDatum(created),
															IntervalPGetDatum(&policy->close_after)));
		plain = true;
	}
	orderexp_run_as_end(&runas);
	return plain;
}

/*
 * orderexp._policies_changed()
 *		Statement trigger on orderexp.policies (policies_changed) and, from
 *		1.3 on, orderexp.tables (tables_changed): tell every backend to drop
 *		its cache of the table's rows when this transaction commits (the
 *		policies here, the registrations in catalog.c).
 */
Datum
orderexp_policies_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp._policies_changed() was not called by the trigger manager")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/*
 * orderexp_timer_trigger
 *		AFTER ROW trigger: insert or refresh the timer of an unpaid order.
 *
 * AFTER INSERT on every registered table but one with plain deadlines on a
 * created-at that is NOT NULL (orderexp_delete_trigger); also AFTER UPDATE
 * OF the status (1.1 and 1.2, orderexp_timer_unpaid: from 1.3 on the
 * status trigger, outcome.c, does that part) and of the created-at
 * (orderexp_timer_moved, partitioned tables).
 *
 * 1.3's triggers take no arguments: the columns and the unpaid value are
 * the registration's (orderexp_registration, catalog.c).  1.1's took the
 * key, created-at and category column names and the table's OID (four) and
 * fired through a WHEN clause; 1.2's added the status column and the
 * unpaid value (six).
 */
Datum
orderexp_timer_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	const char *key_column;
	const char *created_column;
	const char *category_column;
	const char *status_column = NULL;
	const char *unpaid_value = NULL;

	/* 1.1 (with a WHEN clause), 1.2 (the status to test), 1.3 (none) */
	static const int layouts[] = {4, 6, 0};

	orderexp_check_trigger_call(fcinfo, "timer_trigger", false, layouts, lengthof(layouts));
	trigger = trigdata->tg_trigger;

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	if (trigger->tgnargs == 0)
	{
		const OrderexpRegistration *reg =
			orderexp_registration(orderexp_trigger_table(rel, trigger));

		key_column = reg->key_column;
		created_column = reg->created_column;
		category_column = reg->category_column;
		/* on UPDATE, orderexp_timer_moved: its WHEN clause tests the status */
		if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		{
			status_column = reg->status_column;
			unpaid_value = reg->unpaid_value;
		}
	}
	else
	{
		key_column = trigger->tgargs[0];
		created_column = trigger->tgargs[1];
		category_column = trigger->tgargs[2];
		if (trigger->tgnargs == 6)
		{
			status_column = trigger->tgargs[4];
			unpaid_value = trigger->tgargs[5];
		}
	}

	/*
	 * Knowing the status column and the unpaid value (from 1.2 on), the
	 * trigger has no WHEN clause and tests the status here: a row that is
	 * not unpaid, or an update of a row that was unpaid already (1.2's
	 * orderexp_timer_unpaid), has nothing to do.  (A WHEN clause is parsed
	 * anew for every statement; on a single-row INSERT that cost more than
	 * the timer.)  1.1's triggers, and orderexp_timer_moved, which fires
	 * only when created-at changes, fire through their WHEN clause.
	 */
	if (status_column != NULL)
	{
		int			status_att = orderexp_mapped_column(rel, status_column, "status");
		Oid			status_type = SPI_gettypeid(tupdesc, status_att);

		if (!orderexp_status_equals(orderexp_column_text(tuple, tupdesc, status_att),
									status_type, unpaid_value))
			return PointerGetDatum(NULL);
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
			orderexp_status_equals(orderexp_column_text(trigdata->tg_trigtuple, tupdesc, status_att),
								   status_type, unpaid_value))
			return PointerGetDatum(NULL);
	}

	orderexp_track_order(rel, trigger, tuple, key_column, created_column, category_column);
	return PointerGetDatum(NULL);
}

/*
 * orderexp_delete_trigger
 *		AFTER DELETE row trigger of a table with plain deadlines and no
 *		trigger on INSERT: a deleted order's timer row goes, unless another
 *		row of the table still has its key.
 *
 * An order paid while it had a deadline of its own keeps its timer row
 * until the sweep drops it at that deadline.  Were its row deleted and a new
 * order made under its key, the new order would inherit the old deadline:
 * on a table with the INSERT trigger, the new order's insert refreshes the
 * row; here the delete drops it.  The trigger looks first: a row a
 * cross-partition UPDATE moves is deleted from one partition and inserted
 * into another, and the moved order keeps its deadline; a table with
 * inheritance children may hold a key twice.  The look
 * (orderexp._order_key_exists) reads the table as its owner,
 * security-restricted, as the sweep does.  A deleted order without a timer
 * row, the common case, costs one probe of orderexp.timers' key.
 *
 * The probe and the delete see the latest committed rows, not the
 * statement's snapshot: whoever writes a timer row holds the order's row
 * (_lock_order), and the delete holds it now, but an extension may have
 * written a row and committed between the snapshot and the lock, which the
 * snapshot would miss (as ri_triggers.c checks a foreign key against the
 * latest rows, with SPI_execute_snapshot).  Under REPEATABLE READ a timer
 * row a sweep deletes at the same moment makes the delete fail with a
 * serialization error, as any concurrent delete would.
 *
 * The trigger has no arguments.  PostgreSQL copies a table's triggers with
 * their arguments for every statement on it (CopyTriggerDesc, from
 * InitResultRelInfo), the application's INSERTs and payments included, at
 * some 230 instructions an argument: a trigger on DELETE with the key
 * column and the table's OID as arguments cost the insert-and-pay
 * transaction 930 instructions, without a row ever deleted (bench/
 * instructions.md).  The key column is the registration's
 * (orderexp_registration, catalog.c), as for every row trigger of 1.3.
 */
Datum
orderexp_delete_trigger(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr exists_plan = NULL;
	static SPIPlanPtr delete_plan = NULL;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	Oid			order_table;
	char	   *key;
	bool		has_timer;
	RunAs		runas;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.delete_trigger() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.delete_trigger() must be fired AFTER DELETE FOR EACH ROW")));
	if (trigdata->tg_trigger->tgnargs != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.delete_trigger() takes no arguments, got %d",
						trigdata->tg_trigger->tgnargs),
				 errhint("Register the table again with orderexp.set_close_policy().")));

	rel = trigdata->tg_relation;
	order_table = orderexp_trigger_table(rel, trigdata->tg_trigger);
	key = orderexp_column_text(trigdata->tg_trigtuple, RelationGetDescr(rel),
							   orderexp_mapped_column(rel,
													  orderexp_registration(order_table)->key_column,
													  "key"));
	if (key == NULL)
		return PointerGetDatum(NULL);

	/* every name in the statements below is qualified: no search_path */
	orderexp_run_as_begin(&runas, orderexp_owner(), SECURITY_LOCAL_USERID_CHANGE, false);
	PushActiveSnapshot(GetLatestSnapshot());
	has_timer = timer_exists(order_table, key);
	PopActiveSnapshot();
	if (has_timer)
	{
		Oid			argtypes[2] = {REGCLASSOID, TEXTOID};
		Datum		values[2];
		bool		isnull;
		int			ret;

		if ((ret = SPI_connect()) != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
		values[0] = ObjectIdGetDatum(order_table);
		values[1] = CStringGetTextDatum(key);

		orderexp_keep_plan(&exists_plan, "SELECT orderexp._order_key_exists($1, $2)",
						   2, argtypes, CURSOR_OPT_GENERIC_PLAN);
		ret = SPI_execute_plan(exists_plan, values, NULL, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "looking up the key of a deleted order failed: %s",
				 SPI_result_code_string(ret));
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										&isnull)) || isnull)
		{
			orderexp_keep_plan(&delete_plan,
							   "DELETE FROM orderexp.timers t "
							   " WHERE t.order_table OPERATOR(pg_catalog.=) $1 "
							   "   AND t.order_key OPERATOR(pg_catalog.=) $2",
							   2, argtypes, CURSOR_OPT_GENERIC_PLAN);
			ret = SPI_execute_snapshot(delete_plan, values, NULL, GetLatestSnapshot(),
									   InvalidSnapshot, false, true, 0);
			if (ret != SPI_OK_DELETE)
				elog(ERROR, "dropping the timer of a deleted order failed: %s",
					 SPI_result_code_string(ret));
		}
		SPI_finish();
	}
	orderexp_run_as_end(&runas);
	return PointerGetDatum(NULL);
}

/*
 * orderexp_track_order
 *		Start (or restart) the timer of an unpaid row of a registered table,
 *		for a row trigger: its key, created-at and category (the last may be
 *		"") are read from the columns named.  The policy is the category's
 *		own, else the table's default; a row without a key, or without a
 *		policy that applies, is not tracked.
 */
void
orderexp_track_order(Relation rel, Trigger *trigger, HeapTuple tuple,
					 const char *key_column, const char *created_column,
					 const char *category_column)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Oid			order_table;
	int			key_att;
	int			created_att;
	char	   *key;
	char	   *category = NULL;
	bool		created_null;
	Datum		created;
	TimestampTz base;
	TimestampTz close_at;
	TablePolicies *tp;
	CachedPolicy *policy;
	Interval   *close_after;
	int			variant = 0;
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	RunAs		runas;
	int			ret;

	order_table = orderexp_trigger_table(rel, trigger);

	key_att = orderexp_mapped_column(rel, key_column, "key");
	created_att = orderexp_mapped_column(rel, created_column, "created-at");

	key = orderexp_column_text(tuple, tupdesc, key_att);
	if (key == NULL)
		return;					/* no key, nothing to track */

	/* the deadline counts from created-at, or from now if there is none */
	created = SPI_getbinval(tuple, tupdesc, created_att, &created_null);
	if (created_null)
		base = GetCurrentTransactionStartTimestamp();
	else if (SPI_gettypeid(tupdesc, created_att) == TIMESTAMPOID)
		base = DatumGetTimestampTz(DirectFunctionCall1(timestamp_timestamptz, created));
	else if (SPI_gettypeid(tupdesc, created_att) == TIMESTAMPTZOID)
		base = DatumGetTimestampTz(created);
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("created-at column \"%s\" of table \"%s\" is not a timestamp",
						created_column, RelationGetRelationName(rel)),
				 errhint("Register the table again with orderexp.set_close_policy().")));

	if (category_column[0] != '\0')
		category = orderexp_column_text(tuple, tupdesc,
										orderexp_mapped_column(rel, category_column, "category"));

	/* every name in the statements below is qualified: no search_path */
	orderexp_run_as_begin(&runas, orderexp_owner(), SECURITY_LOCAL_USERID_CHANGE, false);

	tp = table_policies(order_table);
	policy = choose_policy(tp, category);
	if (policy == NULL)
	{
		/* a category without a policy of its own on a table without default */
		orderexp_run_as_end(&runas);
		return;
	}

	/*
	 * A plain deadline (set_plain_deadlines): an unpaid order with a
	 * created-at and without a timer row is due at its created-at plus
	 * close_after, which the sweep finds in the orders table itself, so it
	 * gets no timer row, unless its key has one already (a lingering timer
	 * of an order of the same key, or of this order before it was paid:
	 * the upsert below refreshes it).  _check_plain() sees to it that such
	 * a policy is the table's only one, without reminders or experiment.
	 */
	if (policy->plain && !created_null &&
		policy->category == NULL && policy->nvariants == 0 && !policy->has_remind &&
		!timer_exists(order_table, key))
	{
		orderexp_run_as_end(&runas);
		return;
	}

	/* in an experiment, the order's variant says how long it has */
	close_after = &policy->close_after;
	if (policy->nvariants > 0)
	{
		variant = orderexp_pick_variant(key, strlen(key), policy->weights,
										policy->nvariants, policy->experiment_id);
		close_after = &policy->variants[variant - 1];
	}
	close_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(base),
													   IntervalPGetDatum(close_after)));
	values[0] = ObjectIdGetDatum(order_table);
	values[1] = CStringGetTextDatum(key);
	values[2] = Int32GetDatum(policy->id);
	values[3] = TimestampTzGetDatum(close_at);
	if (policy->has_remind)
		values[4] = DirectFunctionCall2(timestamptz_mi_interval,
										TimestampTzGetDatum(close_at),
										IntervalPGetDatum(&policy->remind_before));
	else
		nulls[4] = 'n';
	values[5] = Int32GetDatum(policy->version);
	values[6] = Int32GetDatum(variant);
	if (variant == 0)
		nulls[6] = 'n';
	/*
	 * created-at as stored, so that lookups can find the order's partition
	 * by it: a timestamp (without time zone) keeps its bits, read back as
	 * UTC, so no session time zone enters the round trip
	 */
	values[7] = created;
	if (created_null)
		nulls[7] = 'n';

	/* an order without a timer: straight into the table */
	if (plans_for_1_1)
	{
		Datum		dvalues[TC_NCOLUMNS];
		bool		dnulls[TC_NCOLUMNS];

		memset(dnulls, false, sizeof(dnulls));
		dvalues[TC_ORDER_TABLE] = values[0];
		dvalues[TC_ORDER_KEY] = values[1];
		dvalues[TC_POLICY_ID] = values[2];
		dvalues[TC_CLOSE_AT] = values[3];
		dvalues[TC_REMIND_AT] = values[4];
		dnulls[TC_REMIND_AT] = (nulls[4] == 'n');
		dvalues[TC_POLICY_VERSION] = values[5];
		dvalues[TC_VARIANT] = values[6];
		dnulls[TC_VARIANT] = (nulls[6] == 'n');
		dvalues[TC_ORDER_CREATED] = values[7];
		dnulls[TC_ORDER_CREATED] = (nulls[7] == 'n');
		if (insert_timer_direct(dvalues, dnulls))
		{
			orderexp_run_as_end(&runas);
			return;
		}
	}

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));

	if (timer_insert_plan == NULL)
	{
		Oid			argtypes[8] = {REGCLASSOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, INT4OID, INT4OID, TIMESTAMPTZOID};

		if (plans_for_1_1)
			orderexp_keep_plan(&timer_insert_plan, timer_insert_sql, 8, argtypes,
							   CURSOR_OPT_GENERIC_PLAN);
		else
			orderexp_keep_plan(&timer_insert_plan, timer_insert_sql_1_0, 5, argtypes,
							   CURSOR_OPT_GENERIC_PLAN);
	}

	ret = SPI_execute_plan(timer_insert_plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "inserting the order timer failed: %s", SPI_result_code_string(ret));

	SPI_finish();
	orderexp_run_as_end(&runas);
}
