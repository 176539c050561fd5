/*-------------------------------------------------------------------------
 *
 * config.c
 *		orderexp-relay's settings: command-line options, the config file,
 *		routes and mail templates.
 *
 * The config file (-c FILE) holds the same settings as the command line,
 * one a line: the long option's name, then its value (the rest of the line,
 * trimmed), e.g. "webhook https://hooks.example.com/orders"; blank lines
 * and lines starting with '#' are ignored.  Options and files are applied
 * in the order they come, so an option after -c overrides the file's
 * single-valued settings and adds to its repeatable ones (dbname, route,
 * subject, body).
 *
 * Secrets are kept out of sight of other users, as libpq does with
 * ~/.pgpass: a secret file (--webhook-secret-file, --smtp-password-file)
 * that its group or others may access at all is refused; so is a config
 * file that they may access when it holds a password (in a dbname, or in
 * a webhook or smtp URL), and it is warned about when it holds none.  The
 * mode is that of the file opened, by fstat() (files.c).
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common.h"
#include "config.h"
#include "files.h"

Config		cfg;

enum
{
	OPT_DBNAME = 'd',
	OPT_CONFIG = 'c',
	OPT_ROUTE = 'r',
	OPT_BATCH = 'b',
	OPT_LEASE = 'l',
	OPT_POLL = 'p',
	OPT_TIMEOUT = 't',
	OPT_QUIET = 'q',
	OPT_VERBOSE = 'v',
	OPT_VERSION = 'V',
	OPT_HELP = 'h',
	OPT_STDOUT = 256,
	OPT_EXEC,
	OPT_WEBHOOK,
	OPT_WEBHOOK_SECRET_FILE,
	OPT_SMTP,
	OPT_SMTP_FROM,
	OPT_SMTP_USER,
	OPT_SMTP_PASSWORD_FILE,
	OPT_SMTP_INSECURE,
	OPT_RECIPIENT_FIELD,
	OPT_SUBJECT,
	OPT_BODY,
	OPT_BODY_FILE,
	OPT_RETRY_MAX,
	OPT_ONCE,
	OPT_METRICS_LISTEN,
	OPT_LOG_FORMAT,
	OPT_CONCURRENCY,
	OPT_RATE,
	OPT_WEBHOOK_PREVIOUS_SECRET_FILE,
	OPT_SMS,
	OPT_SMS_PROVIDER,
	OPT_SMS_FROM,
	OPT_SMS_ACCOUNT,
	OPT_SMS_TOKEN_FILE,
	OPT_SMS_METHOD,
	OPT_SMS_CONTENT_TYPE,
	OPT_SMS_HEADER,
	OPT_SMS_BODY_TEMPLATE,
	OPT_SMS_TO_FIELD,
	OPT_SMS_TEXT,
	OPT_SMS_TEXT_FILE
};

static const struct option long_options[] = {
	{"dbname", required_argument, NULL, OPT_DBNAME},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"stdout", no_argument, NULL, OPT_STDOUT},
	{"exec", required_argument, NULL, OPT_EXEC},
	{"webhook", required_argument, NULL, OPT_WEBHOOK},
	{"webhook-secret-file", required_argument, NULL, OPT_WEBHOOK_SECRET_FILE},
	{"webhook-previous-secret-file", required_argument, NULL, OPT_WEBHOOK_PREVIOUS_SECRET_FILE},
	{"smtp", required_argument, NULL, OPT_SMTP},
	{"smtp-from", required_argument, NULL, OPT_SMTP_FROM},
	{"smtp-user", required_argument, NULL, OPT_SMTP_USER},
	{"smtp-password-file", required_argument, NULL, OPT_SMTP_PASSWORD_FILE},
	{"smtp-insecure", no_argument, NULL, OPT_SMTP_INSECURE},
	{"recipient-field", required_argument, NULL, OPT_RECIPIENT_FIELD},
	{"subject", required_argument, NULL, OPT_SUBJECT},
	{"body", required_argument, NULL, OPT_BODY},
	{"body-file", required_argument, NULL, OPT_BODY_FILE},
	{"sms", required_argument, NULL, OPT_SMS},
	{"sms-provider", required_argument, NULL, OPT_SMS_PROVIDER},
	{"sms-from", required_argument, NULL, OPT_SMS_FROM},
	{"sms-account", required_argument, NULL, OPT_SMS_ACCOUNT},
	{"sms-token-file", required_argument, NULL, OPT_SMS_TOKEN_FILE},
	{"sms-method", required_argument, NULL, OPT_SMS_METHOD},
	{"sms-content-type", required_argument, NULL, OPT_SMS_CONTENT_TYPE},
	{"sms-header", required_argument, NULL, OPT_SMS_HEADER},
	{"sms-body-template", required_argument, NULL, OPT_SMS_BODY_TEMPLATE},
	{"sms-to-field", required_argument, NULL, OPT_SMS_TO_FIELD},
	{"sms-text", required_argument, NULL, OPT_SMS_TEXT},
	{"sms-text-file", required_argument, NULL, OPT_SMS_TEXT_FILE},
	{"route", required_argument, NULL, OPT_ROUTE},
	{"batch-size", required_argument, NULL, OPT_BATCH},
	{"lease", required_argument, NULL, OPT_LEASE},
	{"poll-interval", required_argument, NULL, OPT_POLL},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"retry-max", required_argument, NULL, OPT_RETRY_MAX},
	{"once", no_argument, NULL, OPT_ONCE},
	{"concurrency", required_argument, NULL, OPT_CONCURRENCY},
	{"rate", required_argument, NULL, OPT_RATE},
	{"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
	{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"version", no_argument, NULL, OPT_VERSION},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0}
};

static const char *const sink_names[SINK_NTYPES] = {"stdout", "exec", "webhook", "smtp", "sms"};

static const char *const all_kinds[] = {"reminder", "closed", "cancelled", "extended", "reopened"};

/*
 * built-in mail templates and SMS texts; --subject / --body / --sms-text
 * replace them per kind.  The SMS texts keep to the GSM 7-bit alphabet.
 */
