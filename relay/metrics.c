/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		orderexp-relay as operators see it: Prometheus metrics and a health
 *		check over HTTP, and readiness for systemd.
 *
 * The relay's loop calls the hooks of metrics.h as events are claimed,
 * delivered, failed and released, and as nodes connect and drop.  The
 * hooks only update counters in memory, under one mutex held for a few
 * instructions, so they cost the loop next to nothing and never wait for
 * the network.
 *
 * With --metrics-listen ADDR:PORT, libmicrohttpd serves them from a thread
 * of its own (MHD_USE_INTERNAL_POLLING_THREAD), so the relay's loop does
 * not change:
 *
 *	/metrics	Prometheus text exposition format 0.0.4: counters per node and
 *				sink, deliveries in flight and a histogram of delivery times
 *				per sink, the age of the oldest event this relay holds, the
 *				nodes' state and the build
 *	/healthz	200 while at least one node is connected, 503 otherwise
 *
 * anything else is 404, and methods other than GET and HEAD are 405.  A
 * scrape renders every series under the mutex into one buffer, which
 * libmicrohttpd frees once sent.  The listening socket is made here, so
 * that a bad address or a port in use is reported at start with the
 * system's reason, before any event is claimed.
 *
 * service_notify() tells systemd (Type=notify) that the relay is ready or
 * stopping: one datagram to $NOTIFY_SOCKET, as sd_notify(3) does, without
 * a dependency on libsystemd.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <microhttpd.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "template.h"

/* upper bounds of the delivery-time histogram's buckets, in seconds */
static const double buckets[] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
};

#define NBUCKETS	((int) (sizeof(buckets) / sizeof(buckets[0])))

/* the sink index of the arrays: a SinkType, or SINK_NTYPES for "none" */
#define NSINKS		(SINK_NTYPES + 1)

/* events claimed at the same moment and not released yet */
typedef struct Claim
{
	double		at;				/* now_seconds() of the claim */
	int			count;
} Claim;

typedef struct NodeMetrics
{
	bool		up;
	char		label[160];
	unsigned long long claimed;
	unsigned long long delivered[NSINKS];
	unsigned long long failed[NSINKS];
	unsigned long long dead[NSINKS];
	unsigned long long retried[NSINKS];
	Claim	   *claims;			/* in order of claim, oldest first */
	int			nclaims;
	int			claims_cap;
} NodeMetrics;

typedef struct SinkMetrics
{
	long long	in_flight;
	unsigned long long bucket[NBUCKETS + 1];	/* not cumulative; last: +Inf */
	double		sum;
	unsigned long long count;
} SinkMetrics;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static NodeMetrics node_metrics[MAX_NODES];
static SinkMetrics sink_metrics[NSINKS];
static int	metrics_nnodes;
static time_t start_time;
static struct MHD_Daemon *daemon_handle;

static NodeMetrics *node_slot(int node);
static int	sink_slot(int sink);
static const char *sink_label(int slot);
static void out_label_value(StrBuf *o, const char *s);
static void out_header(StrBuf *o, const char *name, const char *type, const char *help);
static bool sink_shown(int slot);
static void out_node_counter(StrBuf *o, const char *name, const char *help, size_t offset);
static char *render_metrics(size_t *len);
static int	nodes_up(int *nnodes);
static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned int status,
								 const char *content_type, char *body, size_t len);
static enum MHD_Result send_message(struct MHD_Connection *conn, unsigned int status,
									const char *msg);
static enum MHD_Result answer(void *cls, struct MHD_Connection *conn,
							  const char *url, const char *method,
							  const char *version, const char *upload_data,
							  size_t *upload_data_size, void **con_cls);
static void mhd_log(void *cls, const char *fmt, va_list ap);
static bool split_listen(const char *value, char **host, char **port, const char **why);
static int	listen_socket(const char *value);


/* ---------------------------------------------------------------------
 * the hooks
 * ---------------------------------------------------------------------
 */

/* the counters of node NODE (1-based); the caller holds the lock */
static NodeMetrics *
node_slot(int node)
{
	if (node < 1 || node > MAX_NODES)
		fatal(EXIT_INTERNAL, "metrics: no node %d", node);
	if (node > metrics_nnodes)
		metrics_nnodes = node;
	return &node_metrics[node - 1];
}

/* the arrays' index of SINK: METRICS_NO_ROUTE goes to the last one */
static int
sink_slot(int sink)
{
	return (sink >= 0 && sink < SINK_NTYPES) ? sink : SINK_NTYPES;
}

