/*-------------------------------------------------------------------------
 *
 * sink.h
 *		Where orderexp-relay delivers events: stdout, a command, a webhook,
 *		an SMTP server, an SMS provider.
 *
 * sinks_init() after the settings are in, sink_deliver() for every event,
 * sinks_cleanup() at the end.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_SINK_H
#define ORDEREXP_RELAY_SINK_H

#include <curl/curl.h>

#include "common.h"
#include "config.h"

/* what became of a delivery */
typedef enum Outcome
{
	OUTCOME_DELIVERED,
	OUTCOME_RETRY,				/* failed; orderexp.fail() schedules a retry */
	OUTCOME_PERMANENT			/* can never be delivered: fail for good */
} Outcome;

extern void sinks_init(void);
extern void sinks_cleanup(void);
extern Outcome sink_deliver(SinkType type, const Event *ev, char *err, size_t errlen);
extern const char *event_field(const Event *ev, const char *name);
extern void set_protocols(CURL *c, const char *names, long mask);
extern int	set_cloexec(void *clientp, curl_socket_t fd, curlsocktype purpose);

#endif							/* ORDEREXP_RELAY_SINK_H */
