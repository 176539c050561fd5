/*-------------------------------------------------------------------------
 *
 * batch.c
 *		One batch of one registered table: the statements its registration
 *		gives, kept prepared, and run as the roles they belong to.
 *
 * A round of the sweep (sweep.c) gives each table with due work a reminder
 * batch and a close batch.  From 1.3 on a batch is three statements
 * (sql/orderexp--1.2--1.3.sql): take (as the extension owner), orders (as
 * the table's owner, under SECURITY_RESTRICTED_OPERATION) and record (as
 * the extension owner); a database not yet updated runs the one statement
 * of 1.2 and before.  The statements are read from the table's
 * registration once per sweep, prepared once (generic plans) and kept
 * while their text stays the same; each remembers where its sweep has got
 * to, so that the next batch starts after the last timer of the previous
 * one.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "orderexp.h"
#include "batch.h"
#include "catalog.h"
#include "runas.h"
#include "spiplan.h"

PG_FUNCTION_INFO_V1(orderexp_plain_lock);
PG_FUNCTION_INFO_V1(orderexp_tid_holds_key);


/*
 * The table whose close batch is running right now, or InvalidOid.  The
 * batch statement writes the outcome rows of the orders it closes itself,
 * set-based; the outcome trigger (outcome.c) leaves those rows alone.
 */
Oid			orderexp_sweep_closing = InvalidOid;

/*
 * The text of that batch's orders statement while it runs, as its kept plan
 * holds it: SPI hands that very string to the executor as the query's
 * source text, so closing_executor_start knows the statement by the
 * pointer, and no other (none that a user's trigger runs within it).
 */
static const char *closing_statement = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;
static bool executor_hook_installed = false;

static SPIPlanPtr batch_sql_plans[2][2];	/* [closes][split] */

/*
 * The statements of a table's batches, as its registration gives them
 * today: [closes][split], split for 1.3 on (three statements as text[]).
 */
static const char *const batch_sql_sql[2][2] = {
	{"SELECT orderexp._remind_sql(t) FROM orderexp.tables t WHERE t.order_table = $1",
	"SELECT orderexp._remind_batch_sql(t) FROM orderexp.tables t WHERE t.order_table = $1"},
	{"SELECT orderexp._sweep_sql(t) FROM orderexp.tables t WHERE t.order_table = $1",
	"SELECT orderexp._close_batch_sql(t) FROM orderexp.tables t WHERE t.order_table = $1"}
};

/*
 * Parameter types of the statements that every kind of batch shares: the
 * orders statement ($1 keys, $2 and $3 the created-at range) and the record
 * statement (see run_record_statement)
 */
