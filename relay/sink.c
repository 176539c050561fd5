/*-------------------------------------------------------------------------
 *
 * sink.c
 *		Where orderexp-relay delivers events: stdout, a command, a webhook,
 *		an SMTP server, an SMS provider (sms.c); many deliveries at once.
 *
 * A delivery is a Transfer.  Per sink there is a function that builds and
 * starts it (start_webhook() hands the request to the built-in client, or
 * sets up a libcurl easy handle with URL, headers, body and login and adds
 * it to the multi handle; start_exec() forks the command with pipes;
 * sms.c's sms_request() builds an SMS) and one that reads its outcome
 * (webhook_result(), sms_result()...):
 * delivered, a failure worth a retry, a permanent failure, or "slow down"
 * (HTTP 429).  When it was not delivered, the outcome carries a one-line
 * reason, which the relay hands to orderexp.fail() (so it shows in
 * outbox.last_error).
 *
 * Webhooks to an http:// URL go through the built-in HTTP/1.1 client
 * (http.c), which takes a fraction of libcurl's CPU per request.  All
 * other webhook, SMTP and SMS transfers share one libcurl multi handle, so
 * that connections are kept alive and reused across events (and HTTP/2
 * multiplexes them over one connection where the server offers it);
 * sink_wait() waits on libcurl's sockets (which libcurl names through its
 * socket callback), the built-in client's, the commands' pipes and the
 * caller's descriptors at once (poll()), then moves on the transfers whose
 * sockets are ready or whose timer is due (curl_multi_socket_action(),
 * http_io()): with a window of a hundred transfers, curl_multi_perform()
 * went through every one of them on every wake-up, and took most of the
 * relay's CPU against a fast receiver.  Commands are reaped there too (the
 * relay's SIGCHLD handler wakes the wait).  Every transfer ends by its deadline, which the caller
 * gives (at most --timeout, and before the event's lease runs out): the
 * HTTP client or libcurl gives the exchange up, a command's process group
 * is killed.
 *
 * Secrets stay in the relay: a command of the exec sink gets neither
 * libpq's PG* variables (PGPASSWORD, PGPASSFILE...) nor the relay's own
 * secret variables, and an SMTP login goes over TLS only, unless
 * --smtp-insecure says otherwise.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE				/* pipe2() */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common.h"
#include "config.h"
#include "easy.h"
#include "http.h"
#include "sink.h"
#include "sms.h"
#include "template.h"
#include "whsig.h"

/* what an SMTP upload has sent of the message */
typedef struct Upload
{
	const char *data;
	size_t		len;
	size_t		off;
} Upload;

/* a delivery in flight, or ended and not yet handed back by sink_done() */
struct Transfer
{
	SinkType	type;
	void	   *owner;
	double		started;
	double		deadline;
	bool		ended;
	Transfer   *prev;			/* in the running list, or next finished */
	Transfer   *next;

	/* an outcome known at once (stdout, or a delivery that could not start) */
	bool		early;
	SinkResult	early_result;

	/* webhook over http://: a call of the built-in client (http.c) */
	HttpCall   *http;

	/* webhook, smtp, sms: an easy handle of the multi handle */
	CURL	   *curl;
	SmsRequest *sms;			/* sms.c's request and answer */
	CURLcode	rc;
	struct curl_slist *list;	/* HTTP headers, or SMTP recipients */
	StrBuf		msg;			/* the mail */
	Upload		up;
	char		errbuf[CURL_ERROR_SIZE];

	/* exec: the command's process group and pipes */
	pid_t		pid;
	int			in_fd;			/* its stdin, -1 once all is written */
	int			out_fd;			/* its stdout and stderr, -1 once closed */
	char	   *data;			/* the event's JSON, for stdin */
	size_t		len;
	size_t		off;
	char		output[512];	/* the first bytes of its output */
	size_t		outlen;
	int			status;
	bool		timed_out;
};

static CURLM *multi = NULL;
static CURL **idle_handles;		/* easy handles to reuse */
static int	nidle;
static int	idle_cap;

/* libcurl's sockets, as its socket callback tells them, and its timer */
typedef struct CurlSocket
{
	curl_socket_t fd;
	short		events;			/* POLLIN, POLLOUT */
} CurlSocket;
static CurlSocket *curl_socks;
static int	ncurl_socks;
static int	curl_socks_cap;
static double curl_due = -1;	/* curl_multi_socket_action() then; -1: no */
static Transfer *running_head = NULL;	/* transfers not ended */
/* ended transfers kept for reuse: one is 2 kB, too big for malloc's caches */
static Transfer *spare_transfers = NULL;
static Transfer *finished_head = NULL;	/* ended, waiting for sink_done() */
static Transfer *finished_tail = NULL;
static int	in_flight[SINK_NTYPES + 1];

