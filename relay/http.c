/*-------------------------------------------------------------------------
 *
 * http.c
 *		A small HTTP/1.1 client for the webhook sink's plain http:// URL.
 *
 * Why not libcurl, which the relay uses for everything else: against a
 * receiver that answers at once, libcurl 7.88 (Debian 12) took about three
 * quarters of the relay's CPU, some 100,000 instructions a request
 * (callgrind), about half of them its printf writing each request's
 * headers a character at a time into a growing buffer, the rest parsing
 * the URL again, searching its connection cache and an extra poll() per
 * request to see whether a kept-alive connection is still alive.  No
 * option changes that.  This client writes a request with memcpy and sends
 * it with one send(), reads the answer with one recv(), and notices a
 * connection the server closed through the relay's poll(); the relay
 * then takes less CPU per event than the receiver's libmicrohttpd.
 *
 * It does only what a webhook POST needs: one target (scheme http, a host
 * name or address, a port, a path), connections kept alive and reused
 * (at most the webhook sink's window), one request at a time on each
 * (no pipelining), the answer's status line, Content-Length, chunked
 * bodies, bodies up to the connection's close, interim 1xx answers,
 * Connection: close, Retry-After (seconds or an HTTP date), a deadline
 * per request.  A request sent on a kept-alive connection that the server
 * had closed meanwhile (no byte of an answer came back) is sent again,
 * once, on a new connection, as libcurl does.  Anything else is left to
 * libcurl: https, a user or password in the URL, a proxy from the
 * environment (http_proxy, all_proxy, ALL_PROXY), a URL this client does
 * not take as it is (spaces, "." segments, non-ASCII bytes).  Error texts
 * are libcurl's where there is one, so that last_error reads the same.
 *
 * The host name is resolved (getaddrinfo(), which blocks) when a new
 * connection is opened and the last answer is more than a minute old;
 * connections are kept, so that is rare.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE				/* SOCK_CLOEXEC, SOCK_NONBLOCK */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>			/* curl_getdate(): Retry-After dates */

#include "common.h"
#include "http.h"
#include "template.h"

#define HTTP_MAX_LINE	65536	/* longest line of an answer's head */
#define HTTP_READ_MIN	4096	/* room for one recv() */
#define HTTP_DNS_TTL	60.0	/* seconds a resolved address is used */

typedef enum ConnState
{
	CONN_CONNECTING,
	CONN_SENDING,
	CONN_READING,
	CONN_IDLE
} ConnState;

/* where the answer's parser is */
typedef enum ParseState
{
	P_STATUS,					/* the status line */
	P_HEADERS,					/* header lines, until an empty one */
	P_BODY,						/* Content-Length bytes */
	P_CHUNK_SIZE,				/* a chunk's size line */
	P_CHUNK_DATA,				/* a chunk's bytes */
	P_CHUNK_END,				/* the CRLF after them */
	P_TRAILERS,					/* trailer lines after the last chunk */
	P_UNTIL_CLOSE,				/* a body without length: until EOF */
	P_DONE
} ParseState;

/* resolved addresses, shared by the connections opened with them */
typedef struct AddrList
{
	struct addrinfo *ai;
	double		resolved;
	int			refs;			/* connections using it, +1 while current */
} AddrList;

typedef struct HttpConn HttpConn;

struct HttpCall
{
	char	   *req;			/* the whole request: head and body */
	size_t		len;
	size_t		sent;
	double		started;
	double		deadline;
	void	   *arg;
	HttpConn   *conn;			/* NULL while queued */
	HttpCall   *next;			/* in the queue */
	bool		retried;		/* sent again on a new connection */
	bool		ended;
	size_t		received;		/* bytes of the answer */
	long		status;			/* 0: no answer */
	long		retry_after;	/* seconds, -1: none */
	char		err[256];
};

struct HttpConn
{
	int			fd;
	ConnState	state;
	bool		used;			/* has carried an answer before */
	bool		closed;			/* closed, freed by reap() */
	AddrList   *addrs;
	struct addrinfo *addr;		/* the one connected (to) */
	int			connect_errno;
	HttpCall   *call;
	char	   *in;				/* bytes read, not yet parsed */
	size_t		inlen;
	size_t		incap;
	ParseState	ps;
	long long	remaining;		/* of the body or chunk */
	long long	content_length; /* -1: none */
	bool		chunked;
	bool		close_after;
	long		status;
	long		retry_after;
	HttpConn   *next_closed;
};

