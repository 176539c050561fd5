/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		orderexp's own catalog as the C code sees it: the relations of the
 *		extension, the capabilities of the installed version, and the
 *		helpers that read a registered table's triggers and mapped columns.
 *
 * orderexp_catalog() describes the extension installed in the current
 * database: the OIDs of its relations, the column numbers of
 * orderexp.timers and what the installed version can do.  The library
 * serves every version it can be upgraded from (a database keeps working
 * between the installation of a new library and its ALTER EXTENSION
 * UPDATE), and this is the one place that asks which version is there.
 * The description is looked up once per backend and again after an
 * invalidation: a relcache invalidation of one of the relations it names
 * (or of all relations), or any change of pg_proc or pg_namespace.  Every
 * extension update replaces functions, and dropping the extension drops
 * its schema, so neither goes unnoticed.
 *
 * The helpers for registered tables serve both row triggers (timer.c and
 * outcome.c): the checks of a trigger call, the registered table a
 * trigger belongs to (a clone on a partition belongs to its topmost
 * parent's table), its registration (the row triggers of 1.3 take no
 * arguments), a mapped column's number, and the status comparison.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "orderexp.h"
#include "catalog.h"

static void catalog_relcache_callback(Datum arg, Oid relid);
static void catalog_syscache_callback(Datum arg, int cacheid, uint32 hashvalue);

static const char *const timer_column_names[TC_NCOLUMNS] = {
	"order_table", "order_key", "policy_id", "close_at", "remind_at", "extensions",
	"token_extensions", "generation", "reminded_for", "order_created",
	"policy_version", "variant", "reopened"
};

static OrderexpCatalog catalog;
static uint64 catalog_invalidations = 0;	/* counts the resets */
static bool callbacks_registered = false;

/* relcache callback: one of our relations changed, or all did */
static void
catalog_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == catalog.timers ||
		relid == catalog.timers_pkey || relid == catalog.outcomes ||
		relid == catalog.policies || relid == catalog.tables ||
		relid == catalog.tables_pkey || relid == catalog.timers_due ||
		relid == catalog.timers_remind || relid == catalog.policies_default)
	{
		catalog.valid = false;
		catalog_invalidations++;
	}
}

/* syscache callback: a function or a schema changed (an update, a drop) */
static void
catalog_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	catalog.valid = false;
	catalog_invalidations++;
}

/*
 * Read the pg_extension row of extension extoid under snapshot (NULL: the
 * catalog snapshot): its version as major * 100 + minor into *version and
 * its row version (xmin) into *xmin, each if wanted; 0 and
 * InvalidTransactionId if there is no such row.
 */
