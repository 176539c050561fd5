/*-------------------------------------------------------------------------
 *
 * easy.h
 *		What every libcurl transfer of orderexp-relay is set up with, and
 *		the fields of an event its requests are made from.
 *
 * The sinks (sink.c) and the SMS requests (sms.c) both build libcurl easy
 * handles from events; this is what they share, below both.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_EASY_H
#define ORDEREXP_RELAY_EASY_H

#include <curl/curl.h>

#include "common.h"

extern const char *event_field(const Event *ev, const char *name);
extern void set_protocols(CURL *c, const char *names, long mask);
extern int	set_cloexec(void *clientp, curl_socket_t fd, curlsocktype purpose);

#endif							/* ORDEREXP_RELAY_EASY_H */