static const char *field_lookup(void *arg, const char *name);
static char *expand_template(const char *tmpl, const Event *ev);
static char *env_entry(const char *name, const char *value);
static char **exec_environment(const Event *ev);
static void free_exec_environment(char **env);
static Transfer *new_transfer(SinkType type, double deadline, void *owner);
static void end_early(Transfer *t, Outcome outcome, const char *fmt,...) __attribute__((format(printf, 3, 4)));
static void transfer_ended(Transfer *t);
static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp);
static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp);
static CURL *take_handle(Transfer *t);
static void bind_handle(Transfer *t, bool own_errbuf);
static void start_curl(Transfer *t);
static void start_sms(Transfer *t, const Event *ev);
static void sms_transfer_result(Transfer *t, SinkResult *r);
static void http_call_done(HttpCall *call, void *arg);
static bool throttled(Transfer *t, SinkResult *r, const char *sink);
static void throttle(SinkResult *r, const char *sink, long after);
static void start_stdout(Transfer *t, const Event *ev);
static void start_exec(Transfer *t, const Event *ev);
static void exec_io(Transfer *t, short in_revents, short out_revents);
static void exec_check(Transfer *t);
static void exec_result(Transfer *t, SinkResult *r);
static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata);
static void webhook_headers(StrBuf *h, const Event *ev);
static void start_webhook(Transfer *t, const Event *ev);
static bool http_permanent(long status);
static void webhook_result(Transfer *t, SinkResult *r);
static size_t read_upload(char *ptr, size_t size, size_t nmemb, void *userdata);
static void buf_base64(StrBuf *b, const unsigned char *s, size_t n);
static void buf_header_text(StrBuf *b, const char *s);
static bool plain_address(const char *a);
static void start_smtp(Transfer *t, const Event *ev);
static bool smtp_permanent(long code);
static void smtp_result(Transfer *t, SinkResult *r);




/*
 * One multi handle for every webhook and SMTP transfer.  It keeps as many
 * connections alive as the two windows can use, and multiplexes HTTP/2
 * streams over one connection where the server offers it.
 */
void
sinks_init(void)
{
	long		conns = cfg.concurrency[SINK_WEBHOOK] + cfg.concurrency[SINK_SMTP] +
		cfg.concurrency[SINK_SMS];

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatal(EXIT_INTERNAL, "could not initialize libcurl");
	if ((multi = curl_multi_init()) == NULL)
		fatal(EXIT_INTERNAL, "could not initialize libcurl");
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conns);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	/* a window's worth of easy handles is kept for reuse */
	idle_cap = (int) conns;
	idle_handles = xmalloc(sizeof(CURL *) * (idle_cap > 0 ? idle_cap : 1));
	/* webhooks to an http:// URL: the built-in client, if it takes the URL */
	if (cfg.webhook_url)
		(void) http_init(cfg.webhook_url, cfg.concurrency[SINK_WEBHOOK], http_call_done);
}

/* the built-in HTTP client's callback: the call of a transfer ended */
static void
http_call_done(HttpCall *call, void *arg)
{
	(void) call;
	transfer_ended((Transfer *) arg);
}

/*
 * libcurl's socket callback: FD is to be watched for WHAT (CURL_POLL_IN,
 * _OUT, _INOUT), or no longer (CURL_POLL_REMOVE)
 */
static int
curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	(void) easy;
	(void) userp;
	(void) socketp;
	for (i = 0; i < ncurl_socks; i++)
		if (curl_socks[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < ncurl_socks)
			curl_socks[i] = curl_socks[--ncurl_socks];
		return 0;
	}
	if (i == ncurl_socks)
	{
		if (ncurl_socks == curl_socks_cap)
		{
			curl_socks_cap = curl_socks_cap ? curl_socks_cap * 2 : 64;
			curl_socks = realloc(curl_socks, sizeof(CurlSocket) * curl_socks_cap);
			if (curl_socks == NULL)
				fatal(EXIT_INTERNAL, "out of memory");
		}
		curl_socks[ncurl_socks++].fd = fd;
	}
	curl_socks[i].events = ((what & CURL_POLL_IN) ? POLLIN : 0) |
		((what & CURL_POLL_OUT) ? POLLOUT : 0);
	return 0;
}

/* libcurl's timer callback: act in TIMEOUT_MS (0: at once; -1: no timer) */
static int
curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void) m;
	(void) userp;
	curl_due = timeout_ms < 0 ? -1 : now_seconds() + timeout_ms / 1000.0;
	return 0;
}

void
sinks_cleanup(void)
{
	http_cleanup();
	while (nidle > 0)
		curl_easy_cleanup(idle_handles[--nidle]);
	free(idle_handles);
	idle_handles = NULL;
	free(curl_socks);
	curl_socks = NULL;
	ncurl_socks = 0;
	while (spare_transfers)
	{
		Transfer   *t = spare_transfers;

		spare_transfers = t->next;
		free(t);
	}
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
}


static const char *
field_lookup(void *arg, const char *name)
{
	return event_field((const Event *) arg, name);
}

/* TMPL with {name} replaced by the event's fields ("" when missing) */
static char *
expand_template(const char *tmpl, const Event *ev)
{
	return template_expand(tmpl, field_lookup, (void *) ev, ESCAPE_NONE);
}

/* ---------------------------------------------------------------------
 * transfers
 * ---------------------------------------------------------------------
 */
