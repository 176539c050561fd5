/*-------------------------------------------------------------------------
 *
 * payload.c
 *		Building the payload of a 'closed' event.
 *
 * The sweep writes one event per closed order and channel, so the payload
 * is built once per row of a drain.  jsonb_build_object() works out the
 * JSON category of every argument's type on every call, which made it a
 * sixth of the cost of closing an order.  With the keys and their types
 * known here, the object is written in jsonb's binary form directly (see
 * utils/jsonb.h): the keys in jsonb's order (shorter first, then bytewise),
 * which is fixed, and the order's columns, a jsonb object already, copied
 * as they are instead of being unpacked into values and packed again.
 * That is 2,500 instructions a payload instead of 12,500
 * (bench/instructions.md).  Values the fast path does not expect (the
 * columns not a container) take the general one, through pushJsonbValue().
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "orderexp.h"

PG_FUNCTION_INFO_V1(orderexp_closed_payload);
static void push_key(JsonbParseState **state, const char *key);
static void push_null(JsonbParseState **state);
static void push_text(JsonbParseState **state, const char *key, text *value);

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
}

static void
push_null(JsonbParseState **state)
{
	JsonbValue	v;

	v.type = jbvNull;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_text(JsonbParseState **state, const char *key, text *value)
{
	JsonbValue	v;

	push_key(state, key);
	if (value == NULL)
	{
		push_null(state);
		return;
	}
	v.type = jbvString;
	v.val.string.val = VARDATA_ANY(value);
	v.val.string.len = VARSIZE_ANY_EXHDR(value);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* one value of the payload being written: its JEntry type and its bytes */
typedef struct PayloadValue
{
	uint32		type;			/* JENTRY_IS... */
	const char *data;
	int			len;
	bool		align;			/* numerics and containers start int-aligned */
} PayloadValue;

/*
 * The keys of a closed event's payload in the order jsonb stores an
 * object's keys (lengthCompareJsonbStringValue: by length, then by bytes);
 * closed_payload_direct writes the values in this order too.
 */
#define PAYLOAD_NKEYS 7
static const char *const payload_keys[PAYLOAD_NKEYS] = {
	"order", "reason", "category", "close_at", "order_key", "policy_id", "order_table"
};

static void
set_text(PayloadValue *v, text *t)
{
	v->align = false;
	if (t == NULL)
	{
		v->type = JENTRY_ISNULL;
		v->data = NULL;
		v->len = 0;
		return;
	}
	v->type = JENTRY_ISSTRING;
	v->data = VARDATA_ANY(t);
	v->len = VARSIZE_ANY_EXHDR(t);
}

/*
 * closed_payload_direct
 *		The payload as convertToJsonb() would lay out what the pushes of the
 *		general path make: the object's header, its 14 JEntries (the first
 *		one, as every JB_OFFSET_STRIDE'th, an end offset, the others
 *		lengths), the keys' bytes, then the values' bytes, a numeric or a
 *		container padded to a 4-byte boundary counted from the start of the
 *		varlena (a padding that belongs to its value's length).  Returns
 *		NULL if the columns are not a container.
 */
static Jsonb *
closed_payload_direct(PayloadValue *values)
{
	int			data_start = VARHDRSZ + sizeof(uint32) + 2 * PAYLOAD_NKEYS * sizeof(JEntry);
	int			total = data_start;
	int			padding[PAYLOAD_NKEYS];
	Jsonb	   *result;
	JEntry	   *entries;
	char	   *out;
	uint32		totallen = 0;
	int			i;

	for (i = 0; i < PAYLOAD_NKEYS; i++)
		total += strlen(payload_keys[i]);
	for (i = 0; i < PAYLOAD_NKEYS; i++)
	{
		padding[i] = values[i].align ? INTALIGN(total) - total : 0;
		total += padding[i] + values[i].len;
	}
	if (total - data_start > JENTRY_OFFLENMASK)
		return NULL;			/* the general path reports it */

	result = (Jsonb *) palloc0(total);
	SET_VARSIZE(result, total);
	result->root.header = PAYLOAD_NKEYS | JB_FOBJECT;
	entries = result->root.children;
	out = (char *) result + data_start;

	for (i = 0; i < PAYLOAD_NKEYS; i++)
	{
		int			len = strlen(payload_keys[i]);

		memcpy(out, payload_keys[i], len);
		out += len;
		totallen += len;
		entries[i] = JENTRY_ISSTRING | (i % JB_OFFSET_STRIDE == 0 ? (totallen | JENTRY_HAS_OFF) : (uint32) len);
	}
	for (i = 0; i < PAYLOAD_NKEYS; i++)
	{
		int			len = padding[i] + values[i].len;

		out += padding[i];		/* palloc0: the padding is zeros */
		if (values[i].len > 0)
			memcpy(out, values[i].data, values[i].len);
		out += values[i].len;
		totallen += len;
		entries[PAYLOAD_NKEYS + i] = values[i].type |
			((PAYLOAD_NKEYS + i) % JB_OFFSET_STRIDE == 0 ? (totallen | JENTRY_HAS_OFF) : (uint32) len);
	}
	Assert(out == (char *) result + total);
	return result;
}

