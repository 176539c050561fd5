/*-------------------------------------------------------------------------
 *
 * spiplan.h
 *		Kept SPI plans: prepared once per backend, planned ahead of a batch.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_SPIPLAN_H
#define ORDEREXP_SPIPLAN_H

#include "executor/spi.h"

extern SPIPlanPtr orderexp_keep_plan(SPIPlanPtr *slot, const char *sql,
									 int nargs, Oid *argtypes, int cursor_options);
extern void orderexp_forget_plan(SPIPlanPtr *slot);
extern void orderexp_plan_ahead(SPIPlanPtr plan);

#endif							/* ORDEREXP_SPIPLAN_H */