static Oid	orders_types[3] = {TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
static Oid	record_types[9] = {REGCLASSOID, TIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
BOOLARRAYOID, JSONBARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID};

static void forget_statements(BatchPlan *bp);
static void prepare_batch(BatchPlan *bp, bool split, Datum statements, const char *sql);
static HeapTuple run_batch_statement(SPIPlanPtr plan, Datum *values,
									 const char *nulls, Oid closing,
									 TupleDesc *desc);
static void closing_executor_start(QueryDesc *queryDesc, int eflags);
static bool is_status_trigger(Trigger *tg);

/* free a batch's kept plans and the text they were made from */
static void
forget_statements(BatchPlan *bp)
{
	int			i;

	for (i = 0; i < BATCH_MAX_PLANS; i++)
		orderexp_forget_plan(&bp->plans[i]);
	bp->nplans = 0;
	if (bp->sql)
	{
		pfree(bp->sql);
		bp->sql = NULL;
	}
}

/*
 * Make the kept plans of a batch from the text its registration gives: one
 * statement (a database before 1.3), or the array of the three.
 */
static void
prepare_batch(BatchPlan *bp, bool split, Datum statements, const char *sql)
{
	/* the take statement's parameters; see sql/orderexp--1.2--1.3.sql */
	static Oid	take_types[4] = {REGCLASSOID, INT4OID, TIMESTAMPTZOID, TEXTOID};
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;

	forget_statements(bp);

	/* the same statements every batch: plan them once, generically */
	if (!split)
	{
		orderexp_keep_plan(&bp->plans[0], sql, 4, take_types, CURSOR_OPT_GENERIC_PLAN);
		bp->nplans = 1;
	}
	else
	{
		deconstruct_array(DatumGetArrayTypeP(statements), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elemnulls, &n);
		if (n != BATCH_SPLIT_PLANS || elemnulls[0] || elemnulls[1] || elemnulls[2])
			elog(ERROR, "a batch has %d statements, expected %d", n, BATCH_SPLIT_PLANS);
		orderexp_keep_plan(&bp->plans[BATCH_TAKE], TextDatumGetCString(elems[0]),
						   4, take_types, CURSOR_OPT_GENERIC_PLAN);
		orderexp_keep_plan(&bp->plans[BATCH_ORDERS], TextDatumGetCString(elems[1]),
						   3, orders_types, CURSOR_OPT_GENERIC_PLAN);
		orderexp_keep_plan(&bp->plans[BATCH_RECORD], TextDatumGetCString(elems[2]),
						   lengthof(record_types), record_types, CURSOR_OPT_GENERIC_PLAN);
		bp->nplans = BATCH_SPLIT_PLANS;
	}
	bp->sql = MemoryContextStrdup(TopMemoryContext, sql);
}

/*
 * The statements a table's registration gives for a kind of batch: the
 * generator query "sql" (kept in *slot) run for the table.  Returns their
 * text, and sets *statements to the value (text, or text[] of several); NULL
 * if the table is no longer registered or gives no such batch.
 */
static char *
registration_statements(SPIPlanPtr *slot, const char *sql, Oid relid, Datum *statements)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1];
	bool		isnull;
	int			ret;

	values[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_plan(orderexp_keep_plan(slot, sql, 1, argtypes, 0),
						   values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the registration failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return NULL;
	*statements = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Is tg orderexp's status trigger (orderexp_status, or orderexp_outcome of
 * 1.1 and 1.2): a row trigger after UPDATE that calls the extension's
 * outcome_trigger()?
 */
static bool
is_status_trigger(Trigger *tg)
{
	char	   *name;
	bool		match;

	if (!TRIGGER_FOR_ROW(tg->tgtype) || !TRIGGER_FOR_AFTER(tg->tgtype) ||
		!TRIGGER_FOR_UPDATE(tg->tgtype) || tg->tgenabled == TRIGGER_DISABLED ||
		get_func_namespace(tg->tgfoid) != orderexp_catalog()->namespace)
		return false;
	name = get_func_name(tg->tgfoid);
	match = name != NULL && strcmp(name, "outcome_trigger") == 0;
	if (name != NULL)
		pfree(name);
	return match;
}

/*
 * ExecutorStart hook.  In the sweep's own orders statement, orderexp's
 * status trigger is switched off in the statement's private copy of each
 * result relation's triggers (the executor copies a table's triggers when
 * it opens the table as a result relation, InitResultRelInfo; the table's
 * triggers themselves are not touched).  For a row the sweep closed the
 * trigger does nothing (the record statement counts the outcome, see
 * outcome.c), but its event would be queued and fired all the same, with
 * the row's old and new versions fetched for it: about 5,400 instructions
 * a close (bench/instructions.md).  When no other trigger after UPDATE for
 * each row is left enabled, the relation's flag says so too, which spares
 * the fetch of each row's old version for the event.
 *
 * Only where the table has no BEFORE UPDATE row trigger of its own: such a
 * trigger may set the status to another value than the sweep's, and the
 * status trigger must see that row.  Every other trigger of the table, its
 * foreign keys' too, fires as for any UPDATE by its owner.
 */
static void
closing_executor_start(QueryDesc *queryDesc, int eflags)
{
	ListCell   *lc;

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	if (closing_statement == NULL || queryDesc->sourceText != closing_statement)
		return;

	foreach(lc, queryDesc->estate->es_opened_result_relations)
	{
		ResultRelInfo *rri = (ResultRelInfo *) lfirst(lc);
		TriggerDesc *td = rri->ri_TrigDesc;
		bool		other_after_row = false;
		bool		switched = false;
		int			i;

		if (td == NULL || !td->trig_update_after_row || td->trig_update_before_row)
			continue;
		for (i = 0; i < td->numtriggers; i++)
		{
			Trigger    *tg = &td->triggers[i];

			if (is_status_trigger(tg))
			{
				tg->tgenabled = TRIGGER_DISABLED;
				switched = true;
			}
			else if (TRIGGER_FOR_ROW(tg->tgtype) && TRIGGER_FOR_AFTER(tg->tgtype) &&
					 TRIGGER_FOR_UPDATE(tg->tgtype) && tg->tgenabled != TRIGGER_DISABLED)
				other_after_row = true;
		}
		if (switched && !other_after_row)
			td->trig_update_after_row = false;
	}
}

/*
 * Run one kept statement of a batch that returns one row, planned ahead
 * (spiplan.c), as the current user.  While a close statement runs,
 * orderexp_sweep_closing names the table (see outcome.c), and the status
 * trigger is off in it (closing_executor_start).
 */
static HeapTuple
run_batch_statement(SPIPlanPtr plan, Datum *values, const char *nulls,
					Oid closing, TupleDesc *desc)
{
	volatile int ret;

	orderexp_plan_ahead(plan);
	if (OidIsValid(closing))
	{
		List	   *sources = SPI_plan_get_plan_sources(plan);

		if (!executor_hook_installed)
		{
			prev_executor_start = ExecutorStart_hook;
			ExecutorStart_hook = closing_executor_start;
			executor_hook_installed = true;
		}
		if (list_length(sources) == 1)
			closing_statement = ((CachedPlanSource *) linitial(sources))->query_string;
	}
	orderexp_sweep_closing = closing;
	PG_TRY();
	{
		ret = SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		orderexp_sweep_closing = InvalidOid;
		closing_statement = NULL;
	}
	PG_END_TRY();
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "running a batch failed: %s", SPI_result_code_string(ret));
	*desc = SPI_tuptable->tupdesc;
	return SPI_tuptable->vals[0];
}

