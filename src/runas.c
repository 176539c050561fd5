/*-------------------------------------------------------------------------
 *
 * runas.c
 *		Running code as another role, with search_path pinned: the one
 *		place where orderexp changes the current user.
 *
 * orderexp switches roles in two directions.  Its own tables (timers,
 * outbox, audit, secret) belong to the extension owner, and code that
 * writes them on somebody's behalf runs as that owner with
 * SECURITY_LOCAL_USERID_CHANGE, much as a SECURITY DEFINER function would.
 * Code that belongs to somebody else (a table's triggers, constraints,
 * index expressions and casts) must run as that somebody, under
 * SECURITY_RESTRICTED_OPERATION when orderexp acts for them, as
 * PostgreSQL's own maintenance commands do (vacuum.c, the fix of
 * CVE-2022-1552).  Either way the user id and security context go back to
 * what they were at orderexp_run_as_end(); an error in between is undone
 * by the abort of the (sub)transaction, which restores both and the GUCs.
 *
 * With pin_search_path, search_path is "pg_catalog, pg_temp" until the
 * end, in a GUC nest level of its own, so that nothing the caller put on
 * its path can stand in for a function or operator that the code names
 * without a schema.  The caller may set more GUCs in that nest level (the
 * sweep turns jit off).  At the end every setting changed in that level
 * goes back, whoever changed it and however (SET, SET LOCAL,
 * set_config()), as index builds and VACUUM roll back what the code of a
 * table's owner set (index.c, vacuum.c): a plain SET would otherwise
 * outlive the level, and a table's trigger could hand its search_path to
 * the code that runs after it as the extension owner (a gate's body, the
 * sweep's next statements) or to whoever called run_due(), and make them
 * call the table owner's functions and operators.  So code of somebody
 * else is only ever run with pin_search_path.  Code whose every name is
 * qualified and that runs nobody else's code (the timer trigger's, on the
 * application's insert path) may skip the nest level and its cost.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "runas.h"

/*
 * orderexp_run_as_begin
 *		Become role, adding sec_context (SECURITY_LOCAL_USERID_CHANGE,
 *		SECURITY_RESTRICTED_OPERATION) to the current security context, and
 *		pin search_path if asked to.
 */
void
orderexp_run_as_begin(RunAs *ra, Oid role, int sec_context, bool pin_search_path)
{
	/* somebody else's code runs only in a GUC nest level of its own */
	Assert(pin_search_path || (sec_context & SECURITY_RESTRICTED_OPERATION) == 0);

	GetUserIdAndSecContext(&ra->save_userid, &ra->save_sec_context);
	SetUserIdAndSecContext(role, ra->save_sec_context | sec_context);
	ra->save_nestlevel = 0;
	if (pin_search_path)
	{
		ra->save_nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
}

/*
 * orderexp_run_as_end
 *		Back to the user and security context of the begin; with
 *		pin_search_path, every GUC changed since goes back too (as at the
 *		abort of a subtransaction), not only those set with GUC_ACTION_SAVE.
 */
void
orderexp_run_as_end(RunAs *ra)
{
	if (ra->save_nestlevel > 0)
		AtEOXact_GUC(false, ra->save_nestlevel);
	SetUserIdAndSecContext(ra->save_userid, ra->save_sec_context);
}
