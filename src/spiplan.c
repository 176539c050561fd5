/*-------------------------------------------------------------------------
 *
 * spiplan.c
 *		Kept SPI plans: the statements a backend runs again and again are
 *		prepared once and kept, and a batch statement is planned before it
 *		runs.
 *
 * Every statement orderexp runs per tick or per row (the sweep's
 * statements, the timer trigger's, pruning) lives in a static slot of its
 * module: orderexp_keep_plan() prepares it the first time and keeps it
 * (SPI_keepplan), after which PostgreSQL's plan cache replans it whenever
 * a relation it reads changes.  orderexp_plan_ahead() makes such a replan
 * happen before the statement runs rather than inside it (see there).
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/resowner.h"

#include "spiplan.h"

/*
 * orderexp_keep_plan
 *		The plan in *slot, prepared and kept first if the slot is empty.
 *		cursor_options as for SPI_prepare_cursor (0: let the plan cache
 *		choose between custom and generic plans).
 */
SPIPlanPtr
orderexp_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes,
				   int cursor_options)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

/* free the kept plan in *slot, if any, and empty the slot */
void
orderexp_forget_plan(SPIPlanPtr *slot)
{
	if (*slot != NULL)
	{
		SPI_freeplan(*slot);
		*slot = NULL;
	}
}

/*
 * orderexp_plan_ahead
 *		Make sure a kept single-statement plan is planned, planning it now if
 *		it is new or was invalidated, in a memory context of its own that is
 *		gone before the statement runs.
 *
 * SPI plans a statement when it executes it, in its executor context, and
 * keeps the planner's scratch memory there until the statement has run: a
 * batch that follows an invalidation (autovacuum's ANALYZE of a table the
 * batch statement reads, during any long drain) would hold the planning of
 * the big batch statement and the execution of a thousand rows at once.
 * Planned here first, the two come one after the other, and the worker's
 * memory does not depend on whether a replan happened (bench/README.md,
 * 5. Memory).  A plan that is valid costs a check and its relation locks,
 * which the execution takes anyway.
 */
void
orderexp_plan_ahead(SPIPlanPtr plan)
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	CachedPlan *cplan;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "orderexp planning",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	cplan = SPI_plan_get_cached_plan(plan);

	/*
	 * The batch plans are kept (SPI_keepplan), so the reference was taken
	 * under CurrentResourceOwner, and is given back the same way.
	 */
	if (cplan != NULL)
		ReleaseCachedPlan(cplan, CurrentResourceOwner);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
}
