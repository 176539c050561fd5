/*-------------------------------------------------------------------------
 *
 * relay.h
 *		Shared declarations of orderexp-relay, the program that delivers
 *		orderexp's outbox events (e-mail, webhooks, commands, stdout).
 *
 * relay.c		main loop: nodes, LISTEN, claim / deliver / ack / fail, signals
 * config.c		command-line options, the config file, routes, templates
 * sink.c		the sinks: stdout, exec, webhook (libcurl), smtp (libcurl)
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_H
#define ORDEREXP_RELAY_H

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

#define MAX_NODES		32
#define MAX_ROUTES		64
#define MAX_MATCH		16

typedef enum SinkType
{
	SINK_STDOUT,
	SINK_EXEC,
	SINK_WEBHOOK,
	SINK_SMTP,
	SINK_NTYPES
} SinkType;

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
	char	   *kind;
	char	   *channel;
	char	   *table;
	char	   *order_key;
	char	   *json;			/* the event as one JSON object */
	Field	   *fields;
	int			nfields;
} Event;

/* a route: kind and channel sets (empty = any) and the sink they go to */
typedef struct Route
{
	char	   *kinds[MAX_MATCH];
	int			nkinds;
	char	   *channels[MAX_MATCH];
	int			nchannels;
	SinkType	sink;
	char	   *text;			/* as written, for messages */
} Route;

/* subject and body template of one kind ("*": every other kind) */
typedef struct Template
{
	char	   *kind;
	char	   *subject;
	char	   *body;
} Template;

typedef struct Config
{
	char	   *conninfo[MAX_NODES];
	int			nnodes;

	bool		sink_on[SINK_NTYPES];
	char	   *exec_command;
	char	   *webhook_url;
	char	   *webhook_secret;	/* from --webhook-secret-file or env */
	char	   *smtp_url;
	char	   *smtp_from;
	char	   *smtp_user;
	char	   *smtp_password;	/* from --smtp-password-file or env */
	char	   *recipient_field;

	Route		routes[MAX_ROUTES];
	int			nroutes;
	Template   *templates;
	int			ntemplates;

	int			batch_size;
	double		lease;			/* seconds */
	double		poll_interval;	/* seconds */
	double		timeout;		/* seconds, one delivery */
	double		retry_max;		/* seconds, reconnect back-off cap */
	bool		once;
	int			verbose;		/* -1 quiet, 0 normal, 1 verbose */
} Config;

extern Config cfg;

/* config.c */
extern void config_defaults(void);
extern void config_parse_args(int argc, char **argv);
extern void config_finish(void);
extern const char *sink_name(SinkType type);
extern const Route *route_for(const Event *ev);
extern const Template *template_for(const char *kind);
extern char *claim_filter(bool kinds);
extern void usage(void);

/* sink.c */
extern void sinks_init(void);
extern void sinks_cleanup(void);
extern bool sink_deliver(SinkType type, const Event *ev, char *err, size_t errlen);
extern const char *event_field(const Event *ev, const char *name);
extern char *expand_template(const char *tmpl, const Event *ev);

/* relay.c */
extern volatile int stop_requested;
extern void logmsg(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void fatal(int code, const char *fmt,...)
			__attribute__((format(printf, 2, 3), noreturn));
extern void *xmalloc(size_t size);
extern char *xstrdup(const char *s);
extern char *read_secret_file(const char *path);
extern double now_seconds(void);

#endif							/* ORDEREXP_RELAY_H */
