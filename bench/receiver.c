/*-------------------------------------------------------------------------
 *
 * receiver.c
 *		A webhook receiver for bench/relay.sh, in C on libmicrohttpd.
 *
 * Usage:  receiver PORT-FILE [--latency-ms MS] [--port PORT]
 *
 * The same receiver as bench/receiver.py (same options, same counters,
 * same control requests), for a machine where the Python one would take
 * CPU the relay and the database need: on 2 cores, receiver.py's 25 to
 * 30 us of CPU a request made it answer about 10,000 requests a second
 * to `curl --parallel`, less than what claim() and ack() allow.
 *
 * Listens on 127.0.0.1 (PORT, default: a free one chosen by the kernel)
 * and writes the port it got into PORT-FILE once it accepts connections.
 * Every POST is answered "200 OK" after a latency: --latency-ms (default
 * 0), or the request's own `?latency_ms=N` query parameter.
 *
 * It counts, from the moment a request has been read to the moment its
 * answer is queued, the deliveries in flight, and keeps the most it saw at
 * once.  It also counts requests, the connections that posted (and the most
 * open at once), distinct event ids (the X-Orderexp-Id header, checked
 * against the "id" at the start of the JSON body), duplicates (an id seen
 * before) and malformed requests (bad).
 *
 * Control requests, which are not counted:
 *	 GET /stats   the counters as one JSON object
 *	 GET /reset   zero the counters (and forget the ids seen), answers the
 *				  counters as they were
 *
 * One thread: libmicrohttpd's epoll loop runs in main() (so that the
 * process's CPU time, which bench/relay.sh reads from /proc/PID/schedstat,
 * is all of it), and a delayed answer is a suspended connection, resumed
 * by the same loop when its time comes.  Ends on SIGTERM or SIGINT.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#define MAX_BODY	(1024 * 1024)

/* what the receiver saw since the last reset */
static struct
{
	long long	requests;
	long long	distinct;
	long long	duplicates;
	long long	bad;
	long long	in_flight;
	long long	max_in_flight;
	long long	connections;
	long long	max_connections;
	double		first;			/* 0: none yet */
	double		last;
}			C;

/* open connections that have posted; they live across resets */
static long long open_posted;

/* the ids seen: an open-addressing hash set (0 is the empty slot) */
static long long *ids;
static size_t ids_cap;

/* one request: its body so far; when delayed, its place in the timer list */
typedef struct Request
{
	char	   *body;
	size_t		len;
	bool		too_long;
	bool		counted;		/* a delivery, in flight */
	bool		waiting;		/* suspended until due */
	bool		due;			/* resumed: answer now */
	double		due_at;
	struct MHD_Connection *conn;
	struct Request *next;		/* in the timer list, by due_at */
} Request;

static Request *timers;			/* delayed answers, the earliest first */
static double default_latency;
static volatile sig_atomic_t stop;
static struct MHD_Response *ok_response;