/*
 * Run a batch's record statement: $1 and $2 are set by the caller, $3 on
 * are the orders statement's result (tup): the busy keys, then the rows'
 * arrays, of which the reminders of a table that picks the customer's
 * channels have a seventh ($9), which the others leave NULL.  Sets the
 * result's busy and done.
 */
static void
run_record_statement(SPIPlanPtr plan, HeapTuple tup, TupleDesc desc, Datum *values,
					 char *nulls, BatchResult *result)
{
	bool		isnull;
	int			i;

	for (i = 0; i < 7; i++)
	{
		if (i < desc->natts)
			values[i + 2] = SPI_getbinval(tup, desc, i + 1, &isnull);
		else
			isnull = true;
		nulls[i + 2] = isnull ? 'n' : ' ';
	}
	if (nulls[2] == ' ')
		result->busy = ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(values[2])),
									  ARR_DIMS(DatumGetArrayTypeP(values[2])));
	tup = run_batch_statement(plan, values, nulls, InvalidOid, &desc);
	result->done = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
}

/*
 * orderexp_run_batch
 *		Run one batch of one table: fetch the statements that the table's
 *		registration gives today, re-prepare if they changed, and execute
 *		them from the watermark of sweep "sweep_id" on (a new sweep starts
 *		from the earliest due timer).  Returns false if the table was
 *		unregistered since the caller looked.
 *
 * From 1.3 on, a batch is three statements (sql/orderexp--1.2--1.3.sql):
 * the take statement locks the due timers and returns their keys; the
 * orders statement locks, closes or reads the orders rows of those keys,
 * and it alone runs as the table's owner, under
 * SECURITY_RESTRICTED_OPERATION with search_path pinned, so that the
 * table's triggers, constraints, index expressions and casts run as they
 * would for the owner's own UPDATE, never with the extension owner's
 * rights (as vacuum.c does for the same reason); the record statement
 * writes orderexp's own tables from the orders statement's result.  All
 * three run in the caller's subtransaction (table_batches_guarded).
 */
bool
orderexp_run_batch(BatchPlan *bp, bool closes, Oid relid, int batch_limit,
				   uint64 sweep_id, BatchResult *result)
{
	const OrderexpCatalog *cat = orderexp_catalog();
	bool		split = cat->split_batches;
	Datum		values[9];		/* the record statement's parameters, the most */
	char		nulls[9];
	bool		isnull;
	Oid			closing;
	char	   *sql;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		last_at;
	int			i;

	/*
	 * The statement text follows the table's registration; it is read once
	 * per sweep (a policy change takes effect at the next one).
	 */
	values[0] = ObjectIdGetDatum(relid);
	if (bp->nplans > 0 && bp->sweep_id == sweep_id &&
		(bp->nplans == BATCH_SPLIT_PLANS) == split)
		sql = NULL;
	else
	{
		Datum		statements;

		sql = registration_statements(&batch_sql_plans[closes][split],
									  batch_sql_sql[closes][split], relid, &statements);
		if (sql == NULL)
			return false;
		if (bp->nplans == 0 || (bp->nplans == BATCH_SPLIT_PLANS) != split ||
			strcmp(bp->sql, sql) != 0)
		{
			prepare_batch(bp, split, statements, sql);

			/*
			 * The close statement of 1.2 on writes the outcome rows of its
			 * closes; 1.1's, in a database not yet updated, leaves them to
			 * the outcome trigger.
			 */
			bp->writes_outcomes = closes && cat->sweep_writes_outcomes;
		}
	}

	if (bp->sweep_id != sweep_id)
	{
		bp->sweep_id = sweep_id;
		bp->last_at = DT_NOBEGIN;
		if (bp->last_key)
			pfree(bp->last_key);
		bp->last_key = MemoryContextStrdup(TopMemoryContext, "");
	}
	memset(nulls, ' ', sizeof(nulls));
	values[1] = Int32GetDatum(batch_limit);
	values[2] = TimestampTzGetDatum(bp->last_at);
	values[3] = CStringGetTextDatum(bp->last_key);
	closing = bp->writes_outcomes ? relid : InvalidOid;

	tup = run_batch_statement(bp->plans[0], values, nulls,
							  bp->nplans == 1 ? closing : InvalidOid, &desc);
	result->taken = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	if (bp->nplans == 1)
	{
		/* before 1.3: (taken, busy, done, last_at, last_key) */
		result->busy = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		result->done = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		i = 4;
	}
	else
	{
		/* take: (taken, keys, tids, created min, created max, last_at, last_key) */
		result->busy = 0;
		result->done = 0;
		i = 6;
	}
	last_at = SPI_getbinval(tup, desc, i, &isnull);
	if (!isnull)
	{
		char	   *last_key = SPI_getvalue(tup, desc, i + 1);

		bp->last_at = DatumGetTimestampTz(last_at);
		pfree(bp->last_key);
		bp->last_key = MemoryContextStrdup(TopMemoryContext, last_key);
	}
	if (bp->nplans == 1 || result->taken == 0)
		return true;

	/* orders: ($1 keys, $2 created min, $3 created max), as the owner */
	{
		Datum		ovalues[3];
		char		onulls[3] = {' ', ' ', ' '};
		Datum		tids;
		RunAs		runas;

		for (i = 0; i < 3; i++)
		{
			/* keys, then (after the tids) the created-at range */
			ovalues[i] = SPI_getbinval(tup, desc, i == 0 ? 2 : i + 3, &isnull);
			if (isnull)
				onulls[i] = 'n';
		}
		tids = SPI_getbinval(tup, desc, 3, &isnull);
		orderexp_run_as_begin(&runas, orderexp_table_owner(relid), SECURITY_RESTRICTED_OPERATION, true);
		tup = run_batch_statement(bp->plans[BATCH_ORDERS], ovalues, onulls, closing, &desc);
		orderexp_run_as_end(&runas);

		/*
		 * record: ($1 table, $2 tids taken, $3 busy, $4... the rows).  The
		 * orders statement of reminders that pick the customer's channels
		 * returns a seventh array ($9); the others leave it NULL.
		 */
		values[1] = tids;
		nulls[1] = ' ';
		run_record_statement(bp->plans[BATCH_RECORD], tup, desc, values, nulls, result);
	}
	return true;
}