static const Template default_templates[] = {
	{"reminder",
		"Order {order_key}: please pay before {close_at}",
		"Hello,\n\nyour order {order_key} is still unpaid. It will be closed at {close_at}.\n\n"
		"If you need more time, you can extend it by {extend_by} with this code:\n"
		"{extension_token}\n",
		"Order {order_key} is unpaid and will be closed at {close_at}. "
		"To extend it by {extend_by}, use code {extension_token}"},
	{"closed",
		"Order {order_key} was closed",
		"Hello,\n\nyour order {order_key} was not paid by {close_at} and has been closed.\n",
		"Order {order_key} was not paid by {close_at} and has been closed."},
	{"cancelled",
		"Order {order_key} was cancelled",
		"Hello,\n\nyour order {order_key} has been cancelled.\n",
		"Order {order_key} has been cancelled."},
	{"extended",
		"Order {order_key}: new deadline {close_at}",
		"Hello,\n\nyour order {order_key} now closes at {close_at} (it was {previous_close_at}).\n",
		"Order {order_key} now closes at {close_at}."},
	{"reopened",
		"Order {order_key} is open again",
		"Hello,\n\nyour order {order_key} is open again; please pay before {close_at}.\n",
		"Order {order_key} is open again; please pay before {close_at}."},
	{"*",
		"Order {order_key}: {kind}",
		"Hello,\n\nevent {kind} for your order {order_key}.\n",
		"Order {order_key}: {kind}"}
};

static int	config_depth = 0;

static void usage(void);
static char *unescape(const char *s);
static int	url_credentials(const char *url);
static bool secret_header(const char *header);
static bool holds_password(int id, const char *value);
static void add_sms_header(const char *value);
static double parse_seconds(const char *opt, const char *value, double min);
static bool valid_name(const char *s);
static void add_route(const char *text);
static void set_template(const char *opt, const char *value);
static void apply_option(int id, const char *name, const char *value);
static void read_config_file(const char *path);
static bool in_list(char *const *list, int n, const char *s);
static SinkType sink_setting(const char *opt, const char *value, const char **rest);

const char *
sink_name(SinkType type)
{
	return sink_names[type];
}

