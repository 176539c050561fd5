/*-------------------------------------------------------------------------
 *
 * stream.c
 *		Whether the outbox's stream of events is this database's own: the
 *		default of orderexp.outbox.txid, and the test that makes a restored
 *		stream adopted before it is used.
 *
 * While orderexp.batch_delivery is on, a new outbox event joins the stream
 * (1.3, issue 22) with the id of the transaction that wrote it, and the
 * stream is cut into batches by snapshots.  Transaction ids and snapshots
 * mean something only in the cluster that made them.  pg_dump keeps the
 * outbox, the batches and the table of the stream's origins
 * (pg_extension_config_dump), not the cursor: a restore makes the cursor
 * anew, with an origin of its own (a random uuid), and brings the dumped
 * origin back beside it.  Two different origins say that the stream's
 * transaction ids are another cluster's (or another incarnation's of this
 * database), and orderexp._stream_adopt() turns the stream's events into
 * rows of their own, with the state their dumped batches gave them,
 * before the stream is used again (claim(), next_batch(), the pruning).
 *
 * Until then a new event must not join the stream: its transaction id
 * could fall in the range of a dumped batch and be taken for one of its
 * events.  So the column's default, orderexp._stream_txid(), gives the
 * writing transaction's id only when the setting is on and the stream is
 * this database's own, and NULL otherwise: the event is then a row,
 * claimed one by one, as with the setting off.
 *
 * The two tables are read directly, not through SPI, once per transaction:
 * the default runs as whichever role writes the event, which need not be
 * allowed to read them, and a transaction that writes a thousand events
 * reads them once.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "orderexp.h"
#include "catalog.h"

PG_FUNCTION_INFO_V1(orderexp_stream_txid);
PG_FUNCTION_INFO_V1(orderexp_stream_foreign);

/* the last transaction that found the stream its own */
static LocalTransactionId own_lxid = InvalidLocalTransactionId;

/* the uuids read so far (read_origins) */
typedef struct Origins
{
	pg_uuid_t  *uuids;
	int			n;
	int			size;
} Origins;

/* orderexp_scan_own_table's callback: keep the row's origin, if any */
static bool
add_origin(const Datum *values, const bool *isnull, void *arg)
{
	Origins    *o = (Origins *) arg;

	if (isnull[0])
		return true;
	if (o->n == o->size)
	{
		o->size = o->size ? o->size * 2 : 2;
		o->uuids = o->uuids ? repalloc(o->uuids, o->size * sizeof(pg_uuid_t))
			: palloc(o->size * sizeof(pg_uuid_t));
	}
	o->uuids[o->n++] = *DatumGetUUIDP(values[0]);
	return true;
}

/*
 * The uuids in column "origin" of table relname of schema orderexp, under
 * the active snapshot; *n set to how many.  Both tables have a row or two.
 */
static pg_uuid_t *
read_origins(const char *relname, int *n)
{
	static const char *const attnames[] = {"origin"};
	Origins		o = {NULL, 0, 0};

	orderexp_scan_own_table(relname, attnames, 1, NULL, add_origin, &o);
	*n = o.n;
	return o.uuids;
}

/*
 * Is there an origin in orderexp.stream_origins other than the cursor's?
 * A transaction that found none does not look again (a restore cannot
 * happen inside it); one that found some looks every time, so that it
 * sees the stream adopted as soon as it is.
 */
static bool
stream_is_foreign(void)
{
	pg_uuid_t  *own;
	pg_uuid_t  *origins;
	int			nown;
	int			n;
	int			i;

	if (MyProc->lxid == own_lxid && own_lxid != InvalidLocalTransactionId)
		return false;

	own = read_origins("stream_cursor", &nown);
	if (nown != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("orderexp.stream_cursor has %d rows instead of one", nown)));
	origins = read_origins("stream_origins", &n);
	for (i = 0; i < n; i++)
		if (memcmp(&origins[i], own, sizeof(pg_uuid_t)) != 0)
			return true;
	own_lxid = MyProc->lxid;
	return false;
}

/*
 * orderexp._stream_txid() → xid8
 *		The default of orderexp.outbox.txid: the writing transaction's id
 *		while orderexp.batch_delivery is on and the stream is this
 *		database's own, else NULL (the event is a row of its own).
 */
Datum
orderexp_stream_txid(PG_FUNCTION_ARGS)
{
	if (!orderexp_batch_delivery || stream_is_foreign())
		PG_RETURN_NULL();
	PG_RETURN_FULLTRANSACTIONID(GetTopFullTransactionId());
}

/*
 * orderexp._stream_foreign() → boolean
 *		Does the stream hold another cluster's transaction ids (a restored
 *		dump), so that orderexp._stream_adopt() must run before it is used?
 */
Datum
orderexp_stream_foreign(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(stream_is_foreign());
}