static struct
{
	bool		enabled;
	char	   *host;			/* without [] */
	char		port[8];
	char	   *path;			/* "/..." with the query */
	char	   *host_header;	/* "host" or "host:port", [v6] */
	AddrList   *addrs;
	int			max_conns;
	HttpDone	done;
}			target;

static HttpConn **conns;		/* every open connection */
static int	nconns;
static HttpConn **idle;			/* kept-alive, ready for a request */
static int	nidle;
static HttpConn **polled;		/* conns of http_pollfds(), in order */
static HttpConn *closed_conns;	/* closed, to be freed */
static HttpCall *queue_head;	/* calls waiting for a connection */
static HttpCall *queue_tail;

static bool parse_url(const char *url);
static AddrList *resolve(HttpCall *call);
static void release_addrs(AddrList *a);
static void assign(HttpCall *call);
static void open_conn(HttpCall *call);
static void connect_next(HttpConn *conn);
static void connected(HttpConn *conn);
static void try_send(HttpConn *conn);
static void do_read(HttpConn *conn);
static int	parse(HttpConn *conn);
static int	header_line(HttpConn *conn, char *line, size_t len);
static long retry_after_value(const char *v);
static void answer_complete(HttpConn *conn);
static void conn_failed(HttpConn *conn, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static void end_call(HttpCall *call, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static void close_conn(HttpConn *conn);
static void serve_queue(void);
static void reap(void);

/*
 * Take URL for the built-in client if it can: returns false (and the
 * webhook sink uses libcurl) when it cannot.  MAX_CONNS: connections kept
 * at most (the sink's window); DONE: called for every call that ended.
 */
bool
http_init(const char *url, int max_conns, HttpDone done)
{
	const char *v;

	target.enabled = false;
	/* libcurl reads these for http:// URLs; leave proxies to it */
	if (((v = getenv("http_proxy")) != NULL && v[0] != '\0') ||
		((v = getenv("all_proxy")) != NULL && v[0] != '\0') ||
		((v = getenv("ALL_PROXY")) != NULL && v[0] != '\0'))
		return false;
	if (url == NULL || !parse_url(url))
		return false;
	target.max_conns = max_conns > 0 ? max_conns : 1;
	target.done = done;
	conns = xmalloc(sizeof(HttpConn *) * target.max_conns);
	idle = xmalloc(sizeof(HttpConn *) * target.max_conns);
	polled = xmalloc(sizeof(HttpConn *) * target.max_conns);
	target.enabled = true;
	return true;
}

bool
http_enabled(void)
{
	return target.enabled;
}

/*
 * Split an http:// URL into host, port and path; false for what this
 * client leaves to libcurl (see the file's comment).
 */
static bool
parse_url(const char *url)
{
	const char *p,
			   *host,
			   *host_end,
			   *auth_end;
	size_t		i;
	long		port = 80;
	StrBuf		b = {0};

	if (strncasecmp(url, "http://", 7) != 0)
		return false;
	for (i = 0; url[i] != '\0'; i++)
		if ((unsigned char) url[i] <= ' ' || (unsigned char) url[i] >= 0x7f)
			return false;
	host = url + 7;
	auth_end = host + strcspn(host, "/?#");
	if (memchr(host, '@', auth_end - host) != NULL)
		return false;			/* a login: libcurl's basic auth */
	if (*host == '[')
	{
		host_end = memchr(host, ']', auth_end - host);
		if (host_end == NULL)
			return false;
		p = host_end + 1;
		host++;
	}
	else
	{
		host_end = memchr(host, ':', auth_end - host);
		if (host_end == NULL)
			host_end = auth_end;
		p = host_end;
	}
	if (host_end == host)
		return false;
	for (i = 0; host + i < host_end; i++)
		if (!isalnum((unsigned char) host[i]) && strchr("-._:", host[i]) == NULL)
			return false;
	if (p < auth_end)
	{
		char	   *end;

		if (*p != ':' || p + 1 == auth_end)
			return false;
		port = strtol(p + 1, &end, 10);
		if (end != auth_end || port < 1 || port > 65535)
			return false;
	}
	else if (p != auth_end)
		return false;

	/* the path and query; the fragment is not sent */
	p = auth_end;
	if (*p == '#' || *p == '\0')
		sb_puts(&b, "/");
	else
	{
		size_t		n = strcspn(p, "#");

		if (*p == '?')
			sb_puts(&b, "/");
		sb_append(&b, p, n);
		/* "." and ".." segments: libcurl removes them */
		if (strstr(b.data, "/.") != NULL)
		{
			free(b.data);
			return false;
		}
	}
	target.path = b.data;
	target.host = xmalloc(host_end - host + 1);
	memcpy(target.host, host, host_end - host);
	target.host[host_end - host] = '\0';
	snprintf(target.port, sizeof(target.port), "%ld", port);
	memset(&b, 0, sizeof(b));
	if (strchr(target.host, ':') != NULL)
		sb_printf(&b, "[%s]", target.host);
	else
		sb_puts(&b, target.host);
	if (port != 80)
		sb_printf(&b, ":%ld", port);
	target.host_header = b.data;
	return true;
}

/* close every connection, forget the target */
void
http_cleanup(void)
{
	while (nconns > 0)
		close_conn(conns[nconns - 1]);
	reap();
	if (target.addrs)
		release_addrs(target.addrs);
	target.addrs = NULL;
	free(conns);
	free(idle);
	free(polled);
	conns = idle = polled = NULL;
	free(target.host);
	free(target.path);
	free(target.host_header);
	memset(&target, 0, sizeof(target));
}

/* "METHOD /path HTTP/1.1" and Host: the start of a request in REQ */
void
http_request_head(StrBuf *req, const char *method)
{
	sb_puts(req, method);
	sb_append(req, " ", 1);
	sb_puts(req, target.path);
	sb_puts(req, " HTTP/1.1\r\nHost: ");
	sb_puts(req, target.host_header);
	sb_append(req, "\r\n", 2);
}

/*
 * Send the request whose head (http_request_head() and the caller's
 * header lines, each ending in CRLF) is in REQ, with BODY; it must end by
 * DEADLINE (now_seconds() time).  REQ's buffer is taken (and REQ
 * emptied).  ARG goes to the DONE callback, which may be called before
 * this returns (a request that cannot start).
 */
HttpCall *
http_start(StrBuf *req, const char *body, size_t bodylen, double deadline, void *arg)
{
	HttpCall   *call = xmalloc(sizeof(HttpCall));
	char		cl[48];

	memset(call, 0, sizeof(*call));
	snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n", bodylen);
	sb_puts(req, cl);
	sb_append(req, body, bodylen);
	call->req = req->data;
	call->len = req->len;
	memset(req, 0, sizeof(*req));
	call->started = now_seconds();
	call->deadline = deadline;
	call->arg = arg;
	call->retry_after = -1;
	assign(call);
	return call;
}

/* a kept-alive connection for CALL, a new one, or a place in the queue */
static void
assign(HttpCall *call)
{
	if (nidle > 0)
	{
		HttpConn   *conn = idle[--nidle];

		conn->call = call;
		call->conn = conn;
		conn->state = CONN_SENDING;
		try_send(conn);
	}
	else if (nconns < target.max_conns)
		open_conn(call);
	else
	{
		call->next = NULL;
		if (queue_tail)
			queue_tail->next = call;
		else
			queue_head = call;
		queue_tail = call;
	}
}

/* queued calls onto connections that became free */
static void
serve_queue(void)
{
	while (queue_head != NULL && (nidle > 0 || nconns < target.max_conns))
	{
		HttpCall   *call = queue_head;

		queue_head = call->next;
		if (queue_head == NULL)
			queue_tail = NULL;
		call->next = NULL;
		assign(call);
	}
}

/*
 * The target's addresses, resolved again when they are older than
 * HTTP_DNS_TTL; NULL (and CALL ended) when the name does not resolve.
 */
static AddrList *
resolve(HttpCall *call)
{
	struct addrinfo hints,
			   *ai = NULL;
	int			rc;
	double		now = now_seconds();
	AddrList   *a;

	if (target.addrs && now - target.addrs->resolved < HTTP_DNS_TTL)
		return target.addrs;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(target.host, target.port, &hints, &ai);
	if (rc != 0 || ai == NULL)
	{
		end_call(call, "Could not resolve host: %s", target.host);
		return NULL;
	}
	if (target.addrs)
		release_addrs(target.addrs);
	a = xmalloc(sizeof(AddrList));
	a->ai = ai;
	a->resolved = now;
	a->refs = 1;
	target.addrs = a;
	return a;
}

static void
release_addrs(AddrList *a)
{
	if (--a->refs == 0)
	{
		freeaddrinfo(a->ai);
		free(a);
	}
}

/* a new connection for CALL */
static void
open_conn(HttpCall *call)
{
	AddrList   *a = resolve(call);
	HttpConn   *conn;

	if (a == NULL)
		return;
	conn = xmalloc(sizeof(HttpConn));
	memset(conn, 0, sizeof(*conn));
	conn->fd = -1;
	conn->addrs = a;
	a->refs++;
	conn->addr = a->ai;
	conn->call = call;
	call->conn = conn;
	conns[nconns++] = conn;
	connect_next(conn);
}

/* connect CONN to its address, or the next one; the call fails after the last */
static void
connect_next(HttpConn *conn)
{
	for (; conn->addr != NULL; conn->addr = conn->addr->ai_next)
	{
		struct addrinfo *ai = conn->addr;
		int			one = 1;

		conn->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
						  ai->ai_protocol);
		if (conn->fd < 0)
		{
			conn->connect_errno = errno;
			continue;
		}
		(void) setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(conn->fd, ai->ai_addr, ai->ai_addrlen) == 0)
		{
			connected(conn);
			return;
		}
		if (errno == EINPROGRESS)
		{
			conn->state = CONN_CONNECTING;
			return;
		}
		conn->connect_errno = errno;
		close(conn->fd);
		conn->fd = -1;
	}
	conn_failed(conn, "Failed to connect to %s port %s after %ld ms: %s",
				target.host, target.port,
				(long) ((now_seconds() - conn->call->started) * 1000),
				strerror(conn->connect_errno ? conn->connect_errno : ECONNREFUSED));
}