static void
usage(void)
{
	printf("orderexp-relay delivers orderexp's outbox events: it LISTENs on \"orderexp\",\n"
		   "claims events in batches, hands each to a sink (stdout, a command, a webhook,\n"
		   "e-mail) and acknowledges or fails it, on one or several PostgreSQL nodes.\n\n");
	printf("Usage:\n  orderexp-relay [OPTION]... SINK...\n\n");
	printf("Nodes:\n"
		   "  -d, --dbname=CONNINFO        a node's libpq connection string or URI; repeat for\n"
		   "                               several nodes (default: \"\", libpq's PG* variables)\n"
		   "  -c, --config=FILE            read settings from FILE (see below)\n\n");
	printf("Sinks (at least one):\n"
		   "      --stdout                 one JSON object per event and line on stdout\n"
		   "      --exec=CMD               run CMD with sh -c, the event's JSON on its stdin\n"
		   "                               (and ORDEREXP_EVENT_ID, ORDEREXP_KIND,\n"
		   "                               ORDEREXP_CHANNEL in its environment); exit\n"
		   "                               status 0 within --timeout means delivered\n"
		   "      --webhook=URL            HTTP POST of the event's JSON; 2xx means delivered\n"
		   "      --webhook-secret-file=FILE  sign webhook bodies: header X-Orderexp-Signature:\n"
		   "                               sha256=HEX, HMAC-SHA256 of the body under the\n"
		   "                               file's first line (or $ORDEREXP_WEBHOOK_SECRET);\n"
		   "                               also the Standard Webhooks webhook-signature\n"
		   "      --webhook-previous-secret-file=FILE  while rotating: the secret before,\n"
		   "                               a second webhook-signature\n"
		   "      --smtp=URL               send e-mail through smtp://HOST:PORT or smtps://...\n"
		   "      --smtp-from=ADDRESS      sender address (required with --smtp)\n"
		   "      --smtp-user=USER         SMTP login; the password is the first line of\n"
		   "      --smtp-password-file=FILE  FILE (or $ORDEREXP_SMTP_PASSWORD); with a login,\n"
		   "                               smtp:// URLs need STARTTLS (smtps:// is TLS)\n"
		   "      --smtp-insecure          send the SMTP login without TLS when the server\n"
		   "                               offers no STARTTLS (a trusted local relay only)\n"
		   "      --recipient-field=NAME   payload field holding the recipient (default: email)\n"
		   "      --subject=KIND=TEXT      mail subject template for KIND (* = other kinds)\n"
		   "      --body=KIND=TEXT         mail body template (\\n, \\t and \\\\ escapes)\n"
		   "      --body-file=KIND=FILE    mail body template read from FILE\n"
		   "      --sms=URL                SMS through a provider's HTTP API at URL\n"
		   "      --sms-provider=NAME      twilio (default for https://api.twilio.com) or\n"
		   "                               template (any other)\n"
		   "      --sms-from=SENDER        sender number or name (required for twilio)\n"
		   "      --sms-account=ACCOUNT    account (Twilio's account SID), HTTP basic auth\n"
		   "      --sms-token-file=FILE    auth token: FILE's first line (or $ORDEREXP_SMS_TOKEN)\n"
		   "      --sms-to-field=NAME      payload field holding the E.164 number (default: phone)\n"
		   "      --sms-text=KIND=TEXT     SMS text template for KIND (* = other kinds)\n"
		   "      --sms-text-file=KIND=FILE  SMS text template read from FILE\n"
		   "      --sms-method=METHOD      template: POST (default), PUT or PATCH\n"
		   "      --sms-content-type=TYPE  template: json (default) or form\n"
		   "      --sms-header='NAME: VALUE'  template: a request header (repeatable); VALUE\n"
		   "                               may hold {sms.token}, {sms.account}, {sms.from}\n"
		   "      --sms-body-template=TEXT template: the request body; {sms.to}, {sms.from},\n"
		   "                               {sms.text} and the event's fields, escaped for\n"
		   "                               JSON strings or form encoding\n\n");
	printf("Routing:\n"
		   "  -r, --route=MATCH:SINK       events matching MATCH go to SINK (stdout, exec,\n"
		   "                               webhook, smtp, sms); MATCH is \"*\" or comma-separated\n"
		   "                               kind=K1|K2 and channel=C1|C2; first match wins.\n"
		   "                               Without routes, one sink takes every event.\n\n");
	printf("Behaviour:\n"
		   "  -b, --batch-size=N           events claimed at a time (default: 100)\n"
		   "  -l, --lease=SECONDS          lease of claimed events (default: 30)\n"
		   "  -p, --poll-interval=SECONDS  look for work this often without a NOTIFY (default: 5)\n"
		   "  -t, --timeout=SECONDS        time-out of one delivery (default: 10)\n"
		   "      --retry-max=SECONDS      cap of the reconnect back-off (default: 30)\n"
		   "      --concurrency=SINK=N     deliveries in flight at once through SINK (default:\n"
		   "                               stdout 1, exec 8, webhook 128, smtp 4, sms 16)\n"
		   "      --rate=SINK=N/s          start at most N deliveries a second through SINK\n"
		   "                               (default: no limit)\n"
		   "      --once                   deliver what is due now, then exit\n"
		   "  -q, --quiet                  no log line per batch, only problems and the summary\n"
		   "  -v, --verbose                a log line per event too\n"
		   "      --log-format=FORMAT      text (default) or json: one JSON object per log line\n"
		   "      --metrics-listen=ADDR:PORT  serve Prometheus metrics on /metrics and a health\n"
		   "                               check on /healthz at ADDR:PORT (e.g. 127.0.0.1:9464)\n"
		   "  -V, --version                print the version and exit\n"
		   "  -h, --help                   show this help and exit\n\n");
	printf("Config file: one setting a line, a long option's name and its value, e.g.\n"
		   "  dbname host=db1 dbname=shop user=relay\n"
		   "  smtp smtp://mail.example.com:25\n"
		   "  smtp-from shop@example.com\n"
		   "  route kind=reminder,channel=email:smtp\n"
		   "'#' starts a comment line.\n\n");
	printf("Secrets: a secret file that its group or others can access at all (permissions\n"
		   "beyond u=rw, 0600) is refused, and so is such a config file if it holds a\n"
		   "password (in a dbname, in a webhook, smtp or sms URL, or an --sms-header such\n"
		   "as Authorization); otherwise such a config file is warned about.  --exec\n"
		   "commands do not see the PG* variables nor\n"
		   "$ORDEREXP_WEBHOOK_SECRET, $ORDEREXP_WEBHOOK_PREVIOUS_SECRET,\n"
		   "$ORDEREXP_SMTP_PASSWORD and $ORDEREXP_SMS_TOKEN.\n\n");
	printf("Mail templates: {NAME} is replaced by the event's field NAME: id, kind, table,\n"
		   "order_key, channel, attempts, created_at, a payload field (close_at,\n"
		   "extension_token...) or a column of the order (email, or order.email); {{ is {.\n\n");
	printf("Exit status: 0 stopped by SIGTERM/SIGINT (or --once done), 1 bad usage or config,\n"
		   "2 no node reachable at start, 3 a server refuses the orderexp API (extension,\n"
		   "function or privilege missing), 4 internal error, 5 --once left events undelivered.\n");
}