static Transfer *
new_transfer(SinkType type, double deadline, void *owner)
{
	Transfer   *t = spare_transfers;

	if (t)
		spare_transfers = t->next;
	else
		t = xmalloc(sizeof(Transfer));
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->owner = owner;
	t->started = now_seconds();
	t->deadline = deadline;
	t->pid = -1;
	t->in_fd = -1;
	t->out_fd = -1;
	in_flight[type]++;
	in_flight[SINK_NTYPES]++;
	/* running until it ends */
	t->next = running_head;
	if (running_head)
		running_head->prev = t;
	running_head = t;
	return t;
}

/* T ended: off the running list, onto the finished queue */
static void
transfer_ended(Transfer *t)
{
	if (t->ended)
		return;
	t->ended = true;
	if (t->prev)
		t->prev->next = t->next;
	else
		running_head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	if (finished_tail)
		finished_tail->next = t;
	else
		finished_head = t;
	finished_tail = t;
}

/* T ends before it started, with this outcome */
static void
end_early(Transfer *t, Outcome outcome, const char *fmt,...)
{
	va_list		ap;

	t->early = true;
	t->early_result.outcome = outcome;
	va_start(ap, fmt);
	vsnprintf(t->early_result.err, sizeof(t->early_result.err), fmt, ap);
	va_end(ap);
	transfer_ended(t);
}

/*
 * An easy handle for T, reused when one is idle (the connections live in
 * the multi handle, so a new handle reuses them too); reset, with nothing
 * set yet.
 */
static CURL *
take_handle(Transfer *t)
{
	CURL	   *c;

	if (nidle > 0)
	{
		c = idle_handles[--nidle];
		curl_easy_reset(c);
	}
	else if ((c = curl_easy_init()) == NULL)
		fatal(EXIT_INTERNAL, "could not initialize libcurl");
	t->curl = c;
	return c;
}

/*
 * What every transfer's handle has: T to find it by, the time-out of T's
 * deadline, no signals, close-on-exec sockets, and (OWN_ERRBUF) T's error
 * buffer (sms.c keeps its own).
 */
static void
bind_handle(Transfer *t, bool own_errbuf)
{
	CURL	   *c = t->curl;
	long		ms = (long) ((t->deadline - now_seconds()) * 1000);

	curl_easy_setopt(c, CURLOPT_PRIVATE, t);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms > 1 ? ms : 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, set_cloexec);
	if (own_errbuf)
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->errbuf);
}

/* the handle is set up: hand it to the multi handle */
static void
start_curl(Transfer *t)
{
	CURLMcode	mc = curl_multi_add_handle(multi, t->curl);

	if (mc != CURLM_OK)
		end_early(t, OUTCOME_RETRY, "%s: %s", sink_name(t->type), curl_multi_strerror(mc));
}

/*
 * Build and start the delivery of EV through sink TYPE (see sink.h); the
 * per-sink start_*() functions build the request, the *_result() ones read
 * the answer in sink_done().
 */
Transfer *
sink_start(SinkType type, const Event *ev, double deadline, void *owner)
{
	Transfer   *t = new_transfer(type, deadline, owner);

	switch (type)
	{
		case SINK_STDOUT:
			start_stdout(t, ev);
			break;
		case SINK_EXEC:
			start_exec(t, ev);
			break;
		case SINK_WEBHOOK:
			start_webhook(t, ev);
			break;
		case SINK_SMTP:
			start_smtp(t, ev);
			break;
		case SINK_SMS:
			start_sms(t, ev);
			break;
		case SINK_NTYPES:
			end_early(t, OUTCOME_RETRY, "unknown sink");
			break;
	}
	return t;
}

void *
sink_owner(const Transfer *t)
{
	return t->owner;
}

SinkType
sink_type(const Transfer *t)
{
	return t->type;
}

int
sink_running(SinkType type)
{
	return in_flight[type];
}

/* the next ended transfer, in the order they ended */
Transfer *
sink_finished(void)
{
	Transfer   *t = finished_head;

	if (t)
	{
		finished_head = t->next;
		if (finished_head == NULL)
			finished_tail = NULL;
		t->next = NULL;
	}
	return t;
}

/*
 * What T's outcome means (the sink's *_result() function), how long it
 * took; then T's easy handle goes back to the idle ones and T is freed.
 */
void
sink_done(Transfer *t, SinkResult *res)
{
	memset(res, 0, sizeof(*res));
	if (t->early)
		*res = t->early_result;
	else
		switch (t->type)
		{
			case SINK_EXEC:
				exec_result(t, res);
				break;
			case SINK_WEBHOOK:
				webhook_result(t, res);
				break;
			case SINK_SMTP:
				smtp_result(t, res);
				break;
			case SINK_SMS:
				sms_transfer_result(t, res);
				break;
			default:
				break;
		}
	res->seconds = now_seconds() - t->started;
	if (t->curl)
	{
		curl_multi_remove_handle(multi, t->curl);
		if (nidle < idle_cap)
			idle_handles[nidle++] = t->curl;
		else
			curl_easy_cleanup(t->curl);
	}
	if (t->http)
		http_free(t->http);
	if (t->sms)
		sms_request_free(t->sms);
	if (t->list)
		curl_slist_free_all(t->list);
	free(t->msg.data);
	free(t->data);
	in_flight[t->type]--;
	in_flight[SINK_NTYPES]--;
	t->next = spare_transfers;
	spare_transfers = t;
}