static double
now_seconds(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static void
handle_stop(int signo)
{
	(void) signo;
	stop = 1;
}

static void
die(const char *msg)
{
	fprintf(stderr, "receiver: %s\n", msg);
	exit(1);
}

/* add ID to the set; false if it was there already */
static bool
ids_add(long long id)
{
	size_t		i;

	if ((size_t) (C.distinct + 1) * 2 > ids_cap)
	{
		long long  *old = ids;
		size_t		oldcap = ids_cap,
					j;

		ids_cap = ids_cap ? ids_cap * 2 : 65536;
		ids = calloc(ids_cap, sizeof(long long));
		if (ids == NULL)
			die("out of memory");
		for (j = 0; j < oldcap; j++)
			if (old[j] != 0)
			{
				i = ((unsigned long long) old[j] * 0x9E3779B97F4A7C15ULL) & (ids_cap - 1);
				while (ids[i] != 0)
					i = (i + 1) & (ids_cap - 1);
				ids[i] = old[j];
			}
		free(old);
	}
	i = ((unsigned long long) id * 0x9E3779B97F4A7C15ULL) & (ids_cap - 1);
	while (ids[i] != 0)
	{
		if (ids[i] == id)
			return false;
		i = (i + 1) & (ids_cap - 1);
	}
	ids[i] = id;
	C.distinct++;
	return true;
}

/* the counters as JSON, the same keys as receiver.py's */
static char *
snapshot(void)
{
	static char buf[1024];
	char		first[32] = "null",
				last[32] = "null";

	if (C.first > 0)
		snprintf(first, sizeof(first), "%.6f", C.first);
	if (C.last > 0)
		snprintf(last, sizeof(last), "%.6f", C.last);
	snprintf(buf, sizeof(buf),
			 "{\"requests\": %lld, \"distinct_ids\": %lld, \"duplicates\": %lld, "
			 "\"bad\": %lld, \"in_flight\": %lld, \"max_in_flight\": %lld, "
			 "\"connections\": %lld, \"max_connections\": %lld, "
			 "\"first_request\": %s, \"last_answer\": %s}\n",
			 C.requests, C.distinct, C.duplicates, C.bad, C.in_flight,
			 C.max_in_flight, C.connections, C.max_connections, first, last);
	return buf;
}

/* zero the counters; what is open or in flight now stays counted */
static void
reset(void)
{
	long long	flying = C.in_flight;

	memset(&C, 0, sizeof(C));
	C.connections = C.max_connections = open_posted;
	C.in_flight = C.max_in_flight = flying;
	free(ids);
	ids = NULL;
	ids_cap = 0;
}

static enum MHD_Result
respond_text(struct MHD_Connection *conn, unsigned int status, const char *text,
			 const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* the delivery is answered: no longer in flight */
static enum MHD_Result
answer_ok(struct MHD_Connection *conn, Request *rq)
{
	rq->counted = false;
	C.in_flight--;
	C.last = now_seconds();
	return MHD_queue_response(conn, MHD_HTTP_OK, ok_response);
}

/* a connection opened or closed: count those that posted */
static void
connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
				  enum MHD_ConnectionNotificationCode toe)
{
	bool	   *posted;

	(void) cls;
	(void) conn;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		if ((posted = calloc(1, sizeof(bool))) == NULL)
			die("out of memory");
		*socket_context = posted;
		return;
	}
	posted = *socket_context;
	if (posted != NULL && *posted)
	{
		open_posted--;
		C.connections = open_posted;
	}
	free(posted);
	*socket_context = NULL;
}

/* the latency of this request: ?latency_ms=N or the default, in seconds */
static bool
request_latency(struct MHD_Connection *conn, double *latency)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "latency_ms");
	char	   *end;

	*latency = default_latency;
	if (v == NULL)
		return true;
	*latency = strtod(v, &end) / 1000.0;
	return end != v && *end == '\0';
}

/* is the body's "id" (at its start) the header's? */
static bool
id_matches(const Request *rq, const char *hid)
{
	const char *p = rq->body,
			   *e = rq->body + rq->len,
			   *d;

	if (p == NULL || hid == NULL || *hid == '\0')
		return false;
	while (p < e && isspace((unsigned char) *p))
		p++;
	if (p >= e || *p++ != '{')
		return false;
	while (p < e && isspace((unsigned char) *p))
		p++;
	if (e - p < 4 || memcmp(p, "\"id\"", 4) != 0)
		return false;
	p += 4;
	while (p < e && isspace((unsigned char) *p))
		p++;
	if (p >= e || *p++ != ':')
		return false;
	while (p < e && isspace((unsigned char) *p))
		p++;
	d = p;
	while (p < e && isdigit((unsigned char) *p))
		p++;
	if (p == d)
		return false;
	return strlen(hid) == (size_t) (p - d) && memcmp(hid, d, p - d) == 0;
}