static void
connected(HttpConn *conn)
{
	conn->state = CONN_SENDING;
	try_send(conn);
}

/* send what is left of the request; then wait for the answer */
static void
try_send(HttpConn *conn)
{
	HttpCall   *call = conn->call;

	while (call->sent < call->len)
	{
		ssize_t		n = send(conn->fd, call->req + call->sent, call->len - call->sent,
							 MSG_NOSIGNAL);

		if (n > 0)
			call->sent += n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		else
		{
			conn_failed(conn, "Send failure: %s", strerror(errno));
			return;
		}
	}
	conn->state = CONN_READING;
	conn->ps = P_STATUS;
}

/* read what the server sent on CONN, and parse it */
static void
do_read(HttpConn *conn)
{
	for (;;)
	{
		ssize_t		n;
		size_t		room;
		int			rc;

		if (conn->incap - conn->inlen < HTTP_READ_MIN)
		{
			conn->incap = conn->incap ? conn->incap * 2 : 4 * HTTP_READ_MIN;
			conn->in = realloc(conn->in, conn->incap);
			if (conn->in == NULL)
				fatal(EXIT_INTERNAL, "out of memory");
		}
		room = conn->incap - conn->inlen;
		n = recv(conn->fd, conn->in + conn->inlen, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0)
		{
			conn_failed(conn, "Recv failure: %s", strerror(errno));
			return;
		}
		if (n == 0)
		{
			if (conn->state == CONN_READING && conn->ps == P_UNTIL_CLOSE)
				answer_complete(conn);
			else if (conn->call == NULL || conn->call->received == 0)
				conn_failed(conn, "Empty reply from server");
			else
				conn_failed(conn, "transfer closed with outstanding read data remaining");
			return;
		}
		if (conn->state != CONN_READING)
		{
			/* bytes before a request, or before it was sent: not HTTP */
			conn_failed(conn, "Weird server reply");
			return;
		}
		conn->call->received += n;
		conn->inlen += n;
		rc = parse(conn);
		if (rc < 0)
			return;
		if (rc > 0)
		{
			answer_complete(conn);
			return;
		}
		/* a short read: the rest comes with the next poll() */
		if ((size_t) n < room)
			return;
	}
}