/*
 * One wait of the relay's loop: poll() over the caller's descriptors, the
 * commands' pipes and libcurl's sockets, at most until UNTIL (or a
 * command's deadline, or libcurl's timer); then the transfers whose
 * sockets are ready or whose timer is due move on, the commands are fed,
 * read and reaped, and whatever ended is queued for sink_finished().
 */
void
sink_wait(struct pollfd *extra, int nextra, double until)
{
	struct pollfd *fds;
	int			nfds = 0,
				first_curl,
				ncurl,
				first_http,
				nhttp,
				i,
				still,
				left,
				ms;
	Transfer   *t,
			   *next;
	CURLMsg    *m;
	double		wait;

	/* the caller's descriptors, then every command's pipes, then libcurl's */
	for (t = running_head; t; t = t->next)
		if (t->pid > 0 && t->deadline < until)
			until = t->deadline;
	fds = xmalloc(sizeof(struct pollfd) *
				  (nextra + 2 * in_flight[SINK_EXEC] + ncurl_socks + http_nfds() + 1));
	for (i = 0; i < nextra; i++)
	{
		fds[nfds] = extra[i];
		fds[nfds++].revents = 0;
	}
	for (t = running_head; t; t = t->next)
	{
		if (t->in_fd >= 0)
		{
			fds[nfds].fd = t->in_fd;
			fds[nfds].events = POLLOUT;
			fds[nfds++].revents = 0;
		}
		if (t->out_fd >= 0)
		{
			fds[nfds].fd = t->out_fd;
			fds[nfds].events = POLLIN;
			fds[nfds++].revents = 0;
		}
	}
	first_curl = nfds;
	ncurl = ncurl_socks;
	for (i = 0; i < ncurl; i++)
	{
		fds[nfds].fd = curl_socks[i].fd;
		fds[nfds].events = curl_socks[i].events;
		fds[nfds++].revents = 0;
	}
	if (curl_due >= 0 && curl_due < until)
		until = curl_due;
	/* and the built-in HTTP client's */
	first_http = nfds;
	nhttp = http_pollfds(fds + nfds, &until);
	nfds += nhttp;
	wait = until - now_seconds();
	if (finished_head != NULL || wait < 0)
		wait = 0;
	if (wait > 60)
		wait = 60;
	ms = (int) (wait * 1000 + 0.999);
	if (poll(fds, nfds, ms) < 0 && errno != EINTR)
		fatal(EXIT_INTERNAL, "poll failed: %s", strerror(errno));
	for (i = 0; i < nextra; i++)
		extra[i].revents = fds[i].revents;

	/* libcurl's transfers: the ready sockets, then the timer if it is due */
	for (i = first_curl; i < first_curl + ncurl; i++)
	{
		int			mask = 0;

		if (fds[i].revents == 0)
			continue;
		if (fds[i].revents & (POLLIN | POLLHUP))
			mask |= CURL_CSELECT_IN;
		if (fds[i].revents & POLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (fds[i].revents & (POLLERR | POLLNVAL))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(multi, fds[i].fd, mask, &still);
	}
	if (curl_due >= 0 && now_seconds() >= curl_due)
	{
		curl_due = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}
	while ((m = curl_multi_info_read(multi, &left)) != NULL)
	{
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		t->rc = m->data.result;
		transfer_ended(t);
	}

	/* the built-in HTTP client's connections, and its deadlines */
	if (http_enabled())
		http_io(fds + first_http, nhttp);

	/* the commands: their pipes, their end, their deadline */
	/* (the pipes do not block, so just try them) */
	for (t = running_head; t; t = next)
	{
		next = t->next;
		if (t->pid <= 0)
			continue;
		exec_io(t, POLLOUT, POLLIN);
		exec_check(t);
	}
	free(fds);
}

/* ---------------------------------------------------------------------
 * stdout
 * ---------------------------------------------------------------------
 */
static void
start_stdout(Transfer *t, const Event *ev)
{
	if (fputs(ev->json, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
	{
		int			e = errno;

		clearerr(stdout);
		end_early(t, OUTCOME_RETRY, "could not write to stdout: %s", strerror(e));
		return;
	}
	end_early(t, OUTCOME_DELIVERED, "%s", "");
}

/* ---------------------------------------------------------------------
 * exec: sh -c CMD, the event on stdin, exit 0 = delivered
 * ---------------------------------------------------------------------
 */
extern char **environ;

static char *
env_entry(const char *name, const char *value)
{
	char	   *e = xmalloc(strlen(name) + strlen(value) + 2);

	sprintf(e, "%s=%s", name, value);
	return e;
}

/*
 * A command's environment: the relay's, minus every variable whose name
 * starts with PG and the relay's secrets, plus ORDEREXP_EVENT_ID,
 * ORDEREXP_KIND and ORDEREXP_CHANNEL.  Built before fork(), so that the
 * child only has to execve(); the last three entries are allocated.
 */
static char **
exec_environment(const Event *ev)
{
	static const char *const drop[] = {
		ENV_WEBHOOK_SECRET "=", ENV_SMTP_PASSWORD "=",
		ENV_WEBHOOK_PREVIOUS_SECRET "=", ENV_SMS_TOKEN "=",
		"ORDEREXP_EVENT_ID=", "ORDEREXP_KIND=", "ORDEREXP_CHANNEL="
	};
	char	  **env;
	char		id[32];
	int			n = 0,
				i;
	size_t		d;

	for (i = 0; environ[i]; i++)
		n++;
	env = xmalloc((n + 4) * sizeof(char *));
	n = 0;
	for (i = 0; environ[i]; i++)
	{
		if (strncmp(environ[i], "PG", 2) == 0)
			continue;
		for (d = 0; d < sizeof(drop) / sizeof(drop[0]); d++)
			if (strncmp(environ[i], drop[d], strlen(drop[d])) == 0)
				break;
		if (d == sizeof(drop) / sizeof(drop[0]))
			env[n++] = environ[i];
	}
	snprintf(id, sizeof(id), "%lld", ev->id);
	env[n++] = env_entry("ORDEREXP_EVENT_ID", id);
	env[n++] = env_entry("ORDEREXP_KIND", ev->kind);
	env[n++] = env_entry("ORDEREXP_CHANNEL", ev->channel);
	env[n] = NULL;
	return env;
}

static void
free_exec_environment(char **env)
{
	int			n = 0;

	while (env[n])
		n++;
	free(env[n - 1]);
	free(env[n - 2]);
	free(env[n - 3]);
	free(env);
}

/*
 * Fork the command with the event's JSON for its stdin; the loop feeds the
 * pipe and reads the output without blocking (exec_io()) and reaps it
 * (exec_check()).  The pipes are close-on-exec, so that one command does
 * not hold another's stdin open.
 */
static void
start_exec(Transfer *t, const Event *ev)
{
	int			in[2],
				out[2];
	pid_t		pid;
	char	  **env;
	char	   *argv[] = {"sh", "-c", cfg.exec_command, NULL};

	if (pipe2(in, O_CLOEXEC) != 0)
	{
		end_early(t, OUTCOME_RETRY, "could not create a pipe: %s", strerror(errno));
		return;
	}
	if (pipe2(out, O_CLOEXEC) != 0)
	{
		end_early(t, OUTCOME_RETRY, "could not create a pipe: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		return;
	}
	env = exec_environment(ev);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid != 0)
		free_exec_environment(env);
	if (pid < 0)
	{
		end_early(t, OUTCOME_RETRY, "could not fork: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return;
	}
	if (pid == 0)
	{
		sigset_t	none;

		/* child: own process group, so that a time-out kills it whole */
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(out[1], STDERR_FILENO);
		execve("/bin/sh", argv, env);
		_exit(127);
	}
	setpgid(pid, pid);
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	t->pid = pid;
	t->in_fd = in[1];
	t->out_fd = out[0];
	t->data = xstrdup(ev->json);
	t->len = strlen(t->data);
}

/* feed the command's stdin, keep the first bytes of its output */
static void
exec_io(Transfer *t, short in_revents, short out_revents)
{
	if (t->in_fd >= 0 && (in_revents & (POLLOUT | POLLERR | POLLHUP)))
	{
		ssize_t		n = write(t->in_fd, t->data + t->off, t->len - t->off);

		if (n > 0)
			t->off += n;
		if ((n < 0 && errno != EAGAIN && errno != EINTR) || t->off == t->len)
		{
			close(t->in_fd);
			t->in_fd = -1;
		}
	}
	if (t->out_fd >= 0 && (out_revents & (POLLIN | POLLERR | POLLHUP)))
	{
		char		tmp[4096];
		ssize_t		n;

		while ((n = read(t->out_fd, tmp, sizeof(tmp))) > 0)
		{
			size_t		room = sizeof(t->output) - 1 - t->outlen;
			size_t		take = (size_t) n < room ? (size_t) n : room;

			memcpy(t->output + t->outlen, tmp, take);
			t->outlen += take;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		{
			close(t->out_fd);
			t->out_fd = -1;
		}
	}
}

/*
 * Has the command ended, or run past its deadline (then its process group
 * is killed)?  Either way it is reaped here, and its pipes closed: what a
 * background process of the command keeps writing is not waited for.
 */
static void
exec_check(Transfer *t)
{
	pid_t		w = waitpid(t->pid, &t->status, WNOHANG);

	if (w != t->pid)
	{
		if (now_seconds() < t->deadline)
			return;
		kill(-t->pid, SIGKILL);
		kill(t->pid, SIGKILL);
		waitpid(t->pid, &t->status, 0);
		t->timed_out = true;
	}
	/* the last of its output */
	exec_io(t, 0, POLLIN);
	if (t->in_fd >= 0)
		close(t->in_fd);
	if (t->out_fd >= 0)
		close(t->out_fd);
	t->in_fd = t->out_fd = -1;
	t->pid = 0;
	t->output[t->outlen] = '\0';
	/* the output's first line, for the error text */
	t->output[strcspn(t->output, "\r\n")] = '\0';
	transfer_ended(t);
}

/*
 * Exit status 0 is delivered; 65 (EX_DATAERR of sysexits.h: the command
 * says the event itself is bad) a permanent failure; anything else, a
 * signal or the time-out, a failure worth a retry.
 */
static void
exec_result(Transfer *t, SinkResult *r)
{
	int			status = t->status;
	bool		out = t->output[0] != '\0';

	r->outcome = OUTCOME_RETRY;
	if (t->timed_out)
		snprintf(r->err, sizeof(r->err), "command timed out after %.3g s", t->deadline - t->started);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		r->outcome = OUTCOME_DELIVERED;
	else if (WIFEXITED(status))
	{
		if (WEXITSTATUS(status) == 65)
			r->outcome = OUTCOME_PERMANENT;
		snprintf(r->err, sizeof(r->err), "command exited with status %d%s%s%s", WEXITSTATUS(status),
				 r->outcome == OUTCOME_PERMANENT ? " (permanent)" : "",
				 out ? ": " : "", t->output);
	}
	else if (WIFSIGNALED(status))
		snprintf(r->err, sizeof(r->err), "command was terminated by signal %d%s%s", WTERMSIG(status),
				 out ? ": " : "", t->output);
	else
		snprintf(r->err, sizeof(r->err), "command failed");
}

/* ---------------------------------------------------------------------
 * webhook: POST of the JSON, 2xx = delivered
 * ---------------------------------------------------------------------
 */
static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void) ptr;
	(void) userdata;
	return size * nmemb;
}

/*
 * The header lines of EV's webhook, each ending in CRLF: the content type,
 * X-Orderexp-Event, X-Orderexp-Id, X-Orderexp-Signature with a secret, and
 * the Standard Webhooks headers (whsig.c)
 */
static void
webhook_headers(StrBuf *h, const Event *ev)
{
	char		line[64];
	char		sig[WHSIG_LEGACY_LEN];

	sb_puts(h, "Content-Type: application/json\r\nX-Orderexp-Event: ");
	sb_puts(h, ev->kind);
	snprintf(line, sizeof(line), "\r\nX-Orderexp-Id: %lld\r\n", ev->id);
	sb_puts(h, line);
	if (whsig_legacy_signature(ev->json, sig))
	{
		sb_puts(h, "X-Orderexp-Signature: ");
		sb_puts(h, sig);
		sb_append(h, "\r\n", 2);
	}
	whsig_headers(h, ev, ev->json);
}

/*
 * The POST of EV, with its headers and signature: through the built-in
 * client (http.c) when it took the URL, else through libcurl, with the
 * same headers in the same order
 */
static void
start_webhook(Transfer *t, const Event *ev)
{
	StrBuf		h = {0};
	CURL	   *c;
	char	   *line,
			   *end;

	if (http_enabled())
	{
		/* room for the head and the body at once: no realloc on the way */
		h.cap = 1024 + strlen(ev->json);
		h.data = xmalloc(h.cap);
		h.data[0] = '\0';
		http_request_head(&h, "POST");
		sb_puts(&h, "User-Agent: orderexp-relay/" RELAY_VERSION "\r\nAccept: */*\r\n");
		webhook_headers(&h, ev);
		t->http = http_start(&h, ev->json, strlen(ev->json), t->deadline, t);
		return;
	}

	c = take_handle(t);
	bind_handle(t, true);
	webhook_headers(&h, ev);
	for (line = h.data; (end = strstr(line, "\r\n")) != NULL; line = end + 2)
	{
		*end = '\0';
		t->list = curl_slist_append(t->list, line);
	}
	free(h.data);
	t->list = curl_slist_append(t->list, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, cfg.webhook_url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->list);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) strlen(ev->json));
	curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, ev->json);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "orderexp-relay/" RELAY_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	/* HTTP/2 over TLS when offered: wait for the connection to multiplex */
	curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
	set_protocols(c, "http,https", CURLPROTO_HTTP | CURLPROTO_HTTPS);
	start_curl(t);
}

