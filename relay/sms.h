/*-------------------------------------------------------------------------
 *
 * sms.h
 *		orderexp-relay's SMS sink: a provider's HTTP API, Twilio's built
 *		in, any other through a request template.
 *
 * A delivery is three steps, so that the relay's loop can have many
 * transfers in flight (libcurl's multi interface, sink.c): sms_request()
 * sets up an easy handle for the event (or says why the event can never be
 * sent), the caller performs the transfer, sms_result() says what the
 * transfer's outcome means; sms_request_free() after that.  sms_request() resets the handle first (curl_easy_reset), so
 * a caller sets options of its own (CURLOPT_PRIVATE...) after it; the
 * handle points into the request until the transfer is done.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_SMS_H
#define ORDEREXP_RELAY_SMS_H

#include <curl/curl.h>

#include "common.h"

typedef struct SmsRequest SmsRequest;

extern void sms_check_config(void);
extern bool sms_valid_number(const char *s);
extern int	sms_segments(const char *text, bool *ucs2, int *units);
extern SmsRequest *sms_request(CURL *c, const Event *ev, char *err, size_t errlen);
extern Outcome sms_result(SmsRequest *req, CURL *c, CURLcode rc, char *err, size_t errlen);
extern void sms_request_free(SmsRequest *req);

#endif							/* ORDEREXP_RELAY_SMS_H */