/* value with \n, \t and \\ escapes turned into the characters */
static char *
unescape(const char *s)
{
	char	   *out = xmalloc(strlen(s) + 1);
	char	   *o = out;

	for (; *s; s++)
	{
		if (*s == '\\' && s[1] != '\0')
		{
			s++;
			*o++ = (*s == 'n') ? '\n' : (*s == 't') ? '\t' : *s;
		}
		else
			*o++ = *s;
	}
	*o = '\0';
	return out;
}

/* 0: URL without user, 1: with a user, 2: with user:password */
static int
url_credentials(const char *url)
{
	const char *p = strstr(url, "://"),
			   *at = NULL,
			   *q;
	size_t		len;

	if (p == NULL)
		return 0;
	p += 3;
	len = strcspn(p, "/?#");
	for (q = p; q < p + len; q++)
		if (*q == '@')
			at = q;
	if (at == NULL)
		return 0;
	return memchr(p, ':', at - p) != NULL ? 2 : 1;
}

/*
 * Whether an --sms-header likely holds a credential written out: an
 * Authorization header, or a name with key, token, secret or auth in it,
 * unless its value takes the token from --sms-token-file ({sms.token}).
 */
static bool
secret_header(const char *header)
{
	size_t		n = strcspn(header, ":");
	char		name[128];
	size_t		i;

	if (n >= sizeof(name) || strstr(header, "{sms.token}") != NULL)
		return false;
	for (i = 0; i < n; i++)
		name[i] = (char) tolower((unsigned char) header[i]);
	name[n] = '\0';
	return strstr(name, "auth") || strstr(name, "key") ||
		strstr(name, "token") || strstr(name, "secret");
}

/* --sms-header NAME: VALUE, a header of the template provider's requests */
static void
add_sms_header(const char *value)
{
	const char *colon = strchr(value, ':');
	const char *p;

	if (cfg.nsms_headers >= MAX_SMS_HEADERS)
		fatal(EXIT_USAGE, "too many --sms-header options (at most %d)", MAX_SMS_HEADERS);
	if (colon == NULL || colon == value)
		fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-header: NAME: VALUE expected", value);
	for (p = value; p < colon; p++)
		if (!isalnum((unsigned char) *p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL)
			fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-header: bad header name", value);
	for (p = value; *p; p++)
		if ((unsigned char) *p < 32 && *p != '\t')
			fatal(EXIT_USAGE, "invalid value for --sms-header: control characters are not allowed");
	cfg.sms_headers[cfg.nsms_headers++] = xstrdup(value);
}

/* whether a config file's setting holds a password */
static bool
holds_password(int id, const char *value)
{
	PQconninfoOption *opts,
			   *o;
	bool		found = false;

	if (id == OPT_WEBHOOK || id == OPT_SMTP || id == OPT_SMS)
		return url_credentials(value) == 2;
	if (id == OPT_SMS_HEADER)
		return secret_header(value);
	if (id != OPT_DBNAME || (opts = PQconninfoParse(value, NULL)) == NULL)
		return false;
	for (o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0')
			found = true;
	PQconninfoFree(opts);
	return found;
}

static double
parse_seconds(const char *opt, const char *value, double min)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > 86400)
		fatal(EXIT_USAGE, "invalid value \"%s\" for --%s: seconds from %g to 86400 expected",
			  value, opt, min);
	return v;
}

static bool
valid_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

/* "kind=a|b,channel=c:sink" */
static void
add_route(const char *text)
{
	Route	   *r;
	char	   *copy,
			   *colon,
			   *item,
			   *save = NULL;
	int			t;

	if (cfg.nroutes >= MAX_ROUTES)
		fatal(EXIT_USAGE, "too many routes (at most %d)", MAX_ROUTES);
	r = &cfg.routes[cfg.nroutes];
	memset(r, 0, sizeof(*r));
	r->text = xstrdup(text);
	copy = xstrdup(text);
	colon = strrchr(copy, ':');
	if (colon == NULL)
		fatal(EXIT_USAGE, "invalid route \"%s\": MATCH:SINK expected, e.g. kind=reminder,channel=email:smtp", text);
	*colon = '\0';
	for (t = 0; t < SINK_NTYPES; t++)
		if (strcmp(colon + 1, sink_names[t]) == 0)
			break;
	if (t == SINK_NTYPES)
		fatal(EXIT_USAGE, "invalid route \"%s\": unknown sink \"%s\" (stdout, exec, webhook, smtp or sms)",
			  text, colon + 1);
	r->sink = (SinkType) t;

	if (strcmp(copy, "*") != 0)
	{
		for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
		{
			char	   *eq = strchr(item, '=');
			char	  **list;
			int		   *n;
			char	   *v,
					   *vsave = NULL;

			if (eq == NULL)
				fatal(EXIT_USAGE, "invalid route \"%s\": \"%s\" is not kind=... or channel=...", text, item);
			*eq = '\0';
			if (strcmp(item, "kind") == 0)
			{
				list = r->kinds;
				n = &r->nkinds;
			}
			else if (strcmp(item, "channel") == 0)
			{
				list = r->channels;
				n = &r->nchannels;
			}
			else
				fatal(EXIT_USAGE, "invalid route \"%s\": unknown key \"%s\" (kind or channel)", text, item);
			for (v = strtok_r(eq + 1, "|", &vsave); v; v = strtok_r(NULL, "|", &vsave))
			{
				if (!valid_name(v))
					fatal(EXIT_USAGE, "invalid route \"%s\": bad name \"%s\"", text, v);
				if (list == r->kinds)
				{
					size_t		k;

					for (k = 0; k < sizeof(all_kinds) / sizeof(all_kinds[0]); k++)
						if (strcmp(v, all_kinds[k]) == 0)
							break;
					if (k == sizeof(all_kinds) / sizeof(all_kinds[0]))
						fatal(EXIT_USAGE, "invalid route \"%s\": unknown kind \"%s\" (reminder, closed, cancelled, extended, reopened)",
							  text, v);
				}
				if (*n >= MAX_MATCH)
					fatal(EXIT_USAGE, "invalid route \"%s\": too many names", text);
				list[(*n)++] = xstrdup(v);
			}
			if (*n == 0)
				fatal(EXIT_USAGE, "invalid route \"%s\": empty %s list", text, item);
		}
	}
	free(copy);
	cfg.nroutes++;
}