/*
 * The plain lock of a table, a transaction-level advisory lock on ("oexp",
 * the table's OID) in this database (the worker's own lock is ("oexp", 1),
 * and no table has OID 1).  It orders the plain close batch against
 * whoever writes the timer row of an order with a plain deadline:
 *
 *   the plain batch            ExclusiveLock, conditionally: skipped when
 *                              anyone holds the lock;
 *   one order's row written    ShareLock (_lock_order), with the order's
 *                              row locked: waits for a batch in progress;
 *   all plain orders' rows     ExclusiveLock (_materialize_plain).
 *
 * A writer locks the order's row before the plain lock.  So a timer row
 * is either committed before the batch takes the lock, and the batch's
 * "own" statement, whose snapshot is taken after that, sees it; or its
 * writer holds the order's row while the batch runs, and the batch, which
 * locks the rows SKIP LOCKED, leaves the order as busy; or its writer
 * locks the row only after the batch has closed the order, and refuses.
 * The batch never waits.
 */
static bool
plain_lock(Oid relid, LOCKMODE mode, bool dont_wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ORDEREXP_LOCK_KEY1, relid, 2);
	return LockAcquire(&tag, mode, false, dont_wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * orderexp._plain_lock(orders regclass, exclusive boolean) returns void
 *		Take the plain lock of a table for the rest of the transaction:
 *		shared to write one order's timer row, exclusive to write all of
 *		them.
 */
Datum
orderexp_plain_lock(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("orderexp._plain_lock() needs a table and a lock mode")));
	(void) plain_lock(PG_GETARG_OID(0), PG_GETARG_BOOL(1) ? ExclusiveLock : ShareLock, false);
	PG_RETURN_VOID();
}

/*
 * The pairs of tuple id and key a plain batch's take read ($2 and $1 of its
 * orders statement), sorted by tuple id, for one execution of the
 * statement: built at the first row, kept in the expression's FmgrInfo.
 */
typedef struct TidKey
{
	ItemPointerData tid;
	text	   *key;
} TidKey;

typedef struct TidKeys
{
	Datum		tids_arg;		/* the arrays they were made from */
	Datum		keys_arg;
	int			n;
	TidKey	   *pairs;
} TidKeys;

/* qsort comparator of pairs: by tuple id */
static int
tid_key_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) &((const TidKey *) a)->tid,
							  (ItemPointer) &((const TidKey *) b)->tid);
}

/*
 * Sort the pairs, in the memory of the expression's FmgrInfo, where a
 * detoasted or flattened copy of the arrays, whose keys the pairs point
 * into, lives as long as they do.
 */
static TidKeys *
tid_keys_build(FunctionCallInfo fcinfo)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	ArrayType  *tids = PG_GETARG_ARRAYTYPE_P(2);
	ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(3);
	TidKeys    *tk = palloc0(sizeof(TidKeys));
	Datum	   *tidv;
	Datum	   *keyv;
	bool	   *tidnull;
	bool	   *keynull;
	int			ntids;
	int			nkeys;
	int			i;

	if (ARR_ELEMTYPE(tids) != TIDOID || ARR_ELEMTYPE(keys) != TEXTOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("orderexp._tid_holds_key() needs a tid[] and a text[]")));
	deconstruct_array(tids, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT,
					  &tidv, &tidnull, &ntids);
	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &keyv, &keynull, &nkeys);
	if (ntids != nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("orderexp._tid_holds_key() needs as many keys as tuple ids"),
				 errdetail("There are %d tuple ids and %d keys.", ntids, nkeys)));
	tk->pairs = palloc(sizeof(TidKey) * Max(ntids, 1));
	for (i = 0; i < ntids; i++)
	{
		if (tidnull[i] || keynull[i])
			continue;
		tk->pairs[tk->n].tid = *(ItemPointer) DatumGetPointer(tidv[i]);
		tk->pairs[tk->n].key = DatumGetTextPP(keyv[i]);
		tk->n++;
	}
	qsort(tk->pairs, tk->n, sizeof(TidKey), tid_key_cmp);
	tk->tids_arg = PG_GETARG_DATUM(2);
	tk->keys_arg = PG_GETARG_DATUM(3);
	MemoryContextSwitchTo(oldcxt);
	return tk;
}

