/*-------------------------------------------------------------------------
 *
 * sweep.h
 *		Closing due orders: the rounds of the worker and of run_due().
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_SWEEP_H
#define ORDEREXP_SWEEP_H

#include "datatype/timestamp.h"

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

extern void orderexp_sweep_begin(void);
extern void orderexp_sweep_round(int batch_limit, int64 budget, bool in_worker,
								 Oid caller, SweepRound *round);
extern void orderexp_forget_plans(void);

#endif							/* ORDEREXP_SWEEP_H */