/* KIND=TEXT for --subject, --body, --body-file, --sms-text, --sms-text-file */
static void
set_template(const char *opt, const char *value)
{
	const char *eq = strchr(value, '=');
	char	   *kind;
	Template   *t = NULL;
	int			i;

	if (eq == NULL || eq == value)
		fatal(EXIT_USAGE, "invalid value \"%s\" for --%s: KIND=... expected", value, opt);
	kind = strndup(value, eq - value);
	if (kind == NULL)
		fatal(EXIT_INTERNAL, "out of memory");
	if (strcmp(kind, "*") != 0)
	{
		size_t		k;

		for (k = 0; k < sizeof(all_kinds) / sizeof(all_kinds[0]); k++)
			if (strcmp(kind, all_kinds[k]) == 0)
				break;
		if (k == sizeof(all_kinds) / sizeof(all_kinds[0]))
			fatal(EXIT_USAGE, "invalid value \"%s\" for --%s: unknown kind \"%s\"", value, opt, kind);
	}
	for (i = 0; i < cfg.ntemplates; i++)
		if (strcmp(cfg.templates[i].kind, kind) == 0)
			t = &cfg.templates[i];
	if (t == NULL)
		fatal(EXIT_INTERNAL, "no template slot for kind \"%s\"", kind);
	free(kind);
	if (strcmp(opt, "subject") == 0)
	{
		t->subject = unescape(eq + 1);
		if (strpbrk(t->subject, "\r\n"))
			fatal(EXIT_USAGE, "invalid value for --subject: a subject is one line");
	}
	else if (strcmp(opt, "body") == 0)
		t->body = unescape(eq + 1);
	else if (strcmp(opt, "body-file") == 0)
		t->body = read_whole_file(eq + 1);
	else if (strcmp(opt, "sms-text") == 0)
		t->sms = unescape(eq + 1);
	else
	{
		/* a file's text without its final line break */
		char	   *text = read_whole_file(eq + 1);
		size_t		n = strlen(text);

		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			text[--n] = '\0';
		t->sms = text;
	}
}