/*
 * orderexp._tid_holds_key(t tid, k text, tids tid[], keys text[]) returns
 * boolean
 *
 * Is (t, k) one of the pairs (tids[i], keys[i])?  The plain orders
 * statement checks each row it locks by tuple id with it: the row at a
 * tuple id the take read must still have the key the take read there (a
 * tuple id names a place; the row may have gone since, and another taken
 * its place), and a row updated since has another tuple id (see
 * _plain_orders_sql).  The pairs are sorted once an execution; each row
 * then costs a binary search and a comparison of the key's bytes (the
 * "C" collation's equality).  It replaces a hashed subplan over the
 * unnested arrays, whose table of a thousand pairs and whose lookups cost
 * about 2,500 instructions a close more (bench/instructions.md).
 */
Datum
orderexp_tid_holds_key(PG_FUNCTION_ARGS)
{
	TidKeys    *tk = (TidKeys *) fcinfo->flinfo->fn_extra;
	ItemPointer t = (ItemPointer) PG_GETARG_POINTER(0);
	text	   *k = PG_GETARG_TEXT_PP(1);
	int			lo;
	int			hi;

	if (tk == NULL || tk->tids_arg != PG_GETARG_DATUM(2) || tk->keys_arg != PG_GETARG_DATUM(3))
		fcinfo->flinfo->fn_extra = tk = tid_keys_build(fcinfo);

	/* the first pair whose tuple id is not below t */
	lo = 0;
	hi = tk->n;
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (ItemPointerCompare(&tk->pairs[mid].tid, t) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < tk->n && ItemPointerEquals(&tk->pairs[lo].tid, t); lo++)
	{
		text	   *key = tk->pairs[lo].key;

		if (VARSIZE_ANY_EXHDR(key) == VARSIZE_ANY_EXHDR(k) &&
			memcmp(VARDATA_ANY(key), VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k)) == 0)
			PG_RETURN_BOOL(true);
	}
	PG_RETURN_BOOL(false);
}

/*
 * The five kept statements of a plain close batch, from the text[] that
 * _plain_batch_sql() gives.
 */
static void
prepare_plain(BatchPlan *bp, Datum statements, const char *sql)
{
	/* the parameters of its own statements; see _plain_batch_sql() */
	static Oid	take_types[3] = {INT4OID, TEXTOID, TEXTOID};
	static Oid	keys_types[2] = {TEXTARRAYOID, TIDARRAYOID};
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;
	int			i;

	forget_statements(bp);
	deconstruct_array(DatumGetArrayTypeP(statements), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elemnulls, &n);
	if (n != BATCH_MAX_PLANS)
		elog(ERROR, "a plain batch has %d statements, expected %d", n, BATCH_MAX_PLANS);
	for (i = 0; i < n; i++)
		if (elemnulls[i])
			elog(ERROR, "statement %d of a plain batch is null", i + 1);
	orderexp_keep_plan(&bp->plans[PLAIN_TAKE], TextDatumGetCString(elems[PLAIN_TAKE]),
					   lengthof(take_types), take_types, CURSOR_OPT_GENERIC_PLAN);
	orderexp_keep_plan(&bp->plans[PLAIN_NEXT], TextDatumGetCString(elems[PLAIN_NEXT]),
					   0, NULL, CURSOR_OPT_GENERIC_PLAN);
	orderexp_keep_plan(&bp->plans[PLAIN_OWN], TextDatumGetCString(elems[PLAIN_OWN]),
					   lengthof(keys_types), keys_types, CURSOR_OPT_GENERIC_PLAN);
	orderexp_keep_plan(&bp->plans[PLAIN_ORDERS], TextDatumGetCString(elems[PLAIN_ORDERS]),
					   lengthof(keys_types), keys_types, CURSOR_OPT_GENERIC_PLAN);
	orderexp_keep_plan(&bp->plans[PLAIN_RECORD], TextDatumGetCString(elems[PLAIN_RECORD]),
					   lengthof(record_types), record_types, CURSOR_OPT_GENERIC_PLAN);
	bp->nplans = BATCH_MAX_PLANS;
	bp->sql = MemoryContextStrdup(TopMemoryContext, sql);
}

/* replace a watermark string kept in TopMemoryContext */
static void
keep_string(char **field, const char *value)
{
	if (*field)
		pfree(*field);
	*field = MemoryContextStrdup(TopMemoryContext, value);
}