/*
 * orderexp._closed_payload(order_table text, order_key text,
 *							close_at timestamptz, policy_id int,
 *							category text, cols jsonb) returns jsonb
 *		{"order_table", "order_key", "close_at", "policy_id", "category",
 *		 "reason": "timeout", "order": cols}, as jsonb_build_object() would
 *		make it.
 */
Datum
orderexp_closed_payload(PG_FUNCTION_ARGS)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	JsonbValue	v;
	char		buf[MAXDATELEN + 1];
	Jsonb	   *cols = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);

	/* the usual case: the order's columns are an object (or an array) */
	if (cols == NULL || !JB_ROOT_IS_SCALAR(cols))
	{
		PayloadValue values[PAYLOAD_NKEYS];
		Numeric		policy = NULL;
		Jsonb	   *direct;

		/* "order" */
		values[0].align = true;
		values[0].type = cols ? JENTRY_ISCONTAINER : JENTRY_ISNULL;
		values[0].data = cols ? (const char *) &cols->root : NULL;
		values[0].len = cols ? VARSIZE(cols) - VARHDRSZ : 0;
		/* "reason" */
		values[1].align = false;
		values[1].type = JENTRY_ISSTRING;
		values[1].data = "timeout";
		values[1].len = strlen("timeout");
		set_text(&values[2], PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));
		/* "close_at", as to_json() writes a timestamptz */
		set_text(&values[3], NULL);
		if (!PG_ARGISNULL(2))
		{
			JsonEncodeDateTime(buf, PG_GETARG_DATUM(2), TIMESTAMPTZOID, NULL);
			values[3].type = JENTRY_ISSTRING;
			values[3].data = buf;
			values[3].len = strlen(buf);
		}
		set_text(&values[4], PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
		/* "policy_id" */
		set_text(&values[5], NULL);
		if (!PG_ARGISNULL(3))
		{
			policy = int64_to_numeric(PG_GETARG_INT32(3));
			values[5].type = JENTRY_ISNUMERIC;
			values[5].data = (const char *) policy;
			values[5].len = VARSIZE_ANY(policy);
			values[5].align = true;
		}
		set_text(&values[6], PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));

		direct = closed_payload_direct(values);
		if (direct != NULL)
			PG_RETURN_JSONB_P(direct);
	}

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);

	push_text(&state, "order_table", PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	push_text(&state, "order_key", PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));

	push_key(&state, "close_at");
	if (PG_ARGISNULL(2))
		push_null(&state);
	else
	{
		JsonEncodeDateTime(buf, PG_GETARG_DATUM(2), TIMESTAMPTZOID, NULL);
		v.type = jbvString;
		v.val.string.val = buf;
		v.val.string.len = strlen(buf);
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}

	push_key(&state, "policy_id");
	if (PG_ARGISNULL(3))
		push_null(&state);
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(PG_GETARG_INT32(3));
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}

	push_text(&state, "category", PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));
	push_text(&state, "reason", cstring_to_text("timeout"));

	push_key(&state, "order");
	if (cols == NULL)
		push_null(&state);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &cols->root;
		v.val.binary.len = VARSIZE(cols) - VARHDRSZ;
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}

	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