/* apply one option, from the command line or a config file */
static void
apply_option(int id, const char *name, const char *value)
{
	char	   *end;
	long		n;

	switch (id)
	{
		case OPT_DBNAME:
			if (cfg.nnodes >= MAX_NODES)
				fatal(EXIT_USAGE, "too many nodes (at most %d)", MAX_NODES);
			cfg.conninfo[cfg.nnodes++] = xstrdup(value);
			break;
		case OPT_CONFIG:
			read_config_file(value);
			break;
		case OPT_STDOUT:
			cfg.sink_on[SINK_STDOUT] = true;
			break;
		case OPT_EXEC:
			cfg.sink_on[SINK_EXEC] = true;
			cfg.exec_command = xstrdup(value);
			break;
		case OPT_WEBHOOK:
			if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --webhook: an http:// or https:// URL expected", value);
			cfg.sink_on[SINK_WEBHOOK] = true;
			cfg.webhook_url = xstrdup(value);
			break;
		case OPT_WEBHOOK_SECRET_FILE:
			cfg.webhook_secret = read_secret_file(value);
			break;
		case OPT_SMTP:
			if (strncmp(value, "smtp://", 7) != 0 && strncmp(value, "smtps://", 8) != 0)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --smtp: an smtp:// or smtps:// URL expected", value);
			cfg.sink_on[SINK_SMTP] = true;
			cfg.smtp_url = xstrdup(value);
			break;
		case OPT_SMTP_FROM:
			if (strpbrk(value, "\r\n<>") || strchr(value, '@') == NULL)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --smtp-from: an address like shop@example.com expected", value);
			cfg.smtp_from = xstrdup(value);
			break;
		case OPT_SMTP_USER:
			cfg.smtp_user = xstrdup(value);
			break;
		case OPT_SMTP_PASSWORD_FILE:
			cfg.smtp_password = read_secret_file(value);
			break;
		case OPT_SMTP_INSECURE:
			cfg.smtp_insecure = true;
			break;
		case OPT_RECIPIENT_FIELD:
			if (!valid_name(value))
				fatal(EXIT_USAGE, "invalid value \"%s\" for --recipient-field", value);
			cfg.recipient_field = xstrdup(value);
			break;
		case OPT_SUBJECT:
		case OPT_BODY:
		case OPT_BODY_FILE:
		case OPT_SMS_TEXT:
		case OPT_SMS_TEXT_FILE:
			set_template(name, value);
			break;
		case OPT_WEBHOOK_PREVIOUS_SECRET_FILE:
			cfg.webhook_previous_secret = read_secret_file(value);
			break;
		case OPT_SMS:
			if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --sms: an http:// or https:// URL expected", value);
			cfg.sink_on[SINK_SMS] = true;
			cfg.sms_url = xstrdup(value);
			break;
		case OPT_SMS_PROVIDER:
			if (strcmp(value, "twilio") == 0)
				cfg.sms_provider = SMS_PROVIDER_TWILIO;
			else if (strcmp(value, "template") == 0)
				cfg.sms_provider = SMS_PROVIDER_TEMPLATE;
			else
				fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-provider: twilio or template expected", value);
			break;
		case OPT_SMS_FROM:
			if (*value == '\0' || strpbrk(value, "\r\n") != NULL)
				fatal(EXIT_USAGE, "invalid value for --sms-from: a number like +15005550006 or a sender name expected");
			cfg.sms_from = xstrdup(value);
			break;
		case OPT_SMS_ACCOUNT:
			if (*value == '\0' || strpbrk(value, ":\r\n") != NULL)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-account", value);
			cfg.sms_account = xstrdup(value);
			break;
		case OPT_SMS_TOKEN_FILE:
			cfg.sms_token = read_secret_file(value);
			break;
		case OPT_SMS_METHOD:
			if (strcmp(value, "POST") != 0 && strcmp(value, "PUT") != 0 && strcmp(value, "PATCH") != 0)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-method: POST, PUT or PATCH expected", value);
			cfg.sms_method = xstrdup(value);
			break;
		case OPT_SMS_CONTENT_TYPE:
			if (strcmp(value, "json") == 0)
				cfg.sms_json = true;
			else if (strcmp(value, "form") == 0)
				cfg.sms_json = false;
			else
				fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-content-type: json or form expected", value);
			cfg.sms_content_type_set = true;
			break;
		case OPT_SMS_HEADER:
			add_sms_header(value);
			break;
		case OPT_SMS_BODY_TEMPLATE:
			/* as written: a JSON body has backslash escapes of its own */
			cfg.sms_body_template = xstrdup(value);
			break;
		case OPT_SMS_TO_FIELD:
			if (!valid_name(value))
				fatal(EXIT_USAGE, "invalid value \"%s\" for --sms-to-field", value);
			cfg.sms_to_field = xstrdup(value);
			break;
		case OPT_ROUTE:
			add_route(value);
			break;
		case OPT_BATCH:
			errno = 0;
			n = strtol(value, &end, 10);
			if (errno != 0 || end == value || *end != '\0' || n < 1 || n > 10000)
				fatal(EXIT_USAGE, "invalid value \"%s\" for --batch-size: 1 to 10000 expected", value);
			cfg.batch_size = (int) n;
			break;
		case OPT_LEASE:
			cfg.lease = parse_seconds(name, value, 1);
			break;
		case OPT_POLL:
			cfg.poll_interval = parse_seconds(name, value, 0.05);
			break;
		case OPT_TIMEOUT:
			cfg.timeout = parse_seconds(name, value, 0.1);
			break;
		case OPT_RETRY_MAX:
			cfg.retry_max = parse_seconds(name, value, 0.1);
			break;
		case OPT_ONCE:
			cfg.once = true;
			break;
		case OPT_CONCURRENCY:
			{
				const char *num;
				SinkType	t = sink_setting(name, value, &num);

				errno = 0;
				n = strtol(num, &end, 10);
				if (errno != 0 || end == num || *end != '\0' || n < 1 || n > 1000)
					fatal(EXIT_USAGE, "invalid value \"%s\" for --concurrency: SINK=N with N from 1 to 1000 expected", value);
				cfg.concurrency[t] = (int) n;
				break;
			}
		case OPT_RATE:
			{
				const char *num;
				SinkType	t = sink_setting(name, value, &num);
				double		r;

				errno = 0;
				r = strtod(num, &end);
				if (errno != 0 || end == num || strcmp(end, "/s") != 0 || !(r > 0) || r > 100000)
					fatal(EXIT_USAGE, "invalid value \"%s\" for --rate: SINK=N/s with N above 0 and at most 100000 expected", value);
				cfg.rate[t] = r;
				break;
			}
		case OPT_METRICS_LISTEN:
			cfg.metrics_listen = xstrdup(value);
			break;
		case OPT_LOG_FORMAT:
			if (strcmp(value, "text") == 0)
				log_format = LOG_FORMAT_TEXT;
			else if (strcmp(value, "json") == 0)
				log_format = LOG_FORMAT_JSON;
			else
				fatal(EXIT_USAGE, "invalid value \"%s\" for --log-format: text or json expected", value);
			break;
		case OPT_QUIET:
			cfg.verbose = -1;
			break;
		case OPT_VERBOSE:
			cfg.verbose = 1;
			break;
		case OPT_VERSION:
			printf("orderexp-relay %s\n", RELAY_VERSION);
			exit(EXIT_OK);
		case OPT_HELP:
			usage();
			exit(EXIT_OK);
		default:
			fprintf(stderr, "Try \"orderexp-relay --help\" for more information.\n");
			exit(EXIT_USAGE);
	}
}