/*
 * An HTTP 429 answer (webhook, sms) of libcurl's transfer T: slow down
 * (throttle())
 */
static bool
throttled(Transfer *t, SinkResult *r, const char *sink)
{
	long		status = 0;
	curl_off_t	after = -1;

	if (t->rc != CURLE_OK)
		return false;
	curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 429)
		return false;
	if (curl_easy_getinfo(t->curl, CURLINFO_RETRY_AFTER, &after) != CURLE_OK)
		after = -1;
	throttle(r, sink, (long) after);
	return true;
}

/*
 * An HTTP 429 answer: slow down for Retry-After seconds, AFTER (a number
 * or an HTTP date, in seconds from now; 5 s without it, at most an hour);
 * the receiver did not take the event.
 */
static void
throttle(SinkResult *r, const char *sink, long after)
{
	if (after <= 0)
		after = 5;
	if (after > 3600)
		after = 3600;
	r->outcome = OUTCOME_THROTTLED;
	r->retry_after = (double) after;
	snprintf(r->err, sizeof(r->err), "%s: HTTP status 429, retry after %ld s", sink, after);
}

/* is this HTTP status a refusal that no retry can mend? (docs/relay.md) */
static bool
http_permanent(long status)
{
	return status == 400 || status == 404 || status == 410 ||
		status == 413 || status == 415 || status == 422;
}