/*
 * orderexp_run_plain_batch
 *		Run one plain close batch of a table: due orders that have no timer
 *		row, found through the orders table's partial index on created-at
 *		(sql: _plain_batch_sql()).  Returns false if the table has no plain
 *		deadlines (any more).  *next_at is set to the next plain deadline
 *		after now, or 0 if there is none.  The statements are made anew
 *		when "stamp" (see sweep.c's overview) differs from the one they
 *		were made for; a NULL stamp (a round that goes on with a table)
 *		keeps them.
 *
 * With the table's plain lock (exclusive, see plain_lock; if someone holds
 * it, the batch is not run and result->blocked says so), five statements,
 * in the caller's subtransaction:
 *   take    as the table's owner, under SECURITY_RESTRICTED_OPERATION: the
 *           due unpaid orders after the sweep's watermark (created-at and
 *           key of the last order of its previous batch), through the
 *           partial index, without locking them, as rows of key,
 *           created-at and tuple id (NULL for a row of a partition or
 *           child table): a plain Limit over an index scan, so that an
 *           idle tick costs little;
 *   next    (when the take did not fill the batch) as the table's owner:
 *           the next plain deadline, for the worker's sleep;
 *   own     as the extension owner: those of them without a timer row
 *           (their keys and tuple ids, still aligned).  An
 *           order given a deadline of its own (an extension, say) has one,
 *           written before the lock was taken, and is left to the timers'
 *           batch; it is never locked here;
 *   orders  as the table's owner: locks the rows, by tuple id where the take
 *           gave one, SKIP LOCKED (the others are busy), and closes the
 *           unpaid ones;
 *   record  as the extension owner: events and counted outcomes.
 * While the orders statement runs, orderexp_sweep_closing names the table:
 * the record statement writes the outcomes (outcome.c).
 */
bool
orderexp_run_plain_batch(BatchPlan *bp, Oid relid, const char *stamp, int batch_limit,
						 uint64 sweep_id, BatchResult *result, TimestampTz *next_at)
{
	static SPIPlanPtr plain_sql_plan = NULL;
	Datum		values[9];
	char		nulls[9];
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;
	Datum		keys = (Datum) 0;
	Datum		tids = (Datum) 0;
	RunAs		runas;
	Oid			owner;
	int			ret;

	memset(result, 0, sizeof(*result));
	*next_at = 0;

	/* the statements follow the registration, whose stamp says when it changed */
	if (bp->nplans != BATCH_MAX_PLANS ||
		(stamp != NULL && (bp->stamp == NULL || strcmp(bp->stamp, stamp) != 0)))
	{
		Datum		statements;
		char	   *sql;

		sql = registration_statements(&plain_sql_plan,
									  "SELECT orderexp._plain_batch_sql(t) FROM orderexp.tables t WHERE t.order_table = $1",
									  relid, &statements);
		if (sql == NULL)
			return false;
		if (bp->nplans != BATCH_MAX_PLANS || strcmp(bp->sql, sql) != 0)
			prepare_plain(bp, statements, sql);
		if (stamp != NULL)
			keep_string(&bp->stamp, stamp);
	}
	if (bp->sweep_id != sweep_id || bp->last_key == NULL || bp->last_created == NULL)
	{
		bp->sweep_id = sweep_id;
		keep_string(&bp->last_created, "-infinity");
		keep_string(&bp->last_key, "");
	}
	owner = orderexp_table_owner(relid);
	if (!plain_lock(relid, ExclusiveLock, true))
	{
		result->blocked = true;
		return true;
	}

	/*
	 * take: ($1 limit, $2 created-at, $3 key, as text), as the owner: rows
	 * of (key as text, created-at, tuple id); the keys and tuple ids become
	 * the arrays the next statements take, the last row the watermark, its
	 * created-at turned into text here.  A batch that is not full asks for
	 * the next plain deadline too.
	 */
	values[0] = Int32GetDatum(batch_limit);
	values[1] = CStringGetTextDatum(bp->last_created);
	values[2] = CStringGetTextDatum(bp->last_key);
	orderexp_run_as_begin(&runas, owner, SECURITY_RESTRICTED_OPERATION, true);

	/*
	 * The take's order is the index's (created-at), then the key.  Where the
	 * planner expected few due rows (a table analyzed while small, or few
	 * unpaid orders among many), its generic plan sorted all the due rows
	 * for every batch, so that a backlog's batches read the rest of it
	 * again each time.  Without a full sort it takes the index's order and
	 * sorts only the rows of one created-at at a time (an incremental
	 * sort), reading what it takes.  Planned (plan_ahead, or a replan
	 * inside the execution) with this setting, which goes with the
	 * run-as's GUC level.
	 */
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	orderexp_plan_ahead(bp->plans[PLAIN_TAKE]);
	ret = SPI_execute_plan(bp->plans[PLAIN_TAKE], values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "taking due orders with plain deadlines failed: %s",
			 SPI_result_code_string(ret));
	result->taken = (int64) SPI_processed;
	if (SPI_processed > 0)
	{
		int			n = (int) SPI_processed;
		Datum	   *elems = palloc(sizeof(Datum) * n);
		Datum	   *tidelems = palloc(sizeof(Datum) * n);
		bool	   *tidnulls = palloc(sizeof(bool) * n);
		int			one = 1;
		int			i;

		for (i = 0; i < n; i++)
		{
			elems[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
			tidelems[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3,
										&tidnulls[i]);
		}
		keys = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
		tids = PointerGetDatum(construct_md_array(tidelems, tidnulls, 1, &n, &one, TIDOID,
												  sizeof(ItemPointerData), false,
												  TYPALIGN_SHORT));
		keep_string(&bp->last_key, SPI_getvalue(SPI_tuptable->vals[SPI_processed - 1],
												 SPI_tuptable->tupdesc, 1));
		keep_string(&bp->last_created, SPI_getvalue(SPI_tuptable->vals[SPI_processed - 1],
													 SPI_tuptable->tupdesc, 2));
	}
	if (result->taken < batch_limit)
	{
		orderexp_plan_ahead(bp->plans[PLAIN_NEXT]);
		ret = SPI_execute_plan(bp->plans[PLAIN_NEXT], NULL, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading the next plain deadline failed: %s",
				 SPI_result_code_string(ret));
		if (SPI_processed == 1)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
				*next_at = DatumGetTimestampTz(d);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	orderexp_run_as_end(&runas);
	if (result->taken == 0)
		return true;

	/* own: ($1 keys, $2 tuple ids) without a timer row, as the extension owner */
	values[0] = keys;
	values[1] = tids;
	tup = run_batch_statement(bp->plans[PLAIN_OWN], values, "  ", InvalidOid, &desc);
	keys = SPI_getbinval(tup, desc, 1, &isnull);
	tids = SPI_getbinval(tup, desc, 2, &isnull);
	if (ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(keys)),
					   ARR_DIMS(DatumGetArrayTypeP(keys))) == 0)
		return true;

	/* orders: ($1 keys, $2 tuple ids), as the owner */
	values[0] = keys;
	values[1] = tids;
	orderexp_run_as_begin(&runas, owner, SECURITY_RESTRICTED_OPERATION, true);
	tup = run_batch_statement(bp->plans[PLAIN_ORDERS], values, "  ", relid, &desc);
	orderexp_run_as_end(&runas);

	/* record: ($1 table, $2 no tids, $3 busy, $4... the rows) */
	memset(nulls, ' ', sizeof(nulls));
	values[0] = ObjectIdGetDatum(relid);
	nulls[1] = 'n';
	run_record_statement(bp->plans[PLAIN_RECORD], tup, desc, values, nulls, result);
	return true;
}