/* the settings of FILE: "name value" lines, '#' comments */
static void
read_config_file(const char *path)
{
	FILE	   *f;
	char		line[8192];
	int			lineno = 0;
	bool		is_private;

	if (++config_depth > 4)
		fatal(EXIT_USAGE, "config files include each other too deeply (at \"%s\")", path);
	f = fopen(path, "r");
	if (f == NULL)
		fatal(EXIT_USAGE, "could not open config file \"%s\": %s", path, strerror(errno));
	is_private = file_is_private(f, path);
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *p = line,
				   *e,
				   *value;
		const struct option *o;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f))
			fatal(EXIT_USAGE, "%s:%d: line too long", path, lineno);
		while (isspace((unsigned char) *p))
			p++;
		e = p + strlen(p);
		while (e > p && isspace((unsigned char) e[-1]))
			*--e = '\0';
		if (*p == '\0' || *p == '#')
			continue;
		value = p;
		while (*value && !isspace((unsigned char) *value))
			value++;
		if (*value)
		{
			*value++ = '\0';
			while (isspace((unsigned char) *value))
				value++;
		}
		for (o = long_options; o->name; o++)
			if (strcmp(o->name, p) == 0)
				break;
		if (o->name == NULL || o->val == OPT_HELP || o->val == OPT_VERSION)
			fatal(EXIT_USAGE, "%s:%d: unknown setting \"%s\"", path, lineno, p);
		if (o->has_arg == required_argument && *value == '\0')
			fatal(EXIT_USAGE, "%s:%d: setting \"%s\" needs a value", path, lineno, p);
		if (o->has_arg == no_argument && *value != '\0')
			fatal(EXIT_USAGE, "%s:%d: setting \"%s\" takes no value", path, lineno, p);
		if (!is_private && holds_password(o->val, value))
			fatal(EXIT_USAGE, "config file \"%s\" has group or world access and holds a password (line %d); permissions should be u=rw (0600) or less",
				  path, lineno);
		apply_option(o->val, o->name, value);
	}
	fclose(f);
	if (!is_private)
		logmsg("warning: config file \"%s\" has group or world access; permissions should be u=rw (0600) or less",
			   path);
	config_depth--;
}

void
config_defaults(void)
{
	int			i;
	int			n = sizeof(default_templates) / sizeof(default_templates[0]);

	memset(&cfg, 0, sizeof(cfg));
	cfg.batch_size = 100;
	cfg.lease = 30;
	cfg.poll_interval = 5;
	cfg.timeout = 10;
	cfg.retry_max = 30;
	cfg.recipient_field = "email";
	cfg.sms_to_field = "phone";
	cfg.sms_json = true;
	/* see docs/relay.md, "Concurrency, rate limits and leases" */
	cfg.concurrency[SINK_STDOUT] = 1;
	cfg.concurrency[SINK_EXEC] = 8;
	cfg.concurrency[SINK_WEBHOOK] = 128;
	cfg.concurrency[SINK_SMTP] = 4;
	cfg.concurrency[SINK_SMS] = 16;
	cfg.templates = xmalloc(n * sizeof(Template));
	cfg.ntemplates = n;
	for (i = 0; i < n; i++)
		cfg.templates[i] = default_templates[i];
}

void
config_parse_args(int argc, char **argv)
{
	int			c;

	while ((c = getopt_long(argc, argv, "d:c:r:b:l:p:t:qvVh", long_options, NULL)) != -1)
	{
		const struct option *o;
		const char *name = "?";

		for (o = long_options; o->name; o++)
			if (o->val == c)
				name = o->name;
		apply_option(c, name, optarg);
	}
	if (optind < argc)
	{
		fprintf(stderr, "orderexp-relay: unexpected argument \"%s\"\n"
				"Try \"orderexp-relay --help\" for more information.\n", argv[optind]);
		exit(EXIT_USAGE);
	}
}