/*
 * 2xx is delivered; 429 asks to slow down (Retry-After, in seconds or as
 * an HTTP date, says for how long; 5 s without it); 400, 404, 410, 413,
 * 415 and 422 are permanent; anything else (other 4xx, 5xx, a time-out, a
 * refused connection) is worth a retry.
 */
static void
webhook_result(Transfer *t, SinkResult *r)
{
	long		status = 0;

	r->outcome = OUTCOME_RETRY;
	if (t->http)
	{
		if (http_error(t->http)[0] != '\0')
		{
			snprintf(r->err, sizeof(r->err), "webhook: %s", http_error(t->http));
			return;
		}
		status = http_status(t->http);
		if (status == 429)
		{
			throttle(r, "webhook", http_retry_after(t->http));
			return;
		}
	}
	else
	{
		if (t->rc != CURLE_OK)
		{
			snprintf(r->err, sizeof(r->err), "webhook: %s",
					 t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->rc));
			return;
		}
		curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
		if (throttled(t, r, "webhook"))
			return;
	}
	if (status >= 200 && status <= 299)
	{
		r->outcome = OUTCOME_DELIVERED;
		return;
	}
	if (http_permanent(status))
		r->outcome = OUTCOME_PERMANENT;
	snprintf(r->err, sizeof(r->err), "webhook: HTTP status %ld%s", status,
			 r->outcome == OUTCOME_PERMANENT ? " (permanent)" : "");
}

