/*-------------------------------------------------------------------------
 *
 * runas.h
 *		Running code as another role, with search_path pinned.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RUNAS_H
#define ORDEREXP_RUNAS_H

/* what orderexp_run_as_begin() saved, for orderexp_run_as_end() */
typedef struct RunAs
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel; /* 0: search_path was not pinned */
} RunAs;

extern void orderexp_run_as_begin(RunAs *ra, Oid role, int sec_context,
								  bool pin_search_path);
extern void orderexp_run_as_end(RunAs *ra);

#endif							/* ORDEREXP_RUNAS_H */