static void
read_extension_row(Oid extoid, Snapshot snapshot, int *version, TransactionId *xmin)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (version)
		*version = 0;
	if (xmin)
		*xmin = InvalidTransactionId;
	if (!OidIsValid(extoid))
		return;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, snapshot, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		if (version)
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
										 RelationGetDescr(rel), &isnull);
			int			major = 0;
			int			minor = 0;

			if (!isnull &&
				sscanf(TextDatumGetCString(d), "%d.%d", &major, &minor) >= 1)
				*version = major * 100 + minor;
		}
		if (xmin)
			*xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * The row version of the installed extension's pg_extension row under
 * snapshot, or InvalidTransactionId if it is gone: part of the stamp of a
 * table's plain deadlines, which an update of the extension changes
 * (sweep.c's overview)
 */
TransactionId
orderexp_extension_xmin(Snapshot snapshot)
{
	TransactionId xmin;

	read_extension_row(orderexp_catalog()->extension, snapshot, NULL, &xmin);
	return xmin;
}

/*
 * orderexp_catalog
 *		The installed extension's relations and capabilities, from the cache
 *		or looked up afresh.  Needs a transaction and the extension.
 */
const OrderexpCatalog *
orderexp_catalog(void)
{
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tup;
	int			nlive = 0;
	int			i;
	uint64		invalidations = catalog_invalidations;

	if (catalog.valid)
		return &catalog;
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(catalog_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, catalog_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, catalog_syscache_callback, (Datum) 0);
		callbacks_registered = true;
	}

	catalog.extension = get_extension_oid(ORDEREXP_EXTENSION_NAME, true);
	read_extension_row(catalog.extension, NULL, &catalog.version, NULL);
	if (catalog.version == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						ORDEREXP_EXTENSION_NAME)));
	catalog.namespace = get_namespace_oid(ORDEREXP_SCHEMA_NAME, false);
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(catalog.namespace));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", catalog.namespace);
	catalog.owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);

	catalog.timers = get_relname_relid("timers", catalog.namespace);
	catalog.timers_pkey = get_relname_relid("timers_pkey", catalog.namespace);
	catalog.generation_seq = get_relname_relid("timer_generation", catalog.namespace);
	catalog.policies = get_relname_relid("policies", catalog.namespace);
	catalog.outcomes = get_relname_relid("outcomes", catalog.namespace);
	catalog.tables = get_relname_relid("tables", catalog.namespace);
	catalog.tables_pkey = get_relname_relid("tables_pkey", catalog.namespace);
	catalog.timers_due = get_relname_relid("timers_due", catalog.namespace);
	catalog.timers_remind = get_relname_relid("timers_remind", catalog.namespace);
	catalog.policies_default = get_relname_relid("policies_table_default", catalog.namespace);
	if (!OidIsValid(catalog.timers) || !OidIsValid(catalog.timers_pkey))
		elog(ERROR, "orderexp.timers or its primary key does not exist");

	/*
	 * Capabilities: from the objects that carry them where there are such,
	 * so that they hold even inside the update that creates them; the
	 * shape of the batch statements is a function body's, so by version.
	 */
	catalog.has_experiments =
		OidIsValid(get_relname_relid("experiments", catalog.namespace));
	catalog.has_token_tables =
		OidIsValid(get_relname_relid("token_tables", catalog.namespace));
	catalog.has_prune_index =
		OidIsValid(get_relname_relid("outbox_delivered", catalog.namespace));
	catalog.has_obsolete_index =
		OidIsValid(get_relname_relid("outbox_obsolete", catalog.namespace));
	catalog.events_are_records =
		OidIsValid(get_relname_relid("outbox_history", catalog.namespace));
	catalog.has_batches =
		OidIsValid(get_relname_relid("batch_pruning", catalog.namespace));
	catalog.has_outbox_parts =
		OidIsValid(get_relname_relid("outbox_parts", catalog.namespace));
	catalog.has_outbox_marks =
		OidIsValid(get_relname_relid("outbox_marks", catalog.namespace));
	catalog.sweep_writes_outcomes = catalog.version >= 102;
	catalog.split_batches = catalog.version >= 103;

	/*
	 * The timer trigger writes orderexp.timers directly only if it is the
	 * table of 1.1 and 1.2: these columns and no others, no triggers; a
	 * table that looks different (1.0, a later version with more columns)
	 * is written through the kept INSERT instead.
	 */
	rel = table_open(catalog.timers, AccessShareLock);
	desc = RelationGetDescr(rel);
	for (i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			nlive++;
	catalog.timer_direct_insert = (nlive == TC_NCOLUMNS && rel->trigdesc == NULL &&
								   rel->rd_rel->relkind == RELKIND_RELATION &&
								   OidIsValid(catalog.generation_seq));
	for (i = 0; i < TC_NCOLUMNS; i++)
	{
		int			attnum = SPI_fnumber(desc, timer_column_names[i]);

		catalog.timer_attnum[i] = attnum > 0 ? (AttrNumber) attnum : 0;
		if (attnum <= 0)
			catalog.timer_direct_insert = false;
	}
	table_close(rel, AccessShareLock);

	/*
	 * The outcome trigger writes a row of orderexp.outcomes as the table
	 * is: 1.3 added the column order_count at its end, which a database not
	 * yet updated does not have.  From the table itself, so that it holds
	 * inside the update that adds the column (a syscache lookup: no lock).
	 */
	catalog.outcome_count = OidIsValid(catalog.outcomes) &&
		get_attnum(catalog.outcomes, "order_count") != InvalidAttrNumber;
	catalog.policies_plain_since = OidIsValid(catalog.policies) ?
		get_attnum(catalog.policies, "plain_since") : InvalidAttrNumber;
	catalog.plain_deadlines = catalog.policies_plain_since != InvalidAttrNumber;
	catalog.policies_order_table = OidIsValid(catalog.policies) ?
		get_attnum(catalog.policies, "order_table") : InvalidAttrNumber;
	catalog.tables_order_table = OidIsValid(catalog.tables) ?
		get_attnum(catalog.tables, "order_table") : InvalidAttrNumber;

	/*
	 * Current unless an invalidation arrived while we looked (or before):
	 * then this result serves this call, and the next one looks everything
	 * up again.  An error above leaves the cache invalid.
	 */
	catalog.valid = (invalidations == catalog_invalidations);
	return &catalog;
}