/*
 * Choose the index orderexp_plain_first_due reads, for the table's
 * registration as of "stamp" and its indexes "indexes": the one
 * _plain_index() finds (a b-tree whose first column is created-at, partial
 * on the unpaid status), and the default policy's close_after.
 */
static void
choose_probe_index(BatchPlan *bp, Oid relid, const char *stamp, List *indexes)
{
	static SPIPlanPtr probe_plan = NULL;
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1];
	MemoryContext oldcxt;
	int			ret;

	bp->probe_index = InvalidOid;
	values[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_plan(orderexp_keep_plan(&probe_plan,
											  "SELECT orderexp._plain_index(t), p.close_after "
											  "  FROM orderexp.tables t, orderexp._plain_policy(t.order_table) p "
											  " WHERE t.order_table = $1 AND p.close_after IS NOT NULL",
											  1, argtypes, 0),
						   values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "choosing the index of a table's plain deadlines failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			bp->probe_index = DatumGetObjectId(d);
			bp->probe_close_after =
				*DatumGetIntervalP(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	SPI_freetuptable(SPI_tuptable);

	keep_string(&bp->probe_stamp, stamp);
	list_free(bp->probe_indexes);
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	bp->probe_indexes = list_copy(indexes);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The plain deadline of an order created at "created" (timestamptz or
 * timestamp, typid), or 0 if it has come: created-at at or before "cutoff"
 * (now() - close_after, cast to the column's type), as the take compares;
 * else created-at as timestamptz plus close_after, as the next statement
 * computes it.
 */
static TimestampTz
plain_deadline(Datum created, Oid typid, TimestampTz cutoff, Datum close_after)
{
	if (typid == TIMESTAMPOID)
	{
		Datum		cutoff_local = DirectFunctionCall1(timestamptz_timestamp,
													   TimestampTzGetDatum(cutoff));

		if (DatumGetTimestamp(created) <= DatumGetTimestamp(cutoff_local))
			return 0;
		created = DirectFunctionCall1(timestamp_timestamptz, created);
	}
	else if (DatumGetTimestampTz(created) <= cutoff)
		return 0;
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, created,
												   close_after));
}

/*
 * orderexp_plain_first_due
 *		The earliest plain deadline of a table, read from the first entry of
 *		its partial index on created-at, without running its plain batch:
 *		an idle tick ran the batch's take and next statements (and the
 *		subtransaction around them) for every table with plain deadlines,
 *		most of what an idle worker did (bench/results.md).  Returns false
 *		when it cannot tell, and the caller runs the batch; else *first is
 *		the deadline of the earliest unpaid order, 0 if it has come, or
 *		DT_NOEND if there is none; "now" is the take's now().
 *
 * The index is the one set_plain_deadlines() asked for: a b-tree whose
 * first column is created-at, partial on status = the unpaid value, so that
 * every unpaid order of the table has an entry in it (_plain_index(),
 * chosen again when the registration's stamp or the table's indexes
 * change).  Only where that holds for the whole table: not for a
 * partitioned table or one with children, whose rows are in other
 * relations; only a valid, ready index in ascending order with a built-in
 * operator family, so that no code of the table's owner runs here, as the
 * extension owner.  The first entry visible to a new snapshot (as the take
 * would take) that is not null, at or after the sweep's watermark (the
 * take's start), is the unpaid order created first: the same comparisons
 * as the take's and the next statement's, in the column's type
 * (timestamptz, or timestamp with the cutoff cast to it).
 * An order of it that has a timer row of its own, or one that is locked,
 * makes the answer "due" and the batch runs, as before.
 */
bool
orderexp_plain_first_due(BatchPlan *bp, Oid relid, const char *stamp, uint64 sweep_id,
						 TimestampTz now, TimestampTz *first)
{
	Relation	rel;
	Relation	idx = NULL;
	List	   *indexes;
	Form_pg_attribute att;
	AttrNumber	attno;
	bool		known = false;

	if (stamp == NULL)
		return false;
	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		return false;
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relhassubclass)
		goto done;

	indexes = RelationGetIndexList(rel);
	if (bp->probe_stamp == NULL || strcmp(bp->probe_stamp, stamp) != 0 ||
		!equal(indexes, bp->probe_indexes))
		choose_probe_index(bp, relid, stamp, indexes);
	list_free(indexes);
	if (!OidIsValid(bp->probe_index))
		goto done;

	/* a DROP INDEX CONCURRENTLY may have taken it since */
	idx = try_relation_open(bp->probe_index, AccessShareLock);
	if (idx == NULL)
		goto done;
	if (idx->rd_rel->relkind != RELKIND_INDEX || idx->rd_rel->relam != BTREE_AM_OID ||
		idx->rd_index->indrelid != relid || !idx->rd_index->indisvalid ||
		!idx->rd_index->indisready || !idx->rd_index->indislive ||
		(idx->rd_indoption[0] & INDOPTION_DESC) != 0 ||
		idx->rd_opfamily[0] >= FirstNormalObjectId)
		goto done;
	attno = idx->rd_index->indkey.values[0];
	if (attno <= 0 || attno > RelationGetNumberOfAttributes(rel))
		goto done;
	att = TupleDescAttr(RelationGetDescr(rel), attno - 1);
	if ((att->atttypid != TIMESTAMPTZOID && att->atttypid != TIMESTAMPOID) ||
		idx->rd_opcintype[0] != att->atttypid)
		goto done;

	{
		Datum		close_after = IntervalPGetDatum(&bp->probe_close_after);
		TimestampTz cutoff;
		Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		IndexScanDesc scan;
		ScanKeyData keys[2];
		int			nkeys = 1;

		cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(now), close_after));
		/* created-at IS NOT NULL */
		ScanKeyEntryInitialize(&keys[0], SK_ISNULL | SK_SEARCHNOTNULL, 1, InvalidStrategy,
							   InvalidOid, InvalidOid, InvalidOid, (Datum) 0);

		/*
		 * Within a sweep, from the created-at of the last order its batches
		 * took, as the take starts there: the entries before it are the
		 * orders this transaction closed, which are not dead yet, and a
		 * probe from the start stepped over every one of them (all of a
		 * run_due() call's closes, in its last round).  The text is the
		 * column's own output, read back in the same session.
		 */
		if (bp->sweep_id == sweep_id && bp->last_created != NULL)
		{
			bool		tz = (att->atttypid == TIMESTAMPTZOID);
			Datum		from = DirectFunctionCall3(tz ? timestamptz_in : timestamp_in,
												   CStringGetDatum(bp->last_created),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1));

			ScanKeyInit(&keys[nkeys++], 1, BTGreaterEqualStrategyNumber,
						tz ? F_TIMESTAMPTZ_GE : F_TIMESTAMP_GE, from);
		}
		scan = index_beginscan(rel, idx, snapshot, nkeys, 0);
		index_rescan(scan, keys, nkeys, NULL, 0);
		*first = DT_NOEND;
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		created = slot_getattr(slot, attno, &isnull);

			/* a null cannot be the first entry: run the batch then */
			*first = isnull ? 0 : plain_deadline(created, att->atttypid, cutoff, close_after);
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snapshot);
		known = true;
	}

done:
	if (idx != NULL)
		relation_close(idx, AccessShareLock);
	relation_close(rel, AccessShareLock);
	return known;
}

/* free a batch's kept plans and state, e.g. when the extension went away */
void
orderexp_forget_batch(BatchPlan *bp)
{
	forget_statements(bp);
	if (bp->last_key)
		pfree(bp->last_key);
	bp->last_key = NULL;
	if (bp->last_created)
		pfree(bp->last_created);
	bp->last_created = NULL;
	if (bp->stamp)
		pfree(bp->stamp);
	bp->stamp = NULL;
	if (bp->probe_stamp)
		pfree(bp->probe_stamp);
	bp->probe_stamp = NULL;
	list_free(bp->probe_indexes);
	bp->probe_indexes = NIL;
	bp->probe_index = InvalidOid;
}
