/*-------------------------------------------------------------------------
 *
 * experiment.c
 *		Experiment variants: which variant of a running experiment an order
 *		falls into.
 *
 * A policy running an experiment (orderexp.start_experiment) has variants,
 * each with its own close_after and weight.  Each new order is assigned one
 * from a hash of its key: the timer trigger (timer.c) does it as the order
 * is inserted, and orderexp.assign_variant() answers the same question in
 * SQL, so that an application can tell which timeout an order will get.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "utils/array.h"

#include "experiment.h"

PG_FUNCTION_INFO_V1(orderexp_assign_variant);

/*
 * orderexp_pick_variant
 *		The variant (1-based) an order key falls into, given the weights of
 *		the variants: a 64-bit hash of the key's text, seeded with the
 *		experiment, taken modulo the sum of the weights.  The same key always
 *		lands in the same variant of the same experiment (on machines of one
 *		byte order, as with hash partitioning), and a new experiment shuffles
 *		the keys afresh.
 */
int
orderexp_pick_variant(const char *key, int keylen, const int32 *weights,
					  int nweights, int64 seed)
{
	uint64		total = 0;
	uint64		r;
	int			i;

	for (i = 0; i < nweights; i++)
		total += (uint64) weights[i];
	if (total == 0)
		elog(ERROR, "variant weights must not all be zero");
	r = hash_bytes_extended((const unsigned char *) key, keylen, (uint64) seed) % total;
	for (i = 0; i < nweights; i++)
	{
		if (r < (uint64) weights[i])
			return i + 1;
		r -= (uint64) weights[i];
	}
	return nweights;			/* not reached */
}

/*
 * orderexp.assign_variant(order_key text, weights integer[], seed bigint)
 *		The variant an order key is assigned to; the timer trigger calls the
 *		same routine, so this is what an order of that experiment gets.
 */
Datum
orderexp_assign_variant(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	int64		seed = PG_GETARG_INT64(2);
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;
	int32	   *weights;
	int			i;

	if (ARR_NDIM(arr) > 1 || ARR_ELEMTYPE(arr) != INT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights must be a one-dimensional integer array")));
	deconstruct_array(arr, INT4OID, 4, true, TYPALIGN_INT, &elems, &elemnulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights must not be empty")));
	weights = palloc(sizeof(int32) * n);
	for (i = 0; i < n; i++)
	{
		if (elemnulls[i] || DatumGetInt32(elems[i]) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("weights must be positive"),
					 errdetail("Weight %d is %s.", i + 1,
							   elemnulls[i] ? "NULL" : psprintf("%d", DatumGetInt32(elems[i])))));
		weights[i] = DatumGetInt32(elems[i]);
	}
	PG_RETURN_INT32(orderexp_pick_variant(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
										  weights, n, seed));
}
