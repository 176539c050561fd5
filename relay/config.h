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
#define ENV_WEBHOOK_PREVIOUS_SECRET	"ORDEREXP_WEBHOOK_PREVIOUS_SECRET"
#define ENV_SMS_TOKEN		"ORDEREXP_SMS_TOKEN"

#define MAX_SMS_HEADERS	16

typedef enum SinkType
{
	SINK_STDOUT,
	SINK_EXEC,
	SINK_WEBHOOK,
	SINK_SMTP,
	SINK_SMS,
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

/* mail subject and body, and SMS text, of one kind ("*": every other kind) */
typedef struct Template
{
	char	   *kind;
	char	   *subject;
	char	   *body;
	char	   *sms;
} Template;

/* the SMS provider's API (sms.c) */
typedef enum SmsProvider
{
	SMS_PROVIDER_DEFAULT,		/* not given: twilio for api.twilio.com */
	SMS_PROVIDER_TWILIO,
	SMS_PROVIDER_TEMPLATE
} SmsProvider;

typedef struct Config
{
	char	   *conninfo[MAX_NODES];
	int			nnodes;

	bool		sink_on[SINK_NTYPES];
	char	   *exec_command;
	char	   *webhook_url;
	char	   *webhook_secret;	/* from --webhook-secret-file or env */
	char	   *webhook_previous_secret;	/* the one before, while rotating */
	char	   *smtp_url;
	char	   *smtp_from;
	char	   *smtp_user;
	char	   *smtp_password;	/* from --smtp-password-file or env */
	bool		smtp_insecure;	/* credentials may go without TLS */
	bool		smtp_require_tls;	/* STARTTLS or no mail: credentials are
									 * set and --smtp-insecure is not */
	char	   *recipient_field;
	char	   *sms_url;
	SmsProvider sms_provider;
	char	   *sms_from;
	char	   *sms_account;	/* Twilio's account SID, a basic auth user */
	char	   *sms_token;		/* from --sms-token-file or env */
	char	   *sms_method;		/* NULL: POST */
	bool		sms_json;		/* body: JSON (true) or form encoded */
	bool		sms_content_type_set;
	char	   *sms_headers[MAX_SMS_HEADERS];
	int			nsms_headers;
	char	   *sms_body_template;
	char	   *sms_to_field;

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