/*
 * Is orderexp installed in the current database?  Needs a transaction.
 *
 * If so, the extension stays for the rest of the transaction: its object is
 * locked in AccessShareLock, which DROP EXTENSION, locking it in
 * AccessExclusiveLock before it removes anything, waits for.  Without the
 * lock a drop committing in the middle of a worker's tick left the tick's
 * next statement without its tables, and the worker logged an ERROR
 * (TAP 002 caught it).  A drop that held the lock first has committed once
 * ours is granted: the lock took in its invalidations, so looking again
 * sees it gone.
 *
 * A worker asks every tick, and two scans of pg_extension were a tenth of
 * an idle tick's CPU time: while the catalog cache is valid, its extension
 * is locked and, if the cache is still valid once the lock is held, there
 * is no need to look again.  A drop removes schema orderexp and its
 * functions, whose invalidations (taken in at the transaction's start, or
 * by the lock's acquisition) leave the cache invalid, and the answer comes
 * from pg_extension as before.
 */
bool
orderexp_extension_ready(void)
{
	Oid			extoid;

	if (catalog.valid && OidIsValid(catalog.extension))
	{
		LockDatabaseObject(ExtensionRelationId, catalog.extension, 0, AccessShareLock);
		if (catalog.valid)
			return true;
	}
	extoid = get_extension_oid(ORDEREXP_EXTENSION_NAME, true);
	if (!OidIsValid(extoid))
		return false;
	LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	return get_extension_oid(ORDEREXP_EXTENSION_NAME, true) == extoid;
}

/*
 * The owner of a registered table: its code (triggers, constraints, casts)
 * runs as this role when orderexp acts on the table for nobody in
 * particular (the sweep, the scans of a registration).
 */
Oid
orderexp_table_owner(Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* the owner of schema orderexp, i.e. of the extension's objects */
Oid
orderexp_owner(void)
{
	return orderexp_catalog()->owner;
}

/*
 * orderexp_check_trigger_call
 *		Check that a row trigger function of orderexp was called by the
 *		trigger manager, AFTER a row INSERT or UPDATE (UPDATE only if
 *		update_only), with the arguments of one of the trigger layouts the
 *		library serves: layouts[] are their argument counts, oldest first.
 */
void
orderexp_check_trigger_call(FunctionCallInfo fcinfo, const char *name,
							bool update_only, const int *layouts, int nlayouts)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	StringInfoData counts;
	int			nargs;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.%s() was not called by the trigger manager", name)));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		  (!update_only && TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orderexp.%s() must be fired AFTER %s FOR EACH ROW",
						name, update_only ? "UPDATE" : "INSERT or UPDATE")));
	nargs = trigdata->tg_trigger->tgnargs;
	for (i = 0; i < nlayouts; i++)
		if (nargs == layouts[i])
			return;

	initStringInfo(&counts);
	for (i = 0; i < nlayouts; i++)
		appendStringInfo(&counts, "%s%d", i == 0 ? "" : i == nlayouts - 1 ? " or " : ", ",
						 layouts[i]);
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("orderexp.%s() needs %s arguments, got %d", name, counts.data, nargs),
			 errhint("Register the table again with orderexp.set_close_policy().")));
}

/*
 * Column number of a mapped column of an orders table, or a clear error if
 * it is gone (the timer and the outcome trigger name their columns).
 */
int
orderexp_mapped_column(Relation rel, const char *colname, const char *role)
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
 * A column of a row of a registered table as text, what SPI_getvalue()
 * gives (NULL for NULL), without the output function's lookup and call for
 * the types keys and statuses nearly always have: text, varchar and
 * char(n) are their bytes (char(n) with its padding, as bpcharout gives
 * it), smallint, integer and bigint their digits.  The triggers read the
 * key and the status of every row they see, on the application's path and
 * the sweep's: SPI_getvalue() looks the type's output function up in the
 * syscache each time.
 */
