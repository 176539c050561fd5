/*-------------------------------------------------------------------------
 *
 * orderexp.h
 *		Declarations shared by the modules of orderexp: GUC variables, the
 *		sweep that closes due orders, and the background worker entry points.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_H
#define ORDEREXP_H

#include "postgres.h"

#include "commands/trigger.h"
#include "datatype/timestamp.h"
#include "utils/rel.h"

#define ORDEREXP_EXTENSION_NAME	"orderexp"
#define ORDEREXP_SCHEMA_NAME	"orderexp"
#define ORDEREXP_NOTIFY_CHANNEL	"orderexp"

/* GUC variables (orderexp.c) */
extern char *orderexp_databases;
extern int	orderexp_naptime;
extern int	orderexp_batch_size;
extern bool orderexp_enabled;
extern int	orderexp_max_attempts;
extern int	orderexp_event_retention;

/*
 * What one round of the sweep did.  A round gives every registered table at
 * most one batch; the caller loops while "more" says a batch came back full.
 */
typedef struct SweepRound
{
	int64		processed;		/* timers taken off the due list */
	int64		closed;			/* orders actually closed */
	int64		reminded;		/* reminders written */
	int64		reminded_taken; /* due reminders dealt with */
	bool		more;			/* some table filled its batch: go again */
	bool		stuck;			/* due rows remain that could not be taken */
	bool		from_overview;	/* looked at every table, not only those with more */
	TimestampTz next_due;		/* earliest future deadline, or 0 if none */
} SweepRound;

/* delivery.c */
extern int64 orderexp_prune_outbox(int limit);

/* sweep.c */
extern Oid	orderexp_sweep_closing;
extern void orderexp_sweep_begin(void);
extern void orderexp_sweep_round(int batch_limit, int64 budget, bool in_worker,
								 Oid caller, SweepRound *round);
extern bool orderexp_extension_ready(void);
extern void orderexp_forget_plans(void);

/* outcome.c */
extern int	orderexp_pick_variant(const char *key, int keylen, const int32 *weights,
								  int nweights, int64 seed);

/* trigger.c */

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

/* orderexp's relations as its triggers use them (orderexp_relations()) */
typedef struct OrderexpRelations
{
	bool		valid;			/* the fields below are current */
	Oid			timers;
	Oid			timers_pkey;
	Oid			generation_seq; /* orderexp.timer_generation */
	Oid			outcomes;		/* InvalidOid before 1.1 */
	AttrNumber	attnum[TC_NCOLUMNS];	/* 0: not in this version */
	bool		direct_insert;	/* timers is exactly the table of 1.1/1.2 */
} OrderexpRelations;

extern const OrderexpRelations *orderexp_relations(void);
extern Oid	orderexp_trigger_table(Relation rel, Trigger *trigger);
extern int	orderexp_mapped_column(Relation rel, const char *colname, const char *role);
extern bool orderexp_status_equals(const char *status, Oid typid, const char *value);

/* gate.c */
extern Oid	orderexp_owner(void);
extern void orderexp_check_order_privilege(Oid relid);
extern Datum orderexp_call_as_owner(const char *sql, int nargs, Oid *argtypes,
									Datum *values, const char *nulls,
									Oid restype, bool *isnull);

/* worker.c */
extern void orderexp_register_launcher(void);
extern PGDLLEXPORT void orderexp_launcher_main(Datum main_arg);
extern PGDLLEXPORT void orderexp_worker_main(Datum main_arg);

#endif							/* ORDEREXP_H */
