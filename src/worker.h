/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The launcher and the per-database background workers.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_WORKER_H
#define ORDEREXP_WORKER_H

#include "fmgr.h"

extern void orderexp_register_launcher(void);
extern PGDLLEXPORT void orderexp_launcher_main(Datum main_arg);
extern PGDLLEXPORT void orderexp_worker_main(Datum main_arg);

#endif							/* ORDEREXP_WORKER_H */