char *
orderexp_column_text(HeapTuple tuple, TupleDesc tupdesc, int attnum)
{
	Oid			typid = TupleDescAttr(tupdesc, attnum - 1)->atttypid;
	Datum		d;
	bool		isnull;
	char	   *buf;

	switch (typid)
	{
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			d = heap_getattr(tuple, attnum, tupdesc, &isnull);
			return isnull ? NULL : TextDatumGetCString(d);
		case INT2OID:
		case INT4OID:
		case INT8OID:
			d = heap_getattr(tuple, attnum, tupdesc, &isnull);
			if (isnull)
				return NULL;
			buf = palloc(MAXINT8LEN + 1);
			if (typid == INT8OID)
				(void) pg_lltoa(DatumGetInt64(d), buf);
			else
				(void) pg_ltoa(typid == INT4OID ? DatumGetInt32(d) : DatumGetInt16(d), buf);
			return buf;
		default:
			return SPI_getvalue(tuple, tupdesc, attnum);
	}
}

/*
 * Is a status, as SPI_getvalue() gives it (NULL for NULL), the given
 * value?  Compared as text, the way the status values were checked at
 * registration ("v::type::text = v"): a char(n) column's padding does not
 * count, an enum compares by its label, and NULL is no value at all.
 * typid is the status column's type.
 */
bool
orderexp_status_equals(const char *status, Oid typid, const char *value)
{
	size_t		len;

	if (status == NULL)
		return false;
	len = strlen(status);
	if (typid == BPCHAROID)
		while (len > 0 && status[len - 1] == ' ')
			len--;
	return len == strlen(value) && memcmp(status, value, len) == 0;
}

/*
 * The registered table a trigger belongs to: the table it was created on,
 * or for a clone on a partition, the table of its topmost parent trigger.
 * Clones are looked up once per backend: a trigger's OID is never reused
 * for another trigger while it exists, and clones go away when their
 * partition is detached.
 */
static HTAB *clone_roots = NULL;

typedef struct CloneRoot
{
	Oid			tgoid;			/* hash key: the clone */
	Oid			relid;			/* the registered table */
} CloneRoot;

Oid
orderexp_trigger_table(Relation rel, Trigger *trigger)
{
	CloneRoot  *entry;
	bool		found;
	Oid			tgoid = trigger->tgoid;
	Oid			relid = RelationGetRelid(rel);
	Relation	tgrel;

	if (!trigger->tgisclone)
		return relid;

	if (clone_roots == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CloneRoot);
		clone_roots = hash_create("orderexp clone triggers", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(clone_roots, &tgoid, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->relid;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	for (;;)
	{
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;
		Form_pg_trigger form;
		Oid			parent;

		ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(tgoid));
		scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
		tup = systable_getnext(scan);
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "could not find trigger %u", tgoid);
		form = (Form_pg_trigger) GETSTRUCT(tup);
		relid = form->tgrelid;
		parent = form->tgparentid;
		systable_endscan(scan);
		if (!OidIsValid(parent))
			break;
		tgoid = parent;
	}
	table_close(tgrel, AccessShareLock);

	entry = hash_search(clone_roots, &trigger->tgoid, HASH_ENTER, &found);
	entry->relid = relid;
	return relid;
}

/*
 * Read the rows of orderexp.relname directly: a table scan under snapshot
 * (NULL: the active snapshot, the transaction's when none is active),
 * handing fn the columns attnames (natts of them, at most 8) of each row
 * until it returns false.  For the small tables that code running as
 * whichever role writes an event or fires a trigger must read (stream.c's
 * origins, outbox.c's current part, the registrations below): no SPI, no
 * privileges, and cheap enough for once per transaction.  A table or
 * column that is not there is an internal error: the installed version has
 * them whenever the caller is reached.
 */