/*
 * Parse CONN's bytes: 1 when the answer is complete, 0 when more is
 * needed, -1 when it is not HTTP (the call has failed, the connection is
 * closed).
 */
static int
parse(HttpConn *conn)
{
	size_t		p = 0;
	int			rc = 0;

	while (rc == 0)
	{
		switch (conn->ps)
		{
			case P_STATUS:
			case P_HEADERS:
			case P_CHUNK_SIZE:
			case P_CHUNK_END:
			case P_TRAILERS:
				{
					char	   *line = conn->in + p;
					char	   *nl = memchr(line, '\n', conn->inlen - p);
					size_t		len;

					if (nl == NULL)
					{
						if (conn->inlen - p > HTTP_MAX_LINE)
						{
							conn_failed(conn, "answer line longer than %d bytes", HTTP_MAX_LINE);
							return -1;
						}
						goto more;
					}
					p = nl + 1 - conn->in;
					len = nl - line;
					if (len > 0 && line[len - 1] == '\r')
						len--;
					line[len] = '\0';
					if (header_line(conn, line, len) < 0)
						return -1;
				}
				break;
			case P_BODY:
			case P_CHUNK_DATA:
				{
					size_t		take = conn->inlen - p;

					if ((long long) take > conn->remaining)
						take = (size_t) conn->remaining;
					p += take;
					conn->remaining -= take;
					if (conn->remaining > 0)
						goto more;
					conn->ps = conn->ps == P_BODY ? P_DONE : P_CHUNK_END;
				}
				break;
			case P_UNTIL_CLOSE:
				p = conn->inlen;
				goto more;
			case P_DONE:
				rc = 1;
				break;
		}
	}
more:
	/* keep what is not parsed yet; bytes after the answer: close */
	if (rc > 0 && p < conn->inlen)
		conn->close_after = true;
	memmove(conn->in, conn->in + p, conn->inlen - p);
	conn->inlen -= p;
	return rc;
}

