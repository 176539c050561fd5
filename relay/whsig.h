/*-------------------------------------------------------------------------
 *
 * whsig.h
 *		Standard Webhooks headers of orderexp-relay's webhooks:
 *		webhook-id, webhook-timestamp, webhook-signature.
 *
 * whsig_init() once the settings are in; whsig_headers() and
 * whsig_legacy_signature() (X-Orderexp-Signature) for every webhook
 * request.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_WHSIG_H
#define ORDEREXP_RELAY_WHSIG_H

#include <time.h>

#include "common.h"
#include "template.h"

/* longest webhook-id: "msg_", origin (two numbers and a _), "_", event id */
#define WHSIG_ID_LEN	96
/* bytes of an HMAC-SHA256 */
#define WHSIG_MAC_LEN	32
/* X-Orderexp-Signature's value: "sha256=" and 64 hex digits */
#define WHSIG_LEGACY_LEN (7 + 2 * WHSIG_MAC_LEN + 1)

extern void whsig_init(const char *secret, const char *previous);
extern void whsig_message_id(const Event *ev, char *id, size_t idlen);
extern char *whsig_signature(const char *id, time_t timestamp, const char *body);
extern bool whsig_legacy_signature(const char *body, char *out);
extern void whsig_headers(StrBuf *h, const Event *ev, const char *body);

#endif							/* ORDEREXP_RELAY_WHSIG_H */
