/*-------------------------------------------------------------------------
 *
 * config.h
 *		orderexp-relay's settings: what the options and the config file
 *		set, and the look-ups of routes and templates.
 *
 * config_defaults(), config_parse_args() and config_finish() fill cfg
 * once at start; after that, the rest of the relay only reads it.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_CONFIG_H
#define ORDEREXP_RELAY_CONFIG_H

#include "common.h"

#define MAX_NODES		32
#define MAX_ROUTES		64
#define MAX_MATCH		16

/* environment variables that hold secrets (kept from --exec commands) */
#define ENV_WEBHOOK_SECRET	"ORDEREXP_WEBHOOK_SECRET"
#define ENV_SMTP_PASSWORD	"ORDEREXP_SMTP_PASSWORD"

typedef enum SinkType
{
	SINK_STDOUT,
	SINK_EXEC,
	SINK_WEBHOOK,
	SINK_SMTP,
	SINK_NTYPES
} SinkType;

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
	bool		smtp_insecure;	/* credentials may go without TLS */
	bool		smtp_require_tls;	/* STARTTLS or no mail: credentials are
									 * set and --smtp-insecure is not */
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
	int			concurrency[SINK_NTYPES];	/* deliveries in flight per sink */
	double		rate[SINK_NTYPES];	/* starts a second per sink, 0: no limit */
	int			verbose;		/* -1 quiet, 0 normal, 1 verbose */
	char	   *metrics_listen;	/* ADDR:PORT of /metrics and /healthz, or
								 * NULL */
} Config;

extern Config cfg;

extern void config_defaults(void);
extern void config_parse_args(int argc, char **argv);
extern void config_finish(void);
extern const char *sink_name(SinkType type);
extern const Route *route_for(const Event *ev);
extern const Template *template_for(const char *kind);
extern char *claim_filter(bool kinds);

#endif							/* ORDEREXP_RELAY_CONFIG_H */