/* one line of the answer's head, chunk sizes or trailers (without CRLF) */
static int
header_line(HttpConn *conn, char *line, size_t len)
{
	char	   *colon,
			   *v,
			   *end;

	switch (conn->ps)
	{
		case P_STATUS:
			if (len < 12 || strncmp(line, "HTTP/1.", 7) != 0 ||
				!isdigit((unsigned char) line[7]) || line[8] != ' ' ||
				!isdigit((unsigned char) line[9]) || !isdigit((unsigned char) line[10]) ||
				!isdigit((unsigned char) line[11]) || (len > 12 && line[12] != ' '))
			{
				conn_failed(conn, "Weird server reply");
				return -1;
			}
			conn->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
			conn->close_after = line[7] == '0';
			conn->content_length = -1;
			conn->chunked = false;
			conn->retry_after = -1;
			conn->ps = P_HEADERS;
			return 0;
		case P_HEADERS:
			break;
		case P_CHUNK_SIZE:
			{
				unsigned long long size = 0;
				size_t		i;

				for (i = 0; i < len && isxdigit((unsigned char) line[i]); i++)
				{
					if (i >= 15)
					{
						conn_failed(conn, "invalid chunk size");
						return -1;
					}
					size = size * 16 + (isdigit((unsigned char) line[i]) ? line[i] - '0' :
										tolower((unsigned char) line[i]) - 'a' + 10);
				}
				if (i == 0 || (i < len && line[i] != ';' && line[i] != ' ' && line[i] != '\t'))
				{
					conn_failed(conn, "invalid chunk size");
					return -1;
				}
				conn->remaining = (long long) size;
				conn->ps = size == 0 ? P_TRAILERS : P_CHUNK_DATA;
				return 0;
			}
		case P_CHUNK_END:
			if (len != 0)
			{
				conn_failed(conn, "invalid chunk end");
				return -1;
			}
			conn->ps = P_CHUNK_SIZE;
			return 0;
		case P_TRAILERS:
			if (len == 0)
				conn->ps = P_DONE;
			return 0;
		default:
			return 0;
	}

	/* P_HEADERS: the end of the head, or one header */
	if (len == 0)
	{
		if (conn->status >= 100 && conn->status < 200)
		{
			if (conn->status == 101)
			{
				conn_failed(conn, "unexpected HTTP status 101");
				return -1;
			}
			conn->ps = P_STATUS;	/* an interim answer: the real one follows */
		}
		else if (conn->status == 204 || conn->status == 304)
			conn->ps = P_DONE;
		else if (conn->chunked)
			conn->ps = P_CHUNK_SIZE;
		else if (conn->content_length >= 0)
		{
			conn->remaining = conn->content_length;
			conn->ps = conn->remaining > 0 ? P_BODY : P_DONE;
		}
		else
		{
			conn->ps = P_UNTIL_CLOSE;
			conn->close_after = true;
		}
		return 0;
	}
	if (line[0] == ' ' || line[0] == '\t' || (colon = strchr(line, ':')) == NULL)
		return 0;				/* a folded line, or not a header: ignored */
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	end = line + len;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (strcasecmp(line, "content-length") == 0)
	{
		char	   *e;
		long long	n;

		errno = 0;
		n = strtoll(v, &e, 10);
		if (e == v || *e != '\0' || n < 0 || errno != 0 || !isdigit((unsigned char) *v))
		{
			conn_failed(conn, "invalid Content-Length: %.64s", v);
			return -1;
		}
		conn->content_length = n;
	}
	else if (strcasecmp(line, "transfer-encoding") == 0)
		conn->chunked = strcasestr(v, "chunked") != NULL;
	else if (strcasecmp(line, "connection") == 0)
	{
		if (strcasestr(v, "close") != NULL)
			conn->close_after = true;
		else if (strcasestr(v, "keep-alive") != NULL)
			conn->close_after = false;
	}
	else if (strcasecmp(line, "retry-after") == 0)
		conn->retry_after = retry_after_value(v);
	return 0;
}