/* a delivery is read: count it, then answer it now or when it is due */
static enum MHD_Result
delivery(struct MHD_Connection *conn, Request *rq, double latency)
{
	const union MHD_ConnectionInfo *ci;
	const char *hid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Orderexp-Id");
	double		now = now_seconds();

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci != NULL && ci->socket_context != NULL && !*(bool *) ci->socket_context)
	{
		/* the connection's first POST */
		*(bool *) ci->socket_context = true;
		open_posted++;
		C.connections = open_posted;
		if (open_posted > C.max_connections)
			C.max_connections = open_posted;
	}
	if (C.first == 0)
		C.first = now;
	C.requests++;
	if (rq->too_long || !id_matches(rq, hid))
		C.bad++;
	else if (!ids_add(atoll(hid)))
		C.duplicates++;
	rq->counted = true;
	C.in_flight++;
	if (C.in_flight > C.max_in_flight)
		C.max_in_flight = C.in_flight;
	if (latency <= 0)
		return answer_ok(conn, rq);

	/* into the timer list, by due time */
	{
		Request   **p = &timers;

		rq->due_at = now + latency;
		rq->conn = conn;
		rq->waiting = true;
		while (*p && (*p)->due_at <= rq->due_at)
			p = &(*p)->next;
		rq->next = *p;
		*p = rq;
	}
	MHD_suspend_connection(conn);
	return MHD_YES;
}

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **req_cls)
{
	Request    *rq = *req_cls;
	double		latency;

	(void) cls;
	(void) version;
	if (rq == NULL)
	{
		rq = calloc(1, sizeof(Request));
		if (rq == NULL)
			return MHD_NO;
		*req_cls = rq;
		return MHD_YES;
	}
	if (rq->due)
		return answer_ok(conn, rq);
	if (*upload_data_size > 0)
	{
		if (rq->len + *upload_data_size > MAX_BODY)
			rq->too_long = true;
		else
		{
			char	   *b = realloc(rq->body, rq->len + *upload_data_size + 1);

			if (b == NULL)
				return MHD_NO;
			memcpy(b + rq->len, upload_data, *upload_data_size);
			rq->body = b;
			rq->len += *upload_data_size;
			rq->body[rq->len] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "GET") == 0 &&
		(strcmp(url, "/stats") == 0 || strcmp(url, "/reset") == 0))
	{
		const char *snap = snapshot();
		enum MHD_Result ret = respond_text(conn, MHD_HTTP_OK, snap, "application/json");

		if (strcmp(url, "/reset") == 0)
			reset();
		return ret;
	}
	if (strcmp(method, "POST") != 0)
	{
		C.bad++;
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "", "text/plain");
	}
	if (!request_latency(conn, &latency))
	{
		C.bad++;
		return respond_text(conn, MHD_HTTP_BAD_REQUEST, "", "text/plain");
	}
	return delivery(conn, rq, latency);
}

/* a request is over (answered, or its client went away) */
static void
completed(void *cls, struct MHD_Connection *conn, void **req_cls,
		  enum MHD_RequestTerminationCode toe)
{
	Request    *rq = *req_cls;

	(void) cls;
	(void) conn;
	(void) toe;
	if (rq == NULL)
		return;
	if (rq->waiting)
	{
		Request   **p = &timers;

		while (*p && *p != rq)
			p = &(*p)->next;
		if (*p)
			*p = rq->next;
	}
	if (rq->counted)
		C.in_flight--;
	free(rq->body);
	free(rq);
	*req_cls = NULL;
}

int
main(int argc, char **argv)
{
	const char *port_file = NULL;
	int			port = 0,
				i;
	struct MHD_Daemon *d;
	struct sockaddr_in addr;
	const union MHD_DaemonInfo *info;
	struct sigaction sa;
	char		tmp[4096];
	FILE	   *f;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc)
			default_latency = atof(argv[++i]) / 1000.0;
		else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (port_file == NULL && argv[i][0] != '-')
			port_file = argv[i];
		else
		{
			fprintf(stderr, "usage: receiver PORT-FILE [--latency-ms MS] [--port PORT]\n");
			return 2;
		}
	}
	if (port_file == NULL)
	{
		fprintf(stderr, "usage: receiver PORT-FILE [--latency-ms MS] [--port PORT]\n");
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok_response = MHD_create_response_from_buffer(2, (void *) "ok", MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(ok_response, "Content-Type", "text/plain");
	d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
						 0, NULL, NULL, access_handler, NULL,
						 MHD_OPTION_SOCK_ADDR, &addr,
						 MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
						 MHD_OPTION_CONNECTION_LIMIT, 4096,
						 MHD_OPTION_CONNECTION_TIMEOUT, 0,
						 MHD_OPTION_NOTIFY_CONNECTION, connection_notify, NULL,
						 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
						 MHD_OPTION_END);
	if (d == NULL)
		die("could not start the HTTP server");
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0)
		die("could not read the port");
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%u\n", info->port) < 0 || fclose(f) != 0)
		die("could not write the port file");
	if (rename(tmp, port_file) != 0)
		die("could not rename the port file");

	while (!stop)
	{
		double		now = now_seconds();
		int64_t		wait_ms = 1000;

		/* resume the delayed answers that are due */
		while (timers && timers->due_at <= now)
		{
			Request    *rq = timers;

			timers = rq->next;
			rq->waiting = false;
			rq->due = true;
			MHD_resume_connection(rq->conn);
		}
		if (timers)
		{
			wait_ms = (int64_t) ((timers->due_at - now) * 1000) + 1;
			if (wait_ms < 0)
				wait_ms = 0;
		}
		(void) MHD_run_wait(d, (int32_t) wait_ms);
	}
	MHD_stop_daemon(d);
	return 0;
}
