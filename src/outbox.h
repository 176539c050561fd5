/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		Pruning of delivered outbox events.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_OUTBOX_H
#define ORDEREXP_OUTBOX_H

extern int64 orderexp_prune_outbox(int limit);

#endif							/* ORDEREXP_OUTBOX_H */