/*
 * Retry-After in seconds from now: a number of seconds, or an HTTP date
 * (0 when it is past); -1 when it is neither
 */
static long
retry_after_value(const char *v)
{
	time_t		when;

	if (*v >= '0' && *v <= '9')
	{
		char	   *e;
		long		n = strtol(v, &e, 10);

		return *e == '\0' ? n : -1;
	}
	when = curl_getdate(v, NULL);
	if (when == (time_t) -1)
		return -1;
	when -= time(NULL);
	return when > 0 ? (long) when : 0;
}

/* CONN's answer is in: its call ends, CONN is kept alive or closed */
static void
answer_complete(HttpConn *conn)
{
	HttpCall   *call = conn->call;

	call->status = conn->status;
	call->retry_after = conn->retry_after;
	conn->call = NULL;
	call->conn = NULL;
	conn->used = true;
	conn->ps = P_STATUS;
	if (conn->close_after)
		close_conn(conn);
	else
	{
		conn->state = CONN_IDLE;
		idle[nidle++] = conn;
	}
	end_call(call, NULL);
	serve_queue();
}

/*
 * CONN failed (connect, send, receive, a bad answer): its call fails with
 * this reason and CONN is closed; but a request on a kept-alive
 * connection that got no byte of an answer goes once more, on a new
 * connection (the server closed the old one while it was idle).
 */
static void
conn_failed(HttpConn *conn, const char *fmt,...)
{
	HttpCall   *call = conn->call;
	va_list		ap;
	char		msg[256];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn->call = NULL;
	if (call)
		call->conn = NULL;
	if (call && conn->used && call->received == 0 && !call->retried &&
		conn->state != CONN_CONNECTING)
	{
		close_conn(conn);
		call->retried = true;
		call->sent = 0;
		open_conn(call);
		return;
	}
	close_conn(conn);
	if (call)
		end_call(call, "%s", msg);
	serve_queue();
}

/* CALL has ended: with an answer (FMT NULL), or failed with FMT's reason */
static void
end_call(HttpCall *call, const char *fmt,...)
{
	if (fmt != NULL)
	{
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(call->err, sizeof(call->err), fmt, ap);
		va_end(ap);
		call->status = 0;
	}
	call->ended = true;
	call->conn = NULL;
	free(call->req);
	call->req = NULL;
	target.done(call, call->arg);
}

