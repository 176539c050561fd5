/*-------------------------------------------------------------------------
 *
 * whsig.c
 *		Standard Webhooks (www.standardwebhooks.com, spec 1.0.0) headers
 *		of orderexp-relay's webhooks.
 *
 * Every webhook request carries
 *
 *	webhook-id: msg_<origin>_<event id>
 *	webhook-timestamp: <Unix seconds of this attempt>
 *	webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">
 *
 * the signature only when a secret is configured.  The id is the same for
 * every attempt of an event and differs between events of different
 * databases: <origin> is the node's database system identifier (from
 * pg_control_system(), the same on a physical standby, so ids survive a
 * failover) and the database's oid, e.g. msg_7315946232457286345_16384_42.
 * node.c reads both when it connects.  It has no '.', as the spec asks.
 *
 * Secrets are those of the existing X-Orderexp-Signature (the
 * --webhook-secret-file or $ORDEREXP_WEBHOOK_SECRET), plus an optional
 * previous one for rotation (--webhook-previous-secret-file or
 * $ORDEREXP_WEBHOOK_PREVIOUS_SECRET).  A secret written whsec_<base64> is
 * used as the spec says: the key is the base64-decoded part (24 to 64
 * bytes).  Any other secret is used as its bytes (a Standard Webhooks
 * library verifies it as a "raw" secret), so that the secret a receiver
 * has today works for both schemes.  With two secrets the header carries
 * two signatures, space separated, current first: a receiver that knows
 * either verifies.
 *
 * The legacy X-Orderexp-Signature (hex HMAC-SHA256 of the body under the
 * secret's bytes as they are) is here too.  Every key gets one HMAC
 * context, keyed once at the start and restarted for every message
 * (EVP_MAC_init() without a key): OpenSSL's one-shot HMAC() fetched the
 * algorithm and set the key up again for every event, a third of the
 * relay's CPU per webhook with a secret.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "common.h"
#include "template.h"
#include "whsig.h"

#define MAX_KEY		512

typedef struct Key
{
	unsigned char data[MAX_KEY];
	size_t		len;
	EVP_MAC_CTX *mac;			/* HMAC-SHA256 keyed with it */
} Key;

static Key	keys[2];
static int	nkeys = 0;
static Key	legacy_key;			/* X-Orderexp-Signature's: the secret's bytes */
static bool	legacy = false;

static bool base64_decode(const char *s, unsigned char *out, size_t outcap, size_t *outlen);
static void parse_secret(const char *what, const char *secret, Key *k);
static void key_mac(Key *k);
static void mac_of(Key *k, const char *a, size_t alen, const char *b, size_t blen,
				   unsigned char *mac);