/* ---------------------------------------------------------------------
 * smtp: one mail per event, to the address in the recipient field
 * ---------------------------------------------------------------------
 */
static size_t
read_upload(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Upload	   *u = userdata;
	size_t		n = size * nmemb;

	if (n > u->len - u->off)
		n = u->len - u->off;
	memcpy(ptr, u->data + u->off, n);
	u->off += n;
	return n;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
buf_base64(StrBuf *b, const unsigned char *s, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i += 3)
	{
		unsigned	v = s[i] << 16 | (i + 1 < n ? s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
		char		q[4];

		q[0] = b64[(v >> 18) & 63];
		q[1] = b64[(v >> 12) & 63];
		q[2] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? b64[v & 63] : '=';
		sb_append(b, q, 4);
	}
}

/*
 * A header value: as it is when it is printable ASCII, otherwise RFC 2047
 * encoded words of at most 45 bytes of UTF-8 each (never splitting a
 * character), folded onto continuation lines.
 */
static void
buf_header_text(StrBuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	bool		ascii = true;
	size_t		n = strlen(s);

	for (; *p; p++)
		if (*p < 32 || *p > 126)
			ascii = false;
	if (ascii)
	{
		sb_puts(b, s);
		return;
	}
	p = (const unsigned char *) s;
	while (n > 0)
	{
		size_t		take = n < 45 ? n : 45;

		while (take < n && (p[take] & 0xC0) == 0x80)
			take--;
		if (p != (const unsigned char *) s)
			sb_puts(b, "\r\n ");
		sb_puts(b, "=?UTF-8?B?");
		buf_base64(b, p, take);
		sb_puts(b, "?=");
		p += take;
		n -= take;
	}
}

/* an address we put into a header and the envelope as it is */
static bool
plain_address(const char *a)
{
	const char *at = strchr(a, '@');

	if (at == NULL || at == a || at[1] == '\0' || strlen(a) > 254)
		return false;
	for (; *a; a++)
		if ((unsigned char) *a <= 32 || strchr("<>,;:\"()[]\\", *a) || (unsigned char) *a == 127)
			return false;
	return true;
}


/*
 * The mail for EV: headers, the kind's templates filled in, CRLF line
 * ends; a missing or odd recipient fails at once, for good (retrying the
 * same payload cannot mend it).
 */
static void
start_smtp(Transfer *t, const Event *ev)
{
	CURL	   *c;
	const char *rcpt = event_field(ev, cfg.recipient_field);
	const Template *tmpl = template_for(ev->kind);
	char		date[64],
				addr[300];
	char	   *subject,
			   *body,
			   *s;
	const char *domain = strchr(cfg.smtp_from, '@') + 1;
	time_t		now = time(NULL);
	struct tm	tm;
	StrBuf		   *msg = &t->msg;

	if (rcpt == NULL || *rcpt == '\0')
	{
		end_early(t, OUTCOME_PERMANENT, "no recipient: the event has no field \"%s\"", cfg.recipient_field);
		return;
	}
	if (!plain_address(rcpt))
	{
		end_early(t, OUTCOME_PERMANENT, "invalid recipient address in field \"%s\"", cfg.recipient_field);
		return;
	}

	subject = expand_template(tmpl->subject, ev);
	for (s = subject; *s; s++)
		if (*s == '\r' || *s == '\n' || *s == '\t')
			*s = ' ';
	body = expand_template(tmpl->body, ev);

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	sb_printf(msg, "Date: %s\r\n", date);
	sb_printf(msg, "From: <%s>\r\n", cfg.smtp_from);
	sb_printf(msg, "To: <%s>\r\n", rcpt);
	sb_puts(msg, "Subject: ");
	buf_header_text(msg, subject);
	sb_puts(msg, "\r\n");
	sb_printf(msg, "Message-ID: <orderexp-%lld-%ld@%s>\r\n", ev->id, (long) now, domain);
	sb_puts(msg, "MIME-Version: 1.0\r\n");
	sb_puts(msg, "Content-Type: text/plain; charset=UTF-8\r\n");
	sb_puts(msg, "Content-Transfer-Encoding: 8bit\r\n");
	sb_printf(msg, "X-Orderexp-Event: %s\r\n", ev->kind);
	sb_printf(msg, "X-Orderexp-Id: %lld\r\n", ev->id);
	sb_puts(msg, "\r\n");
	/* the body with CRLF line ends (libcurl dot-stuffs lines itself) */
	for (s = body; *s; s++)
	{
		if (*s == '\n' && (s == body || s[-1] != '\r'))
			sb_append(msg, "\r\n", 2);
		else
			sb_append(msg, s, 1);
	}
	if (msg->len < 2 || memcmp(msg->data + msg->len - 2, "\r\n", 2) != 0)
		sb_append(msg, "\r\n", 2);
	free(subject);
	free(body);

	t->up.data = msg->data;
	t->up.len = msg->len;
	t->up.off = 0;
	snprintf(addr, sizeof(addr), "<%s>", rcpt);
	t->list = curl_slist_append(t->list, addr);
	c = take_handle(t);
	bind_handle(t, true);
	curl_easy_setopt(c, CURLOPT_URL, cfg.smtp_url);
	snprintf(addr, sizeof(addr), "<%s>", cfg.smtp_from);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, addr);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, t->list);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_upload);
	curl_easy_setopt(c, CURLOPT_READDATA, &t->up);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t) msg->len);
	set_protocols(c, "smtp,smtps", CURLPROTO_SMTP | CURLPROTO_SMTPS);

	/*
	 * STARTTLS when the server offers it, and required with a login (see
	 * config_finish()); smtps:// is TLS from the start
	 */
	curl_easy_setopt(c, CURLOPT_USE_SSL,
					 (long) (cfg.smtp_require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
	if (cfg.smtp_user)
		curl_easy_setopt(c, CURLOPT_USERNAME, cfg.smtp_user);
	if (cfg.smtp_password)
		curl_easy_setopt(c, CURLOPT_PASSWORD, cfg.smtp_password);
	start_curl(t);
}

/*
 * Is this SMTP reply a refusal of the mail itself (RFC 5321's 5yz about
 * the mailbox, the message or the address) rather than of our set-up (530
 * and 535: the login; 500-504: commands)?  Those are not retried.
 */
static bool
smtp_permanent(long code)
{
	return code >= 550 && code <= 555;
}

/* the server accepted the mail; else why not */
static void
smtp_result(Transfer *t, SinkResult *r)
{
	long		code = 0;
	char	   *e = t->errbuf;

	r->outcome = OUTCOME_RETRY;
	if (t->rc == CURLE_OK)
	{
		r->outcome = OUTCOME_DELIVERED;
		return;
	}
	if (t->rc == CURLE_USE_SSL_FAILED && cfg.smtp_require_tls)
	{
		size_t		n = strlen(e);

		/* libcurl's "STARTTLS not supported." */
		if (n > 0 && e[n - 1] == '.')
			e[n - 1] = '\0';
		snprintf(r->err, sizeof(r->err), "smtp: %s, and the login goes over TLS only (see --smtp-insecure)",
				 e[0] ? e : curl_easy_strerror(t->rc));
		return;
	}
	curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
	if (smtp_permanent(code))
		r->outcome = OUTCOME_PERMANENT;
	if (code > 0)
		snprintf(r->err, sizeof(r->err), "smtp: %s (server said %ld%s)",
				 e[0] ? e : curl_easy_strerror(t->rc), code,
				 r->outcome == OUTCOME_PERMANENT ? ", permanent" : "");
	else
		snprintf(r->err, sizeof(r->err), "smtp: %s", e[0] ? e : curl_easy_strerror(t->rc));
}

/* ---------------------------------------------------------------------
 * sms: an HTTP request to the provider (sms.c builds it and reads the
 * answer)
 * ---------------------------------------------------------------------
 */

/*
 * sms_request() sets up the handle (and resets it first); a missing or
 * invalid number, or an empty text, is a permanent failure at once.
 */
static void
start_sms(Transfer *t, const Event *ev)
{
	char		err[1024];

	t->sms = sms_request(take_handle(t), ev, err, sizeof(err));
	if (t->sms == NULL)
	{
		end_early(t, OUTCOME_PERMANENT, "%s", err);
		return;
	}
	bind_handle(t, false);
	start_curl(t);
}

/* 429 pauses the sink, as for webhooks; the rest is sms_result()'s */
static void
sms_transfer_result(Transfer *t, SinkResult *r)
{
	if (throttled(t, r, "sms"))
		return;
	r->outcome = sms_result(t->sms, t->curl, t->rc, r->err, sizeof(r->err));
}