/* close CONN and drop it from the lists; freed by reap() */
static void
close_conn(HttpConn *conn)
{
	int			i;

	if (conn->closed)
		return;
	conn->closed = true;
	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
	for (i = 0; i < nconns; i++)
		if (conns[i] == conn)
		{
			conns[i] = conns[--nconns];
			break;
		}
	if (conn->state == CONN_IDLE)
		for (i = 0; i < nidle; i++)
			if (idle[i] == conn)
			{
				idle[i] = idle[--nidle];
				break;
			}
	conn->next_closed = closed_conns;
	closed_conns = conn;
}

/* free the connections closed since the last time */
static void
reap(void)
{
	while (closed_conns)
	{
		HttpConn   *c = closed_conns;

		closed_conns = c->next_closed;
		if (c->addrs)
			release_addrs(c->addrs);
		free(c->in);
		free(c);
	}
}

/* descriptors http_pollfds() may fill */
int
http_nfds(void)
{
	return nconns;
}

/*
 * FDS (room for http_nfds()) gets every connection's socket with what it
 * waits for; idle ones are watched for the server closing them.  UNTIL is
 * lowered to the earliest deadline of a call.  Returns how many.
 */
int
http_pollfds(struct pollfd *fds, double *until)
{
	int			i;
	HttpCall   *q;

	reap();
	for (i = 0; i < nconns; i++)
	{
		HttpConn   *c = conns[i];

		polled[i] = c;
		fds[i].fd = c->fd;
		fds[i].events = (c->state == CONN_CONNECTING || c->state == CONN_SENDING) ?
			POLLOUT : POLLIN;
		fds[i].revents = 0;
		if (c->call && c->call->deadline < *until)
			*until = c->call->deadline;
	}
	for (q = queue_head; q; q = q->next)
		if (q->deadline < *until)
			*until = q->deadline;
	return nconns;
}

/*
 * After poll(): move on the connections of FDS (as http_pollfds() filled
 * them, with revents), then end the calls whose deadline has passed.
 */
void
http_io(const struct pollfd *fds, int nfds)
{
	int			i;
	double		now;
	HttpCall   *q,
			   *prev,
			   *next;

	for (i = 0; i < nfds; i++)
	{
		HttpConn   *c = polled[i];

		if (c->closed || fds[i].revents == 0)
			continue;
		switch (c->state)
		{
			case CONN_CONNECTING:
				{
					int			err = 0;
					socklen_t	len = sizeof(err);

					if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
						err = errno;
					if (err == 0)
						connected(c);
					else
					{
						c->connect_errno = err;
						close(c->fd);
						c->fd = -1;
						c->addr = c->addr->ai_next;
						connect_next(c);
					}
				}
				break;
			case CONN_SENDING:
				try_send(c);
				break;
			case CONN_READING:
			case CONN_IDLE:
				/* idle: the server closed it (or sent what nobody asked) */
				do_read(c);
				break;
		}
	}

	/* deadlines */
	now = now_seconds();
	for (i = nconns - 1; i >= 0; i--)
	{
		HttpConn   *c = conns[i];
		HttpCall   *call = c->call;

		if (call == NULL || call->deadline > now)
			continue;
		c->call = NULL;
		close_conn(c);
		if (c->state == CONN_CONNECTING)
			end_call(call, "Connection timed out after %ld milliseconds",
					 (long) ((now - call->started) * 1000));
		else
			end_call(call, "Operation timed out after %ld milliseconds with %zu bytes received",
					 (long) ((now - call->started) * 1000), call->received);
	}
	for (prev = NULL, q = queue_head; q; q = next)
	{
		next = q->next;
		if (q->deadline > now)
		{
			prev = q;
			continue;
		}
		if (prev)
			prev->next = next;
		else
			queue_head = next;
		if (queue_tail == q)
			queue_tail = prev;
		end_call(q, "Connection timed out after %ld milliseconds",
				 (long) ((now - q->started) * 1000));
	}
	serve_queue();
	reap();
}

long
http_status(const HttpCall *call)
{
	return call->status;
}

long
http_retry_after(const HttpCall *call)
{
	return call->retry_after;
}

/* the reason a call failed; "" when it got an answer */
const char *
http_error(const HttpCall *call)
{
	return call->err;
}

/* free an ended call */
void
http_free(HttpCall *call)
{
	free(call->req);
	free(call);
}