/* the sink label of an index */
static const char *
sink_label(int slot)
{
	return slot < SINK_NTYPES ? sink_name((SinkType) slot) : "none";
}

/* the node is connected (and LISTENs) or not; LABEL, if given, names it */
void
metrics_node_up(int node, bool up, const char *label)
{
	NodeMetrics *m;

	pthread_mutex_lock(&lock);
	m = node_slot(node);
	m->up = up;
	if (label != NULL)
		snprintf(m->label, sizeof(m->label), "%s", label);
	pthread_mutex_unlock(&lock);
}

/*
 * COUNT events of NODE were claimed at CLAIMED_AT: they are held by this
 * relay until released, and the oldest of them is what the age gauge shows.
 */
void
metrics_claimed(int node, double claimed_at, int count)
{
	NodeMetrics *m;

	if (count <= 0)
		return;
	pthread_mutex_lock(&lock);
	m = node_slot(node);
	m->claimed += count;
	if (m->nclaims > 0 && m->claims[m->nclaims - 1].at == claimed_at)
		m->claims[m->nclaims - 1].count += count;
	else
	{
		if (m->nclaims == m->claims_cap)
		{
			m->claims_cap = m->claims_cap ? m->claims_cap * 2 : 8;
			m->claims = realloc(m->claims, m->claims_cap * sizeof(Claim));
			if (m->claims == NULL)
				fatal(EXIT_INTERNAL, "out of memory");
		}
		m->claims[m->nclaims].at = claimed_at;
		m->claims[m->nclaims].count = count;
		m->nclaims++;
	}
	pthread_mutex_unlock(&lock);
}

/*
 * COUNT events of NODE claimed at CLAIMED_AT are no longer held: acked,
 * reported with fail(), or left to their lease.
 */
void
metrics_released(int node, double claimed_at, int count)
{
	NodeMetrics *m;
	int			i;

	pthread_mutex_lock(&lock);
	m = node_slot(node);
	for (i = 0; i < m->nclaims; i++)
		if (m->claims[i].at == claimed_at)
		{
			m->claims[i].count -= count;
			if (m->claims[i].count <= 0)
			{
				memmove(&m->claims[i], &m->claims[i + 1],
						(m->nclaims - i - 1) * sizeof(Claim));
				m->nclaims--;
			}
			break;
		}
	pthread_mutex_unlock(&lock);
}

/* a delivery through SINK starts (+1) or ends (-1) */
void
metrics_in_flight(int sink, int delta)
{
	pthread_mutex_lock(&lock);
	sink_metrics[sink_slot(sink)].in_flight += delta;
	pthread_mutex_unlock(&lock);
}

/* a delivery starts of an event that was claimed before (attempts > 1) */
void
metrics_retried(int node, int sink)
{
	pthread_mutex_lock(&lock);
	node_slot(node)->retried[sink_slot(sink)]++;
	pthread_mutex_unlock(&lock);
}

/* SINK took an event of NODE, in SECONDS */
void
metrics_delivered(int node, int sink, double seconds)
{
	SinkMetrics *s;
	int			b;

	pthread_mutex_lock(&lock);
	node_slot(node)->delivered[sink_slot(sink)]++;
	s = &sink_metrics[sink_slot(sink)];
	for (b = 0; b < NBUCKETS && seconds > buckets[b]; b++)
		;
	s->bucket[b]++;
	s->sum += seconds;
	s->count++;
	pthread_mutex_unlock(&lock);
}

/* a delivery failed, and the event will be tried again */
void
metrics_failed(int node, int sink)
{
	pthread_mutex_lock(&lock);
	node_slot(node)->failed[sink_slot(sink)]++;
	pthread_mutex_unlock(&lock);
}

/* a delivery failed, and it was the event's last attempt: the row is dead */
void
metrics_dead(int node, int sink)
{
	pthread_mutex_lock(&lock);
	node_slot(node)->dead[sink_slot(sink)]++;
	pthread_mutex_unlock(&lock);
}

/* ---------------------------------------------------------------------
 * the exposition format
 * ---------------------------------------------------------------------
 */
/* a label value, quoted: backslash, double quote and line feed escaped */
static void
out_label_value(StrBuf *o, const char *s)
{
	sb_append(o, "\"", 1);
	for (; *s; s++)
	{
		if (*s == '\\')
			sb_append(o, "\\\\", 2);
		else if (*s == '"')
			sb_append(o, "\\\"", 2);
		else if (*s == '\n')
			sb_append(o, "\\n", 2);
		else
			sb_append(o, s, 1);
	}
	sb_append(o, "\"", 1);
}

