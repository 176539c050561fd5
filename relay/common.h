/*-------------------------------------------------------------------------
 *
 * common.h
 *		What every part of orderexp-relay needs: the version, the exit
 *		codes, the log, allocation that cannot fail, the clock, and the
 *		event the parts hand each other.
 *
 * The relay's files, each on top of the ones before it:
 *
 * common.c		log (text or JSON lines), fatal errors, allocation, the clock
 * config.c		command-line options, the config file, routes, templates
 * files.c		whole files and secret files
 * template.c	{name} templates, JSON and form escaping
 * whsig.c		Standard Webhooks headers and signatures
 * http.c		the HTTP/1.1 client of webhooks to http:// URLs
 * sms.c		the SMS sink: Twilio or a templated HTTP request (libcurl)
 * sink.c		the sinks: stdout, exec, webhook (http.c or libcurl), smtp
 *				(libcurl), sms;
 *				many transfers at once
 * metrics.c	Prometheus metrics and /healthz (libmicrohttpd), sd_notify
 * window.c		per sink: deliveries in flight, rate limit; the leases
 * node.c		a node's connection and its statements: claim, ack, fail
 * relay.c		the event loop: signals, which node claims, one wait
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_COMMON_H
#define ORDEREXP_RELAY_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#define RELAY_VERSION "1.1"

/* exit codes (documented in --help and README.md) */
#define EXIT_OK				0	/* stopped by SIGTERM/SIGINT, or --once done */
#define EXIT_USAGE			1	/* bad option or config file */
#define EXIT_CONNECT		2	/* no node reachable at start */
#define EXIT_SERVER			3	/* a server refuses the API: extension,
								 * function or privilege missing */
#define EXIT_INTERNAL		4	/* out of memory, libcurl set-up, fork... */
#define EXIT_UNDELIVERED	5	/* --once: some events were not delivered */

/* one field of an event's payload, for templates and the recipient */
typedef struct Field
{
	char	   *key;			/* "close_at", or "order.email" for a payload
								 * column of the user's table */
	char	   *value;			/* text (strings unquoted), NULL for null */
} Field;

/* one claimed outbox row */
typedef struct Event
{
	long long	id;
	int			attempts;		/* counted by claim(): 1 the first time */
	char	   *kind;
	char	   *channel;
	char	   *table;
	char	   *order_key;
	char	   *json;			/* the event as one JSON object */
	const char *origin;			/* its database: "SYSID_DBOID" (node.c), for
								 * webhook-id */
	Field	   *fields;
	int			nfields;
} Event;

/* how log lines look (--log-format) */
typedef enum LogFormat
{
	LOG_FORMAT_TEXT,			/* "2026-01-31 12:00:00.123 UTC orderexp-relay[42]: ..." */
	LOG_FORMAT_JSON				/* one JSON object a line */
} LogFormat;

typedef enum LogLevel
{
	LOG_INFO,
	LOG_WARNING,
	LOG_ERROR					/* the relay stops (fatal) */
} LogLevel;

extern LogFormat log_format;

extern void logmsg(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void lognode(LogLevel level, int node, long long event_id, const char *sink,
					const char *fmt,...) __attribute__((format(printf, 5, 6)));
extern void fatal(int code, const char *fmt,...)
			__attribute__((format(printf, 2, 3), noreturn));
extern void *xmalloc(size_t size);
extern char *xstrdup(const char *s);
extern double now_seconds(void);

/* what a delivery's outcome means for the event */
typedef enum Outcome
{
	OUTCOME_DELIVERED,			/* the receiver took it: ack */
	OUTCOME_RETRY,				/* failed; orderexp.fail() schedules a retry */
	OUTCOME_PERMANENT,			/* can never be delivered: fail for good */
	OUTCOME_THROTTLED			/* the receiver asks us to slow down (HTTP
								 * 429): it did not take the event; pause the
								 * sink for retry_after seconds */
} Outcome;

#endif							/* ORDEREXP_RELAY_COMMON_H */
