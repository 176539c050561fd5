/*-------------------------------------------------------------------------
 *
 * sink.c
 *		Where orderexp-relay delivers events: stdout, a command, a webhook,
 *		an SMTP server, an SMS provider (sms.c).
 *
 * Every sink takes one event and says whether it was delivered, failed
 * (to be tried again) or failed for good (it can never be delivered, such
 * as an SMS to an invalid number); when it was not delivered, it writes a
 * one-line reason into err, which the relay hands to orderexp.fail() (so
 * the reason shows in outbox.last_error).  Every sink is bounded by
 * --timeout: a command that hangs is killed, an HTTP or SMTP exchange that
 * stalls is given up.
 *
 * The webhook and SMTP sinks keep one libcurl handle each, so that
 * connections to the same server are reused across events.
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
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common.h"
#include "config.h"
#include "sink.h"
#include "sms.h"
#include "template.h"
#include "whsig.h"

/* a growing string */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static CURL *webhook_curl = NULL;
static CURL *smtp_curl = NULL;

static void buf_append(Buf *b, const char *s, size_t n);
static void buf_puts(Buf *b, const char *s);
static void buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static const char *field_lookup(void *arg, const char *name);
static char *env_entry(const char *name, const char *value);
static char **exec_environment(const Event *ev);
static void free_exec_environment(char **env);
static char *expand_template(const char *tmpl, const Event *ev);
static bool deliver_stdout(const Event *ev, char *err, size_t errlen);
static bool deliver_exec(const Event *ev, char *err, size_t errlen);
static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata);
static void hmac_hex(const char *secret, const char *data, char *hex);
static bool deliver_webhook(const Event *ev, char *err, size_t errlen);
static size_t read_upload(char *ptr, size_t size, size_t nmemb, void *userdata);
static void buf_base64(Buf *b, const unsigned char *s, size_t n);
static void buf_header_text(Buf *b, const char *s);
static bool plain_address(const char *a);
static bool deliver_smtp(const Event *ev, char *err, size_t errlen);

static void
buf_append(Buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
			fatal(EXIT_INTERNAL, "out of memory");
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

static void
buf_printf(Buf *b, const char *fmt,...)
{
	char		tmp[1024];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_append(b, tmp, (size_t) n < sizeof(tmp) ? (size_t) n : sizeof(tmp) - 1);
}

/* a handle may speak these protocols only (no file://, no redirects elsewhere) */
void
set_protocols(CURL *c, const char *names, long mask)
{
#if LIBCURL_VERSION_NUM >= 0x075500
	(void) mask;
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, names);
#else
	(void) names;
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, mask);
#endif
}

/*
 * libcurl's sockets are not close-on-exec: without this, a command of the
 * exec sink would inherit the webhook's or the SMTP server's kept-alive
 * connection.
 */
int
set_cloexec(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	(void) clientp;
	(void) purpose;
	(void) fcntl(fd, F_SETFD, FD_CLOEXEC);
	return CURL_SOCKOPT_OK;
}

void
sinks_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatal(EXIT_INTERNAL, "could not initialize libcurl");
	if (cfg.sink_on[SINK_WEBHOOK] && (webhook_curl = curl_easy_init()) == NULL)
		fatal(EXIT_INTERNAL, "could not initialize libcurl");
	if (cfg.sink_on[SINK_SMTP] && (smtp_curl = curl_easy_init()) == NULL)
		fatal(EXIT_INTERNAL, "could not initialize libcurl");
	if (cfg.sink_on[SINK_SMS])
		sms_init();
}

void
sinks_cleanup(void)
{
	if (webhook_curl)
		curl_easy_cleanup(webhook_curl);
	if (smtp_curl)
		curl_easy_cleanup(smtp_curl);
	sms_cleanup();
	curl_global_cleanup();
}

/*
 * The value of an event's field NAME: the event's own fields (id, kind,
 * table, order_key, channel, attempts, created_at), the payload's, or the
 * order's payload columns ("order.email", or just "email" when no other
 * field has that name).  NULL when there is none or it is JSON null.
 */