/* standard base64 with padding, as Standard Webhooks writes whsec_ keys */
static bool
base64_decode(const char *s, unsigned char *out, size_t outcap, size_t *outlen)
{
	size_t		n = strlen(s),
				i,
				o = 0;
	unsigned	acc = 0;
	int			bits = 0,
				pad = 0;

	if (n == 0 || n % 4 != 0)
		return false;
	for (i = 0; i < n; i++)
	{
		const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		const char *pos;

		if (s[i] == '=')
		{
			/* padding only at the end, at most two */
			if (i < n - 2 || (i == n - 2 && s[n - 1] != '='))
				return false;
			pad++;
			continue;
		}
		if ((pos = strchr(alpha, s[i])) == NULL || s[i] == '\0')
			return false;
		acc = (acc << 6) | (unsigned) (pos - alpha);
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (o == outcap)
				return false;
			out[o++] = (unsigned char) (acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	(void) pad;
	*outlen = o;
	return true;
}

/* the HMAC key of a configured secret; a bad whsec_ secret is a usage error */
static void
parse_secret(const char *what, const char *secret, Key *k)
{
	if (strncmp(secret, "whsec_", 6) == 0)
	{
		if (!base64_decode(secret + 6, k->data, sizeof(k->data), &k->len))
			fatal(EXIT_USAGE, "invalid %s: whsec_ must be followed by base64", what);
		if (k->len < 24 || k->len > 64)
			fatal(EXIT_USAGE, "invalid %s: a whsec_ key must have 24 to 64 bytes, this one has %zu",
				  what, k->len);
	}
	else
	{
		k->len = strlen(secret);
		if (k->len > sizeof(k->data))
			fatal(EXIT_USAGE, "invalid %s: longer than %d bytes", what, MAX_KEY);
		memcpy(k->data, secret, k->len);
	}
}

/* K's HMAC-SHA256 context, keyed with K's bytes */
static void
key_mac(Key *k)
{
	static EVP_MAC *hmac = NULL;
	OSSL_PARAM	params[2];

	if (hmac == NULL && (hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		fatal(EXIT_INTERNAL, "HMAC is not available in libcrypto");
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((k->mac = EVP_MAC_CTX_new(hmac)) == NULL ||
		!EVP_MAC_init(k->mac, k->data, k->len, params))
		fatal(EXIT_INTERNAL, "HMAC-SHA256 could not be set up");
}

/* MAC (32 bytes) = HMAC-SHA256 of A then B under K */
static void
mac_of(Key *k, const char *a, size_t alen, const char *b, size_t blen, unsigned char *mac)
{
	size_t		maclen = 0;

	if (!EVP_MAC_init(k->mac, NULL, 0, NULL) ||
		!EVP_MAC_update(k->mac, (const unsigned char *) a, alen) ||
		!EVP_MAC_update(k->mac, (const unsigned char *) b, blen) ||
		!EVP_MAC_final(k->mac, mac, &maclen, WHSIG_MAC_LEN) ||
		maclen != WHSIG_MAC_LEN)
		fatal(EXIT_INTERNAL, "HMAC-SHA256 failed");
}

/*
 * The signing keys: the current secret, then the previous one; NULL: none.
 * The current one, as it is, is also the key of X-Orderexp-Signature.
 */
void
whsig_init(const char *secret, const char *previous)
{
	int			k;

	nkeys = 0;
	legacy = false;
	if (previous != NULL && secret == NULL)
		fatal(EXIT_USAGE, "a previous webhook secret needs the current one (--webhook-secret-file)");
	if (secret != NULL)
		parse_secret("webhook secret", secret, &keys[nkeys++]);
	if (previous != NULL)
		parse_secret("previous webhook secret", previous, &keys[nkeys++]);
	for (k = 0; k < nkeys; k++)
		key_mac(&keys[k]);
	if (secret != NULL)
	{
		legacy_key.len = strlen(secret);
		if (legacy_key.len > sizeof(legacy_key.data))
			fatal(EXIT_USAGE, "invalid webhook secret: longer than %d bytes", MAX_KEY);
		memcpy(legacy_key.data, secret, legacy_key.len);
		key_mac(&legacy_key);
		legacy = true;
	}
}

/*
 * X-Orderexp-Signature's value for BODY: "sha256=" and the hex HMAC-SHA256
 * of BODY under the secret's bytes; false without a secret
 */
bool
whsig_legacy_signature(const char *body, char *out)
{
	static const char hexdigits[] = "0123456789abcdef";
	unsigned char mac[WHSIG_MAC_LEN];
	int			i;

	if (!legacy)
		return false;
	mac_of(&legacy_key, "", 0, body, strlen(body), mac);
	memcpy(out, "sha256=", 7);
	for (i = 0; i < WHSIG_MAC_LEN; i++)
	{
		out[7 + 2 * i] = hexdigits[mac[i] >> 4];
		out[7 + 2 * i + 1] = hexdigits[mac[i] & 15];
	}
	out[7 + 2 * WHSIG_MAC_LEN] = '\0';
	return true;
}

/* the event's webhook-id: msg_ORIGIN_ID (msg_ID when the origin is unknown) */
void
whsig_message_id(const Event *ev, char *id, size_t idlen)
{
	if (ev->origin != NULL && ev->origin[0] != '\0')
		snprintf(id, idlen, "msg_%s_%lld", ev->origin, ev->id);
	else
		snprintf(id, idlen, "msg_%lld", ev->id);
}

/*
 * The webhook-signature value of BODY sent as ID at TIMESTAMP: "v1,BASE64"
 * per key, space separated; a malloc'd string, NULL without a secret.
 */
char *
whsig_signature(const char *id, time_t timestamp, const char *body)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	StrBuf		out = {0};
	char		prefix[WHSIG_ID_LEN + 32];
	int			plen;
	size_t		blen = strlen(body);
	int			k;

	if (nkeys == 0)
		return NULL;
	/* what is signed: "id.timestamp.body" */
	plen = snprintf(prefix, sizeof(prefix), "%s.%lld.", id, (long long) timestamp);
	sb_append(&out, "", 0);
	for (k = 0; k < nkeys; k++)
	{
		unsigned char mac[WHSIG_MAC_LEN];
		size_t		maclen = WHSIG_MAC_LEN;
		size_t		i;

		mac_of(&keys[k], prefix, plen, body, blen, mac);
		sb_puts(&out, k ? " v1," : "v1,");
		for (i = 0; i < maclen; i += 3)
		{
			unsigned	v = mac[i] << 16 | (i + 1 < maclen ? mac[i + 1] << 8 : 0) |
				(i + 2 < maclen ? mac[i + 2] : 0);
			char		q[4];

			q[0] = b64[(v >> 18) & 63];
			q[1] = b64[(v >> 12) & 63];
			q[2] = i + 1 < maclen ? b64[(v >> 6) & 63] : '=';
			q[3] = i + 2 < maclen ? b64[v & 63] : '=';
			sb_append(&out, q, 4);
		}
	}
	return out.data;
}

/*
 * The Standard Webhooks header lines of EV's request with BODY, each ending
 * in CRLF, appended to H
 */
void
whsig_headers(StrBuf *h, const Event *ev, const char *body)
{
	char		id[WHSIG_ID_LEN];
	char		line[WHSIG_ID_LEN + 64];
	time_t		now = time(NULL);
	char	   *sig;

	whsig_message_id(ev, id, sizeof(id));
	snprintf(line, sizeof(line), "webhook-id: %s\r\nwebhook-timestamp: %lld\r\n",
			 id, (long long) now);
	sb_puts(h, line);
	if ((sig = whsig_signature(id, now, body)) != NULL)
	{
		sb_puts(h, "webhook-signature: ");
		sb_puts(h, sig);
		sb_append(h, "\r\n", 2);
		free(sig);
	}
}
