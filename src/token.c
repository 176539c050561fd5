/*-------------------------------------------------------------------------
 *
 * token.c
 *		Signed extension tokens.
 *
 * A reminder carries a token that lets the customer extend the order once.
 * The token names the order (table OID and key), the generation of its
 * timer, its current deadline and its extension count, signed with
 * HMAC-SHA256 under a per-database secret that only the extension owner can
 * read (table orderexp.secret).  Because the deadline and the count change
 * with every extension, a token works once; because it names the deadline,
 * it is worthless after it; because every new start of tracking draws a new
 * generation, it does not come back to life when an order is paid and set
 * back to unpaid.
 *
 * Layout before base64url encoding (no padding), all integers big-endian:
 *
 *		1 byte	version (1)
 *		4		table's token id (its OID when it was registered)
 *		8		timer generation
 *		8		deadline, microseconds since the PostgreSQL epoch
 *		4		extension count
 *		n		order key, canonical text of the key type
 *		32		HMAC-SHA256 of everything above
 *
 * Only the canonical spelling of a token is accepted: base64url leaves
 * unused low bits in its last character, and a token that differs from the
 * one we made in those bits is as foreign as any other.
 *
 * The functions that read the secret or write on behalf of a customer are
 * kept from PUBLIC; callers reach them through the gates of
 * extension_token() and extend_order_by_token() (gate.c), which check the
 * caller's own privilege on the orders table first (UPDATE, the privilege a
 * payment needs) and then call them as the extension owner.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "orderexp.h"
#include "catalog.h"
#include "token.h"

PG_FUNCTION_INFO_V1(orderexp_new_secret);
PG_FUNCTION_INFO_V1(orderexp_token_make);
PG_FUNCTION_INFO_V1(orderexp_token_open);

#define TOKEN_VERSION		1
#define TOKEN_HEADER_LEN	(1 + 4 + 8 + 8 + 4)
#define TOKEN_MAC_LEN		PG_SHA256_DIGEST_LENGTH
#define TOKEN_MAX_KEY_LEN	1024
#define SECRET_LEN			32

/* what a token says */
typedef struct TokenClaims
{
	Oid			relid;
	int64		generation;
	TimestampTz close_at;
	int32		extensions;
	char	   *key;
} TokenClaims;

static bytea *read_secret(void);
static void token_mac(const uint8 *data, size_t len, uint8 *mac);
static char *base64url_encode(const uint8 *data, int len);
static int base64url_decode(const char *text, uint8 **result);
static void token_parse(const char *text, TokenClaims *claims, uint8 **raw,
						int *rawlen);
static Oid token_id_map(const char *sql, Oid from, Oid unmapped);
static Oid token_id_of_table(Oid relid);
static Oid token_table_of_id(Oid token_relid);

/*
 * orderexp._new_secret() returns bytea
 *		32 bytes from the operating system's strong random source.
 */
Datum
orderexp_new_secret(PG_FUNCTION_ARGS)
{
	bytea	   *result = palloc(VARHDRSZ + SECRET_LEN);

	SET_VARSIZE(result, VARHDRSZ + SECRET_LEN);
	if (!pg_strong_random(VARDATA(result), SECRET_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random secret")));
	PG_RETURN_BYTEA_P(result);
}

/* the database's token secret; the caller must be allowed to read it */
static bytea *
read_secret(void)
{
	MemoryContext callercxt = CurrentMemoryContext;
	bytea	   *secret;
	Datum		value;
	bool		isnull;
	int			ret;

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute("SELECT secret FROM orderexp.secret", true, 2);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the token secret failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orderexp has no token secret in this database"),
				 errhint("Run SELECT orderexp.rotate_secret() as the extension owner.")));
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "the token secret is null");

	/* SPI_finish frees what was allocated since SPI_connect: copy out */
	MemoryContextSwitchTo(callercxt);
	secret = DatumGetByteaPCopy(value);
	SPI_finish();
	return secret;
}

/* HMAC-SHA256 of data under the database's secret */
static void
token_mac(const uint8 *data, size_t len, uint8 *mac)
{
	bytea	   *secret = read_secret();
	const uint8 *key = (const uint8 *) VARDATA_ANY(secret);
	size_t		keylen = VARSIZE_ANY_EXHDR(secret);

	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL ||
		pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, data, len) < 0 ||
		pg_hmac_final(ctx, mac, TOKEN_MAC_LEN) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute the token signature");
	}
	pg_hmac_free(ctx);
	pfree(secret);
}

