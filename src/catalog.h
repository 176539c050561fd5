/*-------------------------------------------------------------------------
 *
 * catalog.h
 *		orderexp's own catalog as the C code sees it: its relations, the
 *		capabilities of the installed version, and the helpers that read a
 *		registered table's mapped columns and triggers.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_CATALOG_H
#define ORDEREXP_CATALOG_H

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/snapshot.h"

/* the columns of orderexp.timers, by name (the last four came in 1.1) */
typedef enum TimerColumn
{
	TC_ORDER_TABLE,
	TC_ORDER_KEY,
	TC_POLICY_ID,
	TC_CLOSE_AT,
	TC_REMIND_AT,
	TC_EXTENSIONS,
	TC_TOKEN_EXTENSIONS,
	TC_GENERATION,
	TC_REMINDED_FOR,
	TC_ORDER_CREATED,
	TC_POLICY_VERSION,
	TC_VARIANT,
	TC_REOPENED,
	TC_NCOLUMNS
} TimerColumn;

/*
 * The installed extension in the current database, as orderexp_catalog()
 * describes it.  The library serves every version it can upgrade from, so
 * that a database keeps working between a new library's installation and
 * its ALTER EXTENSION UPDATE; what differs between versions is said here,
 * and only here.
 */
typedef struct OrderexpCatalog
{
	bool		valid;			/* the fields below are current */
	int			version;		/* installed version, major * 100 + minor */
	Oid			extension;		/* its pg_extension row's OID */
	Oid			namespace;		/* schema orderexp */
	Oid			owner;			/* its owner: the extension owner */
	Oid			timers;
	Oid			timers_pkey;
	Oid			generation_seq; /* orderexp.timer_generation */
	Oid			policies;
	Oid			outcomes;		/* InvalidOid before 1.1 */
	/* what the sweep's overview reads (sweep.c); InvalidOid if missing */
	Oid			tables;			/* orderexp.tables */
	Oid			tables_pkey;
	Oid			timers_due;		/* timers (order_table, close_at, ...) */
	Oid			timers_remind;	/* timers (order_table, remind_at, ...) */
	Oid			policies_default;	/* policies (order_table) WHERE category
									 * IS NULL */
	AttrNumber	tables_order_table; /* the key column of orderexp.tables */
	AttrNumber	policies_order_table;	/* and of orderexp.policies */
	AttrNumber	policies_plain_since;	/* 1.3: policies.plain_since */
	AttrNumber	timer_attnum[TC_NCOLUMNS];	/* 0: not in this version */

	/* capabilities of the installed version */
	bool		has_experiments;	/* 1.1: policy versions, experiments,
									 * timer variants */
	bool		has_token_tables;	/* 1.1: tokens name tables by token id */
	bool		has_prune_index;	/* 1.1: outbox_delivered, for pruning */
	bool		has_obsolete_index; /* 1.3: outbox_obsolete: reminders that
									 * claim() settled without delivery, also
									 * pruned */
	bool		sweep_writes_outcomes;	/* 1.2: the close statement records
										 * its closes' outcomes itself */
	bool		split_batches;	/* 1.3: a batch is three statements, the
								 * orders table's run as its owner */
	bool		events_are_records; /* 1.3: outbox_history: the first event
									 * of a change is its record, kept with
									 * the history, not pruned */
	bool		has_batches;		/* 1.3: orderexp.batches: events delivered
								 * in batches, pruned by _prune_batches() */
	bool		has_outbox_parts;	/* 1.3: orderexp.outbox is partitioned:
									 * outbox_0 pruned by row, the rotating
									 * parts emptied whole (outbox.c) */
	bool		has_outbox_marks;	/* 1.3: orderexp.outbox_marks, written
									 * by _mark_outbox() (outbox.c) */
	bool		timer_direct_insert;	/* orderexp.timers is exactly the table
										 * of 1.1 and 1.2 (timer.c) */
	bool		outcome_count;	/* 1.3: orderexp.outcomes ends in the
								 * column order_count (outcome.c) */
	bool		plain_deadlines;	/* 1.3: policies.plain_since: orders
									 * with plain deadlines have no timer
									 * row (timer.c, batch.c) */
} OrderexpCatalog;

extern const OrderexpCatalog *orderexp_catalog(void);
extern bool orderexp_extension_ready(void);
extern TransactionId orderexp_extension_xmin(Snapshot snapshot);
extern Oid	orderexp_owner(void);
extern Oid	orderexp_table_owner(Oid relid);

/*
 * orderexp_scan_own_table: the rows of a small table of schema orderexp,
 * read directly (no SPI, no privilege check) under the active snapshot;
 * fn gets the named columns of each row and returns false to stop
 */
typedef bool (*OrderexpRowFn) (const Datum *values, const bool *isnull, void *arg);
extern void orderexp_scan_own_table(const char *relname, const char *const *attnames,
									int natts, Snapshot snapshot, OrderexpRowFn fn,
									void *arg);

/*
 * A registered table's mapping as orderexp.tables holds it, which the row
 * triggers of 1.3 read instead of arguments (orderexp_registration)
 */
typedef struct OrderexpRegistration
{
	Oid			order_table;	/* hash key */
	const char *key_column;
	const char *created_column;
	const char *status_column;
	const char *category_column;	/* "" for none */
	const char *unpaid_value;
	const char *closed_value;
	const char *cancelled_value;
} OrderexpRegistration;

extern const OrderexpRegistration *orderexp_registration(Oid relid);

/* registered tables: their triggers and mapped columns */
extern void orderexp_check_trigger_call(FunctionCallInfo fcinfo, const char *name,
										bool update_only, const int *layouts, int nlayouts);
extern Oid	orderexp_trigger_table(Relation rel, Trigger *trigger);
extern int	orderexp_mapped_column(Relation rel, const char *colname, const char *role);
extern char *orderexp_column_text(HeapTuple tuple, TupleDesc tupdesc, int attnum);
extern bool orderexp_status_equals(const char *status, Oid typid, const char *value);

#endif							/* ORDEREXP_CATALOG_H */
