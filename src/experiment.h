/*-------------------------------------------------------------------------
 *
 * experiment.h
 *		Experiment variants.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_EXPERIMENT_H
#define ORDEREXP_EXPERIMENT_H

extern int	orderexp_pick_variant(const char *key, int keylen, const int32 *weights,
								  int nweights, int64 seed);

#endif							/* ORDEREXP_EXPERIMENT_H */