/* HELP and TYPE of a metric (the help texts need no escaping) */
static void
out_header(StrBuf *o, const char *name, const char *type, const char *help)
{
	sb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* series of the configured sinks, and of "none" once it has counted */
static bool
sink_shown(int slot)
{
	int			i;

	if (slot < SINK_NTYPES)
		return cfg.sink_on[slot];
	for (i = 0; i < metrics_nnodes; i++)
		if (node_metrics[i].delivered[slot] || node_metrics[i].failed[slot] ||
			node_metrics[i].dead[slot] || node_metrics[i].retried[slot])
			return true;
	return false;
}

/* a counter per node and sink: the array at OFFSET in NodeMetrics */
static void
out_node_counter(StrBuf *o, const char *name, const char *help, size_t offset)
{
	int			i,
				s;

	out_header(o, name, "counter", help);
	for (i = 0; i < metrics_nnodes; i++)
	{
		const unsigned long long *v =
			(const unsigned long long *) ((const char *) &node_metrics[i] + offset);

		for (s = 0; s < NSINKS; s++)
			if (sink_shown(s))
				sb_printf(o, "%s{node=\"%d\",sink=\"%s\"} %llu\n", name, i + 1,
						   sink_label(s), v[s]);
	}
}

/*
 * Every series, as one text; the caller frees it.  Node numbers and sink
 * names need no escaping, a node's label may hold anything.
 */
static char *
render_metrics(size_t *len)
{
	StrBuf		o = {0};
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
	double		now = now_seconds();
	int			i,
				s,
				b;

	out_header(&o, "orderexp_relay_build_info", "gauge",
			   "The relay's version and the versions of its libraries; always 1.");
	sb_printf(&o, "orderexp_relay_build_info{version=\"%s\",libpq=\"%d\",libcurl=\"%s\",libmicrohttpd=\"%s\"} 1\n",
			   RELAY_VERSION, PQlibVersion(), curl->version, MHD_get_version());
	out_header(&o, "orderexp_relay_start_time_seconds", "gauge",
			   "When the relay started, in seconds since the Unix epoch.");
	sb_printf(&o, "orderexp_relay_start_time_seconds %lld\n", (long long) start_time);

	pthread_mutex_lock(&lock);
	out_header(&o, "orderexp_relay_node_up", "gauge",
			   "1 while the relay is connected to the node and listens on it, 0 otherwise.");
	for (i = 0; i < metrics_nnodes; i++)
		sb_printf(&o, "orderexp_relay_node_up{node=\"%d\"} %d\n", i + 1,
				   node_metrics[i].up ? 1 : 0);
	out_header(&o, "orderexp_relay_node_info", "gauge",
			   "The node's database, host and port (-d option number in node); always 1.");
	for (i = 0; i < metrics_nnodes; i++)
	{
		sb_printf(&o, "orderexp_relay_node_info{node=\"%d\",address=", i + 1);
		out_label_value(&o, node_metrics[i].label);
		sb_append(&o, "} 1\n", 4);
	}
	out_header(&o, "orderexp_relay_claimed_total", "counter",
			   "Events claimed from the node.");
	for (i = 0; i < metrics_nnodes; i++)
		sb_printf(&o, "orderexp_relay_claimed_total{node=\"%d\"} %llu\n", i + 1,
				   node_metrics[i].claimed);
	out_node_counter(&o, "orderexp_relay_delivered_total",
					 "Events the sink took (delivered; acknowledged or about to be).",
					 offsetof(NodeMetrics, delivered));
	out_node_counter(&o, "orderexp_relay_failed_total",
					 "Deliveries that failed and will be tried again (sink \"none\": no route takes the event).",
					 offsetof(NodeMetrics, failed));
	out_node_counter(&o, "orderexp_relay_dead_total",
					 "Deliveries that failed on the event's last attempt: the outbox row is now dead.",
					 offsetof(NodeMetrics, dead));
	out_node_counter(&o, "orderexp_relay_retried_total",
					 "Deliveries started of events that had been claimed before (attempts > 1).",
					 offsetof(NodeMetrics, retried));
	out_header(&o, "orderexp_relay_oldest_claimed_event_age_seconds", "gauge",
			   "Seconds since the claim of the oldest event of the node this relay holds (claimed, not yet acknowledged or failed); 0 when none.");
	for (i = 0; i < metrics_nnodes; i++)
	{
		NodeMetrics *m = &node_metrics[i];
		double		age = 0;
		int			c;

		for (c = 0; c < m->nclaims; c++)
			if (now - m->claims[c].at > age)
				age = now - m->claims[c].at;
		sb_printf(&o, "orderexp_relay_oldest_claimed_event_age_seconds{node=\"%d\"} %.3f\n",
				   i + 1, age);
	}
	out_header(&o, "orderexp_relay_deliveries_in_flight", "gauge",
			   "Deliveries started and not finished yet.");
	for (s = 0; s < NSINKS; s++)
		if (sink_shown(s))
			sb_printf(&o, "orderexp_relay_deliveries_in_flight{sink=\"%s\"} %lld\n",
					   sink_label(s), sink_metrics[s].in_flight);
	out_header(&o, "orderexp_relay_delivery_duration_seconds", "histogram",
			   "Time the sink took to take an event, of the deliveries that succeeded.");
	for (s = 0; s < NSINKS; s++)
	{
		SinkMetrics *m = &sink_metrics[s];
		unsigned long long cum = 0;

		if (!sink_shown(s) || s == SINK_NTYPES)
			continue;
		for (b = 0; b < NBUCKETS; b++)
		{
			cum += m->bucket[b];
			sb_printf(&o, "orderexp_relay_delivery_duration_seconds_bucket{sink=\"%s\",le=\"%g\"} %llu\n",
					   sink_label(s), buckets[b], cum);
		}
		sb_printf(&o, "orderexp_relay_delivery_duration_seconds_bucket{sink=\"%s\",le=\"+Inf\"} %llu\n",
				   sink_label(s), m->count);
		sb_printf(&o, "orderexp_relay_delivery_duration_seconds_sum{sink=\"%s\"} %.6f\n",
				   sink_label(s), m->sum);
		sb_printf(&o, "orderexp_relay_delivery_duration_seconds_count{sink=\"%s\"} %llu\n",
				   sink_label(s), m->count);
	}
	pthread_mutex_unlock(&lock);

	*len = o.len;
	return o.data;
}

/* ---------------------------------------------------------------------
 * the HTTP server
 * ---------------------------------------------------------------------
 */
/* how many nodes are connected, of *NNODES */
static int
nodes_up(int *nnodes)
{
	int			i,
				up = 0;

	pthread_mutex_lock(&lock);
	for (i = 0; i < metrics_nnodes; i++)
		up += node_metrics[i].up;
	*nnodes = metrics_nnodes;
	pthread_mutex_unlock(&lock);
	return up;
}

/* queue BODY (malloc'ed, freed by libmicrohttpd) as the answer */
static enum MHD_Result
send_text(struct MHD_Connection *conn, unsigned int status,
		  const char *content_type, char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
	{
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* a short plain-text answer */
static enum MHD_Result
send_message(struct MHD_Connection *conn, unsigned int status, const char *msg)
{
	return send_text(conn, status, "text/plain; charset=utf-8", xstrdup(msg), strlen(msg));
}

/*
 * One request: /metrics, /healthz, or 404; GET and HEAD only (libmicrohttpd
 * leaves the body out of a HEAD answer).  libmicrohttpd calls this first
 * with the headers, then for each piece of the request's body, then once
 * more at its end: the answer is queued then (a body is read and ignored),
 * which lets the connection be kept alive for the next scrape.
 */
static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url,
	   const char *method, const char *version, const char *upload_data,
	   size_t *upload_data_size, void **con_cls)
{
	char	   *body;
	size_t		len;
	bool		is_metrics = strcmp(url, "/metrics") == 0,
				is_health = strcmp(url, "/healthz") == 0;

	static int	request_seen;

	(void) cls;
	(void) version;
	(void) upload_data;

	if (*con_cls == NULL)
	{
		*con_cls = &request_seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!is_metrics && !is_health)
		return send_message(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return send_message(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n");
	if (is_metrics)
	{
		body = render_metrics(&len);
		return send_text(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
						 body, len);
	}
	else
	{
		int			nnodes;
		int			up = nodes_up(&nnodes);
		char		msg[128];

		snprintf(msg, sizeof(msg), "%s: %d of %d nodes connected\n",
				 up > 0 ? "ok" : "unavailable", up, nnodes);
		return send_message(conn, up > 0 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, msg);
	}
}

/* libmicrohttpd's complaints go into the relay's log */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char		msg[512];

	(void) cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	logmsg("metrics server: %s", msg);
}

/*
 * HOST:PORT, [IPV6]:PORT: the host and port, or false with the reason.
 * The port is a number from 1 to 65535; a name is resolved at start.
 */
static bool
split_listen(const char *value, char **host, char **port, const char **why)
{
	const char *colon = strrchr(value, ':');
	const char *p;
	long		n;

	*host = *port = NULL;
	if (colon == NULL || colon == value)
	{
		*why = "ADDRESS:PORT expected, e.g. 127.0.0.1:9464 or [::1]:9464";
		return false;
	}
	if (colon[1] == '\0')
	{
		*why = "the port is missing";
		return false;
	}
	for (p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9' || p - colon > 5)
		{
			*why = "the port must be a number from 1 to 65535";
			return false;
		}
	n = atol(colon + 1);
	if (n < 1 || n > 65535)
	{
		*why = "the port must be a number from 1 to 65535";
		return false;
	}
	if (value[0] == '[')
	{
		if (colon - value < 3 || colon[-1] != ']')
		{
			*why = "an IPv6 address is written in brackets, e.g. [::1]:9464";
			return false;
		}
		*host = strndup(value + 1, colon - value - 2);
	}
	else
	{
		if (memchr(value, ':', colon - value) != NULL || memchr(value, ']', colon - value) != NULL)
		{
			*why = "an IPv6 address is written in brackets, e.g. [::1]:9464";
			return false;
		}
		*host = strndup(value, colon - value);
	}
	*port = xstrdup(colon + 1);
	if (*host == NULL)
		fatal(EXIT_INTERNAL, "out of memory");
	return true;
}

/* --metrics-listen's syntax, checked as options are read */
void
metrics_check_listen(const char *value)
{
	char	   *host,
			   *port;
	const char *why;

	if (!split_listen(value, &host, &port, &why))
		fatal(EXIT_USAGE, "invalid value \"%s\" for --metrics-listen: %s", value, why);
	free(host);
	free(port);
}

/*
 * A listening socket on --metrics-listen's address (the first one it
 * resolves to); the relay stops (exit 1) when it cannot have it.
 */
static int
listen_socket(const char *value)
{
	char	   *host,
			   *port;
	const char *why;
	struct addrinfo hints,
			   *ai;
	int			rc,
				fd,
				on = 1;

	if (!split_listen(value, &host, &port, &why))
		fatal(EXIT_USAGE, "invalid value \"%s\" for --metrics-listen: %s", value, why);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		fatal(EXIT_USAGE, "invalid value \"%s\" for --metrics-listen: %s", value,
			  rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		fatal(EXIT_INTERNAL, "could not create a socket for --metrics-listen: %s", strerror(errno));
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0)
		fatal(EXIT_USAGE, "could not listen on %s (--metrics-listen): %s", value, strerror(errno));
	freeaddrinfo(ai);
	free(host);
	free(port);
	return fd;
}

/*
 * Count NNODES nodes from the start (so that every series exists before the
 * first event), and serve the metrics if --metrics-listen asks for it.  The
 * server thread blocks SIGTERM and SIGINT: they are the main loop's.
 */
void
metrics_start(int nnodes)
{
	sigset_t	block,
				old;
	int			fd;

	start_time = time(NULL);
	pthread_mutex_lock(&lock);
	if (nnodes > metrics_nnodes)
		metrics_nnodes = nnodes;
	pthread_mutex_unlock(&lock);
	if (cfg.metrics_listen == NULL)
		return;

	fd = listen_socket(cfg.metrics_listen);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	daemon_handle = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
									 0, NULL, NULL, answer, NULL,
									 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
									 MHD_OPTION_LISTEN_SOCKET, fd,
									 MHD_OPTION_CONNECTION_LIMIT, 32,
									 MHD_OPTION_CONNECTION_TIMEOUT, 10,
									 MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (daemon_handle == NULL)
		fatal(EXIT_INTERNAL, "could not start the metrics server on %s", cfg.metrics_listen);
	if (cfg.verbose >= 0)
		logmsg("metrics on http://%s/metrics, health check on /healthz", cfg.metrics_listen);
}

/* stop serving (the end of the relay) */
void
metrics_stop(void)
{
	if (daemon_handle != NULL)
		MHD_stop_daemon(daemon_handle);
	daemon_handle = NULL;
}

/* ---------------------------------------------------------------------
 * systemd
 * ---------------------------------------------------------------------
 */

/*
 * Tell the service manager STATE ("READY=1", "STOPPING=1") if it asked
 * for it ($NOTIFY_SOCKET, Type=notify): sd_notify(3)'s protocol, one
 * datagram to a Unix socket, "@" for the abstract namespace.  Failures are
 * ignored, as sd_notify's are.
 */
void
service_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t		len;
	int			fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void) sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *) &sa,
				  offsetof(struct sockaddr_un, sun_path) + len);
	close(fd);
}
