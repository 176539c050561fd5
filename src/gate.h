/*-------------------------------------------------------------------------
 *
 * gate.h
 *		Privilege gates of orderexp's public functions.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_GATE_H
#define ORDEREXP_GATE_H

extern void orderexp_check_order_privilege(Oid relid);
extern Datum orderexp_call_as_owner(const char *sql, int nargs, Oid *argtypes,
									Datum *values, const char *nulls,
									Oid restype, bool *isnull);

#endif							/* ORDEREXP_GATE_H */