/* base64url without padding, so that a token goes into a URL as it is */
static char *
base64url_encode(const uint8 *data, int len)
{
	int			enclen = pg_b64_enc_len(len);
	char	   *out = palloc(enclen + 1);
	int			n;
	int			i;

	n = pg_b64_encode((const char *) data, len, out, enclen);
	if (n < 0)
		elog(ERROR, "base64 encoding failed");
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

/* decode base64url; returns the length, or -1 if it is not base64url */
static int
base64url_decode(const char *text, uint8 **result)
{
	int			len = strlen(text);
	int			padded = len + (4 - len % 4) % 4;
	char	   *buf;
	uint8	   *out;
	int			i;
	int			n;

	if (len == 0 || len % 4 == 1 || len > 4 * (TOKEN_HEADER_LEN + TOKEN_MAX_KEY_LEN + TOKEN_MAC_LEN))
		return -1;
	buf = palloc(padded + 1);
	for (i = 0; i < len; i++)
	{
		char		c = text[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return -1;
		buf[i] = c;
	}
	for (; i < padded; i++)
		buf[i] = '=';
	buf[padded] = '\0';

	out = palloc(pg_b64_dec_len(padded) + 1);
	n = pg_b64_decode(buf, padded, (char *) out, pg_b64_dec_len(padded));
	pfree(buf);
	if (n < 0)
		return -1;
	*result = out;
	return n;
}

/* an "invalid extension token" error with the given detail */
void
orderexp_invalid_token(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid extension token"),
			 errdetail_internal("%s", detail),
			 errhint("Use the link from the latest reminder as it is.")));
}

/*
 * Parse a token's structure, without checking its signature.  Any damage
 * to the text is an "invalid extension token" error.
 */
static void
token_parse(const char *text, TokenClaims *claims, uint8 **raw, int *rawlen)
{
	uint8	   *data;
	int			len = base64url_decode(text, &data);
	int			keylen;
	uint32		u32;
	uint64		u64;

	if (len < TOKEN_HEADER_LEN + 1 + TOKEN_MAC_LEN)
		orderexp_invalid_token("The token is malformed or truncated.");
	if (strcmp(base64url_encode(data, len), text) != 0)
		orderexp_invalid_token("The token is not spelled as it was made.");
	if (data[0] != TOKEN_VERSION)
		orderexp_invalid_token("The token has an unknown version.");

	memcpy(&u32, data + 1, 4);
	claims->relid = (Oid) pg_ntoh32(u32);
	memcpy(&u64, data + 5, 8);
	claims->generation = (int64) pg_ntoh64(u64);
	memcpy(&u64, data + 13, 8);
	claims->close_at = (TimestampTz) pg_ntoh64(u64);
	memcpy(&u32, data + 21, 4);
	claims->extensions = (int32) pg_ntoh32(u32);

	keylen = len - TOKEN_HEADER_LEN - TOKEN_MAC_LEN;
	claims->key = palloc(keylen + 1);
	memcpy(claims->key, data + TOKEN_HEADER_LEN, keylen);
	claims->key[keylen] = '\0';
	if (strlen(claims->key) != (size_t) keylen)
		orderexp_invalid_token("The token is malformed.");

	*raw = data;
	*rawlen = len;
}

/*
 * Check that a text is spelled as a token of ours, without its signature:
 * the gate of extend_order_by_token() refuses a damaged token before it
 * looks at tables and privileges.
 */
void
orderexp_token_check_form(const char *token)
{
	TokenClaims claims;
	uint8	   *raw;
	int			rawlen;

	token_parse(token, &claims, &raw, &rawlen);
}

/*
 * The tables' token ids.  A token names its table by an id that stays when
 * the database is dumped and restored, unlike the table's OID: the row of
 * orderexp.token_tables that maps it to the table is restored with the
 * data.  The id is the table's OID when it was registered (so tokens made
 * by orderexp 1.0, which carry that OID, keep working).  A database still at
 * 1.0, which has no orderexp.token_tables, uses the OID itself.  Returns
 * what sql finds for "from", else "unmapped".
 */
