/*-------------------------------------------------------------------------
 *
 * sink.h
 *		Where orderexp-relay delivers events: stdout, a command, a webhook,
 *		an SMTP server, an SMS provider (sms.c); many deliveries at once.
 *
 * sinks_init() after the settings are in, sinks_cleanup() at the end.  A
 * delivery is a Transfer: sink_start() builds it (the libcurl handle with
 * URL, headers, body and login, or the command's process and pipes) and
 * starts it; sink_wait() waits for any transfer, the caller's descriptors or
 * the time-out, and moves the transfers forward; sink_finished() hands out
 * the transfers that ended, and sink_done() says what the outcome means
 * (delivered, retry, permanent failure, slow down) and frees the transfer.
 * Building a request and reading its answer are separate functions per
 * sink (start_webhook() and webhook_result() in sink.c, sms_request() and
 * sms_result() in sms.c...), so that a sink is added by writing those two.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_SINK_H
#define ORDEREXP_RELAY_SINK_H

#include <poll.h>

#include <curl/curl.h>

#include "common.h"
#include "config.h"

typedef struct SinkResult
{
	Outcome		outcome;
	double		retry_after;	/* OUTCOME_THROTTLED: seconds to pause */
	double		seconds;		/* how long the delivery took */
	char		err[1024];		/* one line, when not delivered */
} SinkResult;

/* one delivery in flight (opaque) */
typedef struct Transfer Transfer;

extern void sinks_init(void);
extern void sinks_cleanup(void);

/*
 * Start delivering EV through sink TYPE; it must end by DEADLINE
 * (now_seconds() time; the HTTP or SMTP exchange is given up, the command
 * killed).  OWNER is the caller's, given back by sink_owner().  Never NULL:
 * a delivery that cannot even start is a transfer that has ended already.
 * The event is not needed any more once sink_start() returns.
 */
extern Transfer *sink_start(SinkType type, const Event *ev, double deadline, void *owner);

/*
 * Wait until a transfer can move on, one of the caller's descriptors EXTRA
 * is ready (their revents are set) or UNTIL (now_seconds() time) comes,
 * then move every transfer on.
 */
extern void sink_wait(struct pollfd *extra, int nextra, double until);

/* a transfer that has ended, NULL when there is none (yet) */
extern Transfer *sink_finished(void);
extern void *sink_owner(const Transfer *t);
extern SinkType sink_type(const Transfer *t);

/* what the ended transfer T's outcome means; frees T */
extern void sink_done(Transfer *t, SinkResult *res);

/* deliveries in flight, of one sink or (SINK_NTYPES) all */
extern int	sink_running(SinkType type);

/* for sms.c */

#endif							/* ORDEREXP_RELAY_SINK_H */