/* checks once every option is in; secrets from the environment */
void
config_finish(void)
{
	int			i,
				nsinks = 0;
	const char *env;

	for (i = 0; i < SINK_NTYPES; i++)
		nsinks += cfg.sink_on[i];
	if (nsinks == 0)
		fatal(EXIT_USAGE, "no sink: give --stdout, --exec, --webhook, --smtp or --sms (see --help)");
	if (cfg.nnodes == 0)
		cfg.conninfo[cfg.nnodes++] = "";
	if (cfg.nroutes == 0)
	{
		char		text[32];

		if (nsinks > 1)
			fatal(EXIT_USAGE, "several sinks need routes: say which events go where with --route");
		for (i = 0; i < SINK_NTYPES; i++)
			if (cfg.sink_on[i])
			{
				snprintf(text, sizeof(text), "*:%s", sink_names[i]);
				add_route(text);
			}
	}
	for (i = 0; i < cfg.nroutes; i++)
		if (!cfg.sink_on[cfg.routes[i].sink])
			fatal(EXIT_USAGE, "route \"%s\" names sink %s, which is not configured",
				  cfg.routes[i].text, sink_names[cfg.routes[i].sink]);
	if (cfg.sink_on[SINK_SMTP] && cfg.smtp_from == NULL)
		fatal(EXIT_USAGE, "--smtp needs --smtp-from");
	if (cfg.webhook_secret == NULL && (env = getenv(ENV_WEBHOOK_SECRET)) != NULL && *env)
		cfg.webhook_secret = xstrdup(env);
	if (cfg.smtp_password == NULL && (env = getenv(ENV_SMTP_PASSWORD)) != NULL && *env)
		cfg.smtp_password = xstrdup(env);
	if (cfg.webhook_previous_secret == NULL &&
		(env = getenv(ENV_WEBHOOK_PREVIOUS_SECRET)) != NULL && *env)
		cfg.webhook_previous_secret = xstrdup(env);
	if (cfg.sms_token == NULL && (env = getenv(ENV_SMS_TOKEN)) != NULL && *env)
		cfg.sms_token = xstrdup(env);
	if (cfg.smtp_password != NULL && cfg.smtp_user == NULL)
		fatal(EXIT_USAGE, "an SMTP password needs --smtp-user");
	/* a login, given by option or in the URL, goes over TLS only */
	if (cfg.sink_on[SINK_SMTP] && strncmp(cfg.smtp_url, "smtp://", 7) == 0 &&
		(cfg.smtp_user != NULL || url_credentials(cfg.smtp_url) > 0))
	{
		if (cfg.smtp_insecure)
			logmsg("warning: --smtp-insecure: SMTP credentials may be sent without TLS");
		else
			cfg.smtp_require_tls = true;
	}
	if (cfg.timeout >= cfg.lease)
		fatal(EXIT_USAGE, "--timeout (%g s) must be shorter than --lease (%g s)", cfg.timeout, cfg.lease);
}

/*
 * The sink of a "SINK=..." setting (--concurrency, --rate); *rest points
 * after the '='.
 */
static SinkType
sink_setting(const char *opt, const char *value, const char **rest)
{
	const char *eq = strchr(value, '=');
	int			i;

	if (eq != NULL)
		for (i = 0; i < SINK_NTYPES; i++)
			if (strlen(sink_names[i]) == (size_t) (eq - value) &&
				strncmp(value, sink_names[i], eq - value) == 0)
			{
				*rest = eq + 1;
				return (SinkType) i;
			}
	fatal(EXIT_USAGE, "invalid value \"%s\" for --%s: SINK=... expected, SINK one of stdout, exec, webhook, smtp, sms",
		  value, opt);
}

static bool
in_list(char *const *list, int n, const char *s)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* the first route that takes this event, NULL if none */
const Route *
route_for(const Event *ev)
{
	int			i;

	for (i = 0; i < cfg.nroutes; i++)
	{
		const Route *r = &cfg.routes[i];

		if (r->nkinds > 0 && !in_list(r->kinds, r->nkinds, ev->kind))
			continue;
		if (r->nchannels > 0 && !in_list(r->channels, r->nchannels, ev->channel))
			continue;
		return r;
	}
	return NULL;
}

const Template *
template_for(const char *kind)
{
	int			i;

	for (i = 0; i < cfg.ntemplates; i++)
		if (strcmp(cfg.templates[i].kind, kind) == 0)
			return &cfg.templates[i];
	return &cfg.templates[cfg.ntemplates - 1];	/* "*" */
}

/*
 * The text[] literal of the kinds (or channels) the routes take, for
 * claim()'s filter; NULL (no filter) when a route takes any.
 */
char *
claim_filter(bool kinds)
{
	char	   *seen[MAX_ROUTES * MAX_MATCH];
	int			nseen = 0,
				i,
				j;
	size_t		len = 3;
	char	   *out;

	for (i = 0; i < cfg.nroutes; i++)
	{
		const Route *r = &cfg.routes[i];
		int			n = kinds ? r->nkinds : r->nchannels;
		char	   *const *list = kinds ? r->kinds : r->channels;

		if (n == 0)
			return NULL;
		for (j = 0; j < n; j++)
			if (!in_list(seen, nseen, list[j]))
			{
				seen[nseen++] = list[j];
				len += strlen(list[j]) + 3;
			}
	}
	out = xmalloc(len);
	strcpy(out, "{");
	for (i = 0; i < nseen; i++)
	{
		/* names are [A-Za-z0-9_.-]: no quoting needed, but quote anyway */
		strcat(out, i ? ",\"" : "\"");
		strcat(out, seen[i]);
		strcat(out, "\"");
	}
	strcat(out, "}");
	return out;
}