static Oid
token_id_map(const char *sql, Oid from, Oid unmapped)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	Oid			result = unmapped;
	int			ret;

	if (!orderexp_catalog()->has_token_tables)
		return from;
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	values[0] = ObjectIdGetDatum(from);
	ret = SPI_execute_with_args(sql, 1, argtypes, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the token ids failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = DatumGetObjectId(d);
	}
	SPI_finish();
	return result;
}

/* the id tokens of a table carry */
static Oid
token_id_of_table(Oid relid)
{
	return token_id_map("SELECT t.token_relid FROM orderexp.token_tables t "
						"WHERE t.order_table OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
						relid, relid);
}

/* the table a token's id stands for; InvalidOid if none does any more */
static Oid
token_table_of_id(Oid token_relid)
{
	return token_id_map("SELECT t.order_table::pg_catalog.oid FROM orderexp.token_tables t "
						"WHERE t.token_relid OPERATOR(pg_catalog.=) $1",
						token_relid, InvalidOid);
}

/*
 * orderexp._token_make(orders regclass, order_key text, close_at timestamptz,
 *						extensions int, generation bigint) returns text
 *		Sign a token.  Reads the secret: kept from PUBLIC.
 */
Datum
orderexp_token_make(PG_FUNCTION_ARGS)
{
	Oid			relid;
	text	   *key;
	TimestampTz close_at;
	int32		extensions;
	int64		generation;
	int			keylen;
	int			len;
	uint8	   *data;
	uint32		u32;
	uint64		u64;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) ||
		PG_ARGISNULL(4))
		PG_RETURN_NULL();
	relid = token_id_of_table(PG_GETARG_OID(0));
	key = PG_GETARG_TEXT_PP(1);
	close_at = PG_GETARG_TIMESTAMPTZ(2);
	extensions = PG_GETARG_INT32(3);
	generation = PG_GETARG_INT64(4);

	keylen = VARSIZE_ANY_EXHDR(key);
	if (keylen == 0 || keylen > TOKEN_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("order key is too long for an extension token"),
				 errdetail("The key has %d bytes; at most %d fit.", keylen, TOKEN_MAX_KEY_LEN)));

	len = TOKEN_HEADER_LEN + keylen + TOKEN_MAC_LEN;
	data = palloc(len);
	data[0] = TOKEN_VERSION;
	u32 = pg_hton32((uint32) relid);
	memcpy(data + 1, &u32, 4);
	u64 = pg_hton64((uint64) generation);
	memcpy(data + 5, &u64, 8);
	u64 = pg_hton64((uint64) close_at);
	memcpy(data + 13, &u64, 8);
	u32 = pg_hton32((uint32) extensions);
	memcpy(data + 21, &u32, 4);
	memcpy(data + TOKEN_HEADER_LEN, VARDATA_ANY(key), keylen);

	token_mac(data, TOKEN_HEADER_LEN + keylen, data + TOKEN_HEADER_LEN + keylen);

	PG_RETURN_TEXT_P(cstring_to_text(base64url_encode(data, len)));
}

/*
 * orderexp._token_open(token text) returns (order_table regclass,
 *		order_key text, close_at timestamptz, extensions int, generation bigint)
 *		Check a token's signature and say what it claims.  Reads the secret:
 *		kept from PUBLIC.
 */
Datum
orderexp_token_open(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	TokenClaims claims;
	uint8	   *raw;
	int			rawlen;
	uint8		mac[TOKEN_MAC_LEN];
	uint8		diff = 0;
	int			i;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("extension token must not be null")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	token_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)), &claims, &raw, &rawlen);

	/* compare in constant time: no early exit on the first wrong byte */
	token_mac(raw, rawlen - TOKEN_MAC_LEN, mac);
	for (i = 0; i < TOKEN_MAC_LEN; i++)
		diff |= mac[i] ^ raw[rawlen - TOKEN_MAC_LEN + i];
	if (diff != 0)
		orderexp_invalid_token("The token's signature does not match: it was altered, "
					  "made for another database, or made before the secret was rotated.");

	values[0] = ObjectIdGetDatum(token_table_of_id(claims.relid));
	values[1] = CStringGetTextDatum(claims.key);
	values[2] = TimestampTzGetDatum(claims.close_at);
	values[3] = Int32GetDatum(claims.extensions);
	values[4] = Int64GetDatum(claims.generation);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