void
orderexp_scan_own_table(const char *relname, const char *const *attnames, int natts,
						Snapshot snapshot, OrderexpRowFn fn, void *arg)
{
	Oid			relid = get_relname_relid(relname, orderexp_catalog()->namespace);
	AttrNumber	attnums[8];
	Datum		values[8];
	bool		isnull[8];
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;

	Assert(natts > 0 && natts <= lengthof(attnums));
	if (!OidIsValid(relid))
		elog(ERROR, "orderexp.%s does not exist", relname);
	for (int i = 0; i < natts; i++)
	{
		attnums[i] = get_attnum(relid, attnames[i]);
		if (attnums[i] == InvalidAttrNumber)
			elog(ERROR, "orderexp.%s.%s does not exist", relname, attnames[i]);
	}

	rel = table_open(relid, AccessShareLock);
	if (snapshot == NULL)
		snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		for (int i = 0; i < natts; i++)
			values[i] = slot_getattr(slot, attnums[i], &isnull[i]);
		if (!fn(values, isnull, arg))
			break;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * The registrations of the current database (orderexp.tables) as the row
 * triggers of 1.3 read them: the triggers that orderexp creates on a
 * registered table take no arguments.  PostgreSQL copies a relation's
 * triggers, arguments and all, into every statement that writes the
 * relation (CopyTriggerDesc, for each INSERT and UPDATE of the
 * application's), and the eight of the status trigger cost some 2,000
 * instructions an insert-and-pay transaction (bench/instructions.md).
 * PostgreSQL's own foreign key triggers take none either and look their
 * constraint up in a cache (ri_triggers.c); so do these, in this one.
 *
 * The cache holds every row of orderexp.tables, read at the first lookup
 * under a new snapshot, so that it reflects every change whose
 * invalidation this backend has processed.  It is dropped when
 * orderexp.tables changes: the table's statement trigger (tables_changed,
 * orderexp._policies_changed()) sends a relcache invalidation of it, as a
 * drop of the table does.  The callback only marks the cache stale; it is
 * emptied at the next lookup, so an entry stays valid for its caller until
 * the caller looks up again, whatever invalidations arrive in between.
 */
static HTAB *registrations = NULL;
static MemoryContext RegistrationContext = NULL;
static Oid	registrations_relid = InvalidOid;	/* orderexp.tables, when read */
static bool registrations_stale = false;

/* relcache callback: orderexp.tables changed, or every relation did */
static void
registrations_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == registrations_relid)
		registrations_stale = true;
}

/* orderexp_scan_own_table's callback: one row of orderexp.tables */
static bool
add_registration(const Datum *values, const bool *isnull, void *arg)
{
	Oid			relid = DatumGetObjectId(values[0]);
	OrderexpRegistration *reg;
	MemoryContext oldcxt = MemoryContextSwitchTo(RegistrationContext);

	reg = hash_search(registrations, &relid, HASH_ENTER, NULL);
	reg->key_column = pstrdup(NameStr(*DatumGetName(values[1])));
	reg->created_column = pstrdup(NameStr(*DatumGetName(values[2])));
	reg->status_column = pstrdup(NameStr(*DatumGetName(values[3])));
	reg->category_column = isnull[4] ? "" : pstrdup(NameStr(*DatumGetName(values[4])));
	reg->unpaid_value = TextDatumGetCString(values[5]);
	reg->closed_value = TextDatumGetCString(values[6]);
	reg->cancelled_value = TextDatumGetCString(values[7]);
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/*
 * The registration of table relid, for its row triggers: a clear error if
 * it is not registered (a trigger left behind, say by a restore of the
 * table without orderexp's rows).  Valid until the next call.
 */
const OrderexpRegistration *
orderexp_registration(Oid relid)
{
	static const char *const attnames[] = {
		"order_table", "key_column", "created_column", "status_column",
		"category_column", "unpaid_value", "closed_value", "cancelled_value"
	};
	OrderexpRegistration *reg;

	if (RegistrationContext == NULL)
	{
		RegistrationContext = AllocSetContextCreate(TopMemoryContext,
													"orderexp registrations",
													ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(registrations_invalidate, (Datum) 0);
	}
	if (registrations != NULL && registrations_stale)
	{
		hash_destroy(registrations);
		registrations = NULL;
		MemoryContextReset(RegistrationContext);
	}
	if (registrations == NULL)
	{
		HASHCTL		ctl;
		Snapshot	snapshot;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(OrderexpRegistration);
		ctl.hcxt = RegistrationContext;
		registrations = hash_create("orderexp registrations", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		registrations_relid = orderexp_catalog()->tables;
		registrations_stale = false;

		/*
		 * A snapshot taken now sees every change whose invalidation was
		 * processed (a change is visible before its invalidation is sent);
		 * one that arrives while reading makes the cache stale again.
		 */
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		PG_TRY();
		{
			orderexp_scan_own_table("tables", attnames, lengthof(attnames), snapshot,
									add_registration, NULL);
		}
		PG_CATCH();
		{
			hash_destroy(registrations);
			registrations = NULL;
			MemoryContextReset(RegistrationContext);
			PG_RE_THROW();
		}
		PG_END_TRY();
		UnregisterSnapshot(snapshot);
	}

	reg = hash_search(registrations, &relid, HASH_FIND, NULL);
	if (reg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has a trigger of orderexp but is not registered",
						get_rel_name(relid) ? get_rel_name(relid) : "?"),
				 errhint("Register the table again with orderexp.set_close_policy(), or drop its triggers named orderexp_*.")));
	return reg;
}
