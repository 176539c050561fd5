/*-------------------------------------------------------------------------
 *
 * batch.h
 *		One batch of one registered table: its kept statements, run as the
 *		roles they belong to.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_BATCH_H
#define ORDEREXP_BATCH_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"

/*
 * The kept statements of one kind of batch of a table, and where its sweep
 * has got to.  From 1.3 on a batch is three statements (take, orders,
 * record); a database still at 1.2 or before runs one.
 */
#define BATCH_TAKE		0
#define BATCH_ORDERS	1
#define BATCH_RECORD	2
#define BATCH_SPLIT_PLANS	3

/*
 * A plain close batch (1.3, set_plain_deadlines) is five: take and next
 * (the table's owner), own (the extension owner: those without a timer
 * row), orders, record.
 */
#define PLAIN_TAKE		0
#define PLAIN_NEXT		1
#define PLAIN_OWN		2
#define PLAIN_ORDERS	3
#define PLAIN_RECORD	4
#define BATCH_MAX_PLANS	5

typedef struct BatchPlan
{
	char	   *sql;			/* text the plans were made from */
	int			nplans;			/* 1 or 3; 5 for a plain batch */
	SPIPlanPtr	plans[BATCH_MAX_PLANS]; /* kept plans */
	uint64		sweep_id;		/* sweep that set the watermark */
	TimestampTz last_at;		/* (due time, key) of the last timer taken */
	char	   *last_key;		/* in that sweep; TopMemoryContext */
	char	   *last_created;	/* plain batch: created-at of the last order
								 * taken, as text; TopMemoryContext */
	char	   *stamp;			/* plain batch: the registration's stamp its
								 * statements were made for */
	bool		writes_outcomes;	/* the statement records its closes' outcomes */

	/* plain batch: what orderexp_plain_first_due reads (TopMemoryContext) */
	char	   *probe_stamp;	/* the stamp the index was chosen for */
	List	   *probe_indexes;	/* the table's indexes then (OIDs) */
	Oid			probe_index;	/* the partial index on created-at, or 0 */
	Interval	probe_close_after;	/* the default policy's close_after */
} BatchPlan;

/* what one batch statement reports */
typedef struct BatchResult
{
	int64		taken;			/* timers taken off the due list */
	int64		busy;			/* due, but their row was locked: left for later */
	int64		done;			/* orders closed, or reminders written */
	bool		blocked;		/* plain batch: not run, the table's plain
								 * lock was taken (try again soon) */
} BatchResult;

/* the table whose close batch is running right now (outcome.c), or 0 */
extern Oid	orderexp_sweep_closing;

extern bool orderexp_run_batch(BatchPlan *bp, bool closes, Oid relid, int batch_limit,
							   uint64 sweep_id, BatchResult *result);
extern bool orderexp_run_plain_batch(BatchPlan *bp, Oid relid, const char *stamp,
									 int batch_limit, uint64 sweep_id,
									 BatchResult *result, TimestampTz *next_at);
extern bool orderexp_plain_first_due(BatchPlan *bp, Oid relid, const char *stamp,
									 uint64 sweep_id, TimestampTz now, TimestampTz *first);
extern void orderexp_forget_batch(BatchPlan *bp);

#endif							/* ORDEREXP_BATCH_H */