const char *
event_field(const Event *ev, const char *name)
{
	int			i;

	for (i = 0; i < ev->nfields; i++)
		if (strcmp(ev->fields[i].key, name) == 0)
			return ev->fields[i].value;
	for (i = 0; i < ev->nfields; i++)
		if (strncmp(ev->fields[i].key, "order.", 6) == 0 &&
			strcmp(ev->fields[i].key + 6, name) == 0)
			return ev->fields[i].value;
	return NULL;
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
 * stdout
 * ---------------------------------------------------------------------
 */
static bool
deliver_stdout(const Event *ev, char *err, size_t errlen)
{
	if (fputs(ev->json, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
	{
		snprintf(err, errlen, "could not write to stdout: %s", strerror(errno));
		clearerr(stdout);
		return false;
	}
	return true;
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
	env[n++] = env_entry("ORDEREXP_EVENT_ID", event_field(ev, "id"));
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

static bool
deliver_exec(const Event *ev, char *err, size_t errlen)
{
	int			in[2],
				out[2];
	pid_t		pid;
	const char *data = ev->json;
	size_t		len = strlen(data),
				off = 0;
	char		output[512];
	size_t		outlen = 0;
	bool		out_open = true;
	double		deadline = now_seconds() + cfg.timeout;
	int			status = 0,
				i;
	bool		timed_out = false;
	char	  **env;
	char	   *argv[] = {"sh", "-c", cfg.exec_command, NULL};

	if (pipe(in) != 0 || pipe(out) != 0)
	{
		snprintf(err, errlen, "could not create a pipe: %s", strerror(errno));
		return false;
	}
	env = exec_environment(ev);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid != 0)
		free_exec_environment(env);
	if (pid < 0)
	{
		snprintf(err, errlen, "could not fork: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return false;
	}
	if (pid == 0)
	{
		/* child: own process group, so that a time-out kills it whole */
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(out[1], STDERR_FILENO);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execve("/bin/sh", argv, env);
		_exit(127);
	}
	setpgid(pid, pid);
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);

	/* feed stdin, collect the first bytes of the output, wait for the end */
	for (;;)
	{
		struct pollfd fds[2];
		int			nfds = 0,
					wait_ms;
		double		left = deadline - now_seconds();
		pid_t		w;

		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (left <= 0)
		{
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			timed_out = true;
			break;
		}
		if (in[1] >= 0)
		{
			fds[nfds].fd = in[1];
			fds[nfds++].events = POLLOUT;
		}
		if (out_open)
		{
			fds[nfds].fd = out[0];
			fds[nfds++].events = POLLIN;
		}
		/* short waits: the child's exit shows only through waitpid */
		wait_ms = left * 1000 < 10 ? (int) (left * 1000) + 1 : 10;
		if (poll(fds, nfds, wait_ms) < 0 && errno != EINTR)
			break;
		for (i = 0; i < nfds; i++)
		{
			if (fds[i].fd == in[1] && (fds[i].revents & (POLLOUT | POLLERR | POLLHUP)))
			{
				ssize_t		n = write(in[1], data + off, len - off);

				if (n > 0)
					off += n;
				if ((n < 0 && errno != EAGAIN && errno != EINTR) || off == len)
				{
					close(in[1]);
					in[1] = -1;
				}
			}
			else if (fds[i].fd == out[0] && (fds[i].revents & (POLLIN | POLLERR | POLLHUP)))
			{
				char		tmp[4096];
				ssize_t		n = read(out[0], tmp, sizeof(tmp));

				if (n <= 0)
					out_open = false;
				else if (outlen < sizeof(output) - 1)
				{
					size_t		take = (size_t) n < sizeof(output) - 1 - outlen ? (size_t) n : sizeof(output) - 1 - outlen;

					memcpy(output + outlen, tmp, take);
					outlen += take;
				}
			}
		}
	}
	if (in[1] >= 0)
		close(in[1]);
	close(out[0]);
	output[outlen] = '\0';
	/* the output's first line, for the error text */
	output[strcspn(output, "\r\n")] = '\0';

	if (timed_out)
	{
		snprintf(err, errlen, "command timed out after %g s", cfg.timeout);
		return false;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (WIFEXITED(status))
		snprintf(err, errlen, "command exited with status %d%s%s", WEXITSTATUS(status),
				 outlen ? ": " : "", output);
	else if (WIFSIGNALED(status))
		snprintf(err, errlen, "command was terminated by signal %d%s%s", WTERMSIG(status),
				 outlen ? ": " : "", output);
	else
		snprintf(err, errlen, "command failed");
	return false;
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

/* hex HMAC-SHA256 of data under the secret */
static void
hmac_hex(const char *secret, const char *data, char *hex)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	unsigned int i;

	HMAC(EVP_sha256(), secret, (int) strlen(secret),
		 (const unsigned char *) data, strlen(data), mac, &maclen);
	for (i = 0; i < maclen; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	hex[2 * maclen] = '\0';
}

static bool
deliver_webhook(const Event *ev, char *err, size_t errlen)
{
	CURL	   *c = webhook_curl;
	struct curl_slist *headers = NULL;
	char		line[256];
	char		errbuf[CURL_ERROR_SIZE] = "";
	CURLcode	rc;
	long		status = 0;

	curl_easy_reset(c);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	snprintf(line, sizeof(line), "X-Orderexp-Event: %s", ev->kind);
	headers = curl_slist_append(headers, line);
	snprintf(line, sizeof(line), "X-Orderexp-Id: %lld", ev->id);
	headers = curl_slist_append(headers, line);
	if (cfg.webhook_secret)
	{
		char		hex[2 * EVP_MAX_MD_SIZE + 1];

		hmac_hex(cfg.webhook_secret, ev->json, hex);
		snprintf(line, sizeof(line), "X-Orderexp-Signature: sha256=%s", hex);
		headers = curl_slist_append(headers, line);
	}
	/* webhook-id, webhook-timestamp, webhook-signature (whsig.c) */
	headers = whsig_headers(headers, ev, ev->json);
	headers = curl_slist_append(headers, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, cfg.webhook_url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, ev->json);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) strlen(ev->json));
	curl_easy_setopt(c, CURLOPT_USERAGENT, "orderexp-relay/" RELAY_VERSION);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (cfg.timeout * 1000));
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	set_protocols(c, "http,https", CURLPROTO_HTTP | CURLPROTO_HTTPS);
	curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, set_cloexec);

	rc = curl_easy_perform(c);
	curl_slist_free_all(headers);
	if (rc != CURLE_OK)
	{
		snprintf(err, errlen, "webhook: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return false;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
	{
		snprintf(err, errlen, "webhook: HTTP status %ld", status);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * smtp: one mail per event, to the address in the recipient field
 * ---------------------------------------------------------------------
 */
typedef struct Upload
{
	const char *data;
	size_t		len;
	size_t		off;
} Upload;

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
buf_base64(Buf *b, const unsigned char *s, size_t n)
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
		buf_append(b, q, 4);
	}
}

/*
 * A header value: as it is when it is printable ASCII, otherwise RFC 2047
 * encoded words of at most 45 bytes of UTF-8 each (never splitting a
 * character), folded onto continuation lines.
 */
static void
buf_header_text(Buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	bool		ascii = true;
	size_t		n = strlen(s);

	for (; *p; p++)
		if (*p < 32 || *p > 126)
			ascii = false;
	if (ascii)
	{
		buf_puts(b, s);
		return;
	}
	p = (const unsigned char *) s;
	while (n > 0)
	{
		size_t		take = n < 45 ? n : 45;

		while (take < n && (p[take] & 0xC0) == 0x80)
			take--;
		if (p != (const unsigned char *) s)
			buf_puts(b, "\r\n ");
		buf_puts(b, "=?UTF-8?B?");
		buf_base64(b, p, take);
		buf_puts(b, "?=");
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

static bool
deliver_smtp(const Event *ev, char *err, size_t errlen)
{
	CURL	   *c = smtp_curl;
	const char *rcpt = event_field(ev, cfg.recipient_field);
	const Template *t = template_for(ev->kind);
	struct curl_slist *rcpts = NULL;
	char		errbuf[CURL_ERROR_SIZE] = "";
	char		date[64],
				addr[300];
	char	   *subject,
			   *body,
			   *s;
	const char *domain = strchr(cfg.smtp_from, '@') + 1;
	time_t		now = time(NULL);
	struct tm	tm;
	Buf			msg = {0};
	Upload		up;
	CURLcode	rc;
	long		code = 0;

	if (rcpt == NULL || *rcpt == '\0')
	{
		snprintf(err, errlen, "no recipient: the event has no field \"%s\"", cfg.recipient_field);
		return false;
	}
	if (!plain_address(rcpt))
	{
		snprintf(err, errlen, "invalid recipient address in field \"%s\"", cfg.recipient_field);
		return false;
	}

	subject = expand_template(t->subject, ev);
	for (s = subject; *s; s++)
		if (*s == '\r' || *s == '\n' || *s == '\t')
			*s = ' ';
	body = expand_template(t->body, ev);

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	buf_printf(&msg, "Date: %s\r\n", date);
	buf_printf(&msg, "From: <%s>\r\n", cfg.smtp_from);
	buf_printf(&msg, "To: <%s>\r\n", rcpt);
	buf_puts(&msg, "Subject: ");
	buf_header_text(&msg, subject);
	buf_puts(&msg, "\r\n");
	buf_printf(&msg, "Message-ID: <orderexp-%lld-%ld@%s>\r\n", ev->id, (long) now, domain);
	buf_puts(&msg, "MIME-Version: 1.0\r\n");
	buf_puts(&msg, "Content-Type: text/plain; charset=UTF-8\r\n");
	buf_puts(&msg, "Content-Transfer-Encoding: 8bit\r\n");
	buf_printf(&msg, "X-Orderexp-Event: %s\r\n", ev->kind);
	buf_printf(&msg, "X-Orderexp-Id: %lld\r\n", ev->id);
	buf_puts(&msg, "\r\n");
	/* the body with CRLF line ends (libcurl dot-stuffs lines itself) */
	for (s = body; *s; s++)
	{
		if (*s == '\n' && (s == body || s[-1] != '\r'))
			buf_append(&msg, "\r\n", 2);
		else
			buf_append(&msg, s, 1);
	}
	if (msg.len < 2 || memcmp(msg.data + msg.len - 2, "\r\n", 2) != 0)
		buf_append(&msg, "\r\n", 2);
	free(subject);
	free(body);

	up.data = msg.data;
	up.len = msg.len;
	up.off = 0;
	snprintf(addr, sizeof(addr), "<%s>", rcpt);
	rcpts = curl_slist_append(rcpts, addr);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, cfg.smtp_url);
	snprintf(addr, sizeof(addr), "<%s>", cfg.smtp_from);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, addr);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_upload);
	curl_easy_setopt(c, CURLOPT_READDATA, &up);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t) msg.len);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (cfg.timeout * 1000));
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	set_protocols(c, "smtp,smtps", CURLPROTO_SMTP | CURLPROTO_SMTPS);
	curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, set_cloexec);
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

	rc = curl_easy_perform(c);
	curl_slist_free_all(rcpts);
	free(msg.data);
	if (rc == CURLE_USE_SSL_FAILED && cfg.smtp_require_tls)
	{
		size_t		n = strlen(errbuf);

		/* libcurl's "STARTTLS not supported." */
		if (n > 0 && errbuf[n - 1] == '.')
			errbuf[n - 1] = '\0';
		snprintf(err, errlen, "smtp: %s, and the login goes over TLS only (see --smtp-insecure)",
				 errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return false;
	}
	if (rc != CURLE_OK)
	{
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (code > 0)
			snprintf(err, errlen, "smtp: %s (server said %ld)",
					 errbuf[0] ? errbuf : curl_easy_strerror(rc), code);
		else
			snprintf(err, errlen, "smtp: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return false;
	}
	return true;
}

/* the outcome of a sink that knows no permanent failure */
#define RETRY_UNLESS(delivered) ((delivered) ? OUTCOME_DELIVERED : OUTCOME_RETRY)

/* deliver EV through the sink; unless delivered, the reason is in err */
Outcome
sink_deliver(SinkType type, const Event *ev, char *err, size_t errlen)
{
	err[0] = '\0';
	switch (type)
	{
		case SINK_STDOUT:
			return RETRY_UNLESS(deliver_stdout(ev, err, errlen));
		case SINK_EXEC:
			return RETRY_UNLESS(deliver_exec(ev, err, errlen));
		case SINK_WEBHOOK:
			return RETRY_UNLESS(deliver_webhook(ev, err, errlen));
		case SINK_SMTP:
			return RETRY_UNLESS(deliver_smtp(ev, err, errlen));
		case SINK_SMS:
			return sms_deliver(ev, err, errlen);
		case SINK_NTYPES:
			break;
	}
	snprintf(err, errlen, "unknown sink");
	return OUTCOME_RETRY;
}
