/*-------------------------------------------------------------------------
 *
 * common.c
 *		orderexp-relay's log, fatal errors, allocation and clock, which
 *		every other part uses.
 *
 * Log lines go to stderr, one a message, each with a UTC time stamp to
 * the millisecond and the process id.  A fatal error is logged the same
 * way and ends the program with the exit code it names; running out of
 * memory is one (EXIT_INTERNAL), so callers of xmalloc() and xstrdup()
 * need not check.
 *
 * With --log-format json a line is one JSON object instead, for log
 * collectors: "ts" (RFC 3339, UTC, milliseconds), "level" (info, warning,
 * error), "pid", "msg", and where known "node" (the -d option's number),
 * "event_id" and "sink".  lognode() gives them; for logmsg() they are
 * taken from the message's own "node N" and "node N (...): event M"
 * beginning, and a message starting with "warning: " is a warning.
 * Strings are escaped as JSON requires, bytes that are not UTF-8 become
 * U+FFFD, so every line parses.  Each line goes out in one write, since
 * the metrics server's thread logs too.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* a line being put together */
typedef struct Line
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Line;

LogFormat	log_format = LOG_FORMAT_TEXT;

static void line_put(Line *l, const char *s, size_t n);
static void line_json_string(Line *l, const char *s);
static void vlog(LogLevel level, int node, long long event_id, const char *sink,
				 const char *fmt, va_list ap);


/* seconds on the monotonic clock, for time-outs and waits */
double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Append N bytes.  The log cannot call xmalloc(), whose failure logs:
 * without memory the line is cut short instead.
 */
static void
line_put(Line *l, const char *s, size_t n)
{
	if (l->len + n + 1 > l->cap)
	{
		size_t		cap = l->cap ? l->cap : 256;
		char	   *p;

		while (l->len + n + 1 > cap)
			cap *= 2;
		p = realloc(l->data, cap);
		if (p == NULL)
			return;
		l->data = p;
		l->cap = cap;
	}
	memcpy(l->data + l->len, s, n);
	l->len += n;
	l->data[l->len] = '\0';
}

/* S as a JSON string: quotes, escapes, and U+FFFD for what is not UTF-8 */
static void
line_json_string(Line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	line_put(l, "\"", 1);
	while (*p)
	{
		int			n = 0,
					i;
		char		esc[8];

		if (*p == '"' || *p == '\\')
		{
			esc[0] = '\\';
			esc[1] = (char) *p++;
			line_put(l, esc, 2);
			continue;
		}
		if (*p < 0x20 || *p == 0x7f)
		{
			if (*p == '\n')
				line_put(l, "\\n", 2);
			else if (*p == '\t')
				line_put(l, "\\t", 2);
			else if (*p == '\r')
				line_put(l, "\\r", 2);
			else
			{
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				line_put(l, esc, 6);
			}
			p++;
			continue;
		}
		if (*p < 0x80)
		{
			line_put(l, (const char *) p++, 1);
			continue;
		}
		/* a UTF-8 sequence: its length from the lead byte, then check it */
		if (*p >= 0xc2 && *p <= 0xdf)
			n = 2;
		else if (*p >= 0xe0 && *p <= 0xef)
			n = 3;
		else if (*p >= 0xf0 && *p <= 0xf4)
			n = 4;
		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				n = 0;
		/* no overlong forms, surrogates or code points beyond U+10FFFF */
		if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) ||
			(n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
			(n == 4 && p[0] == 0xf0 && p[1] < 0x90) ||
			(n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
			n = 0;
		if (n == 0)
		{
			line_put(l, "\xef\xbf\xbd", 3);
			p++;
		}
		else
		{
			line_put(l, (const char *) p, n);
			p += n;
		}
	}
	line_put(l, "\"", 1);
}

/*
 * Write one log line: the message FMT, with what is known of its node
 * (0: none), event (0: none) and sink (NULL: none).
 */
static void
vlog(LogLevel level, int node, long long event_id, const char *sink,
	 const char *fmt, va_list ap)
{
	static const char *const level_names[] = {"info", "warning", "error"};
	struct timeval tv;
	struct tm	tm;
	char		stamp[64],
				small[1024];
	char	   *msg = small;
	Line		l = {0};
	va_list		ap2;
	int			n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);

	va_copy(ap2, ap);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n >= (int) sizeof(small) && (msg = malloc(n + 1)) != NULL)
		vsnprintf(msg, n + 1, fmt, ap2);
	else
		msg = small;
	va_end(ap2);

	if (log_format == LOG_FORMAT_JSON)
	{
		/* what the message says of its node and event, unless given */
		if (node <= 0 && strncmp(msg, "node ", 5) == 0 && isdigit((unsigned char) msg[5]))
		{
			const char *colon = strstr(msg, ": ");

			node = atoi(msg + 5);
			if (event_id <= 0 && colon && strncmp(colon + 2, "event ", 6) == 0 &&
				isdigit((unsigned char) colon[8]))
				event_id = atoll(colon + 8);
		}
		if (level == LOG_INFO && strncmp(msg, "warning: ", 9) == 0)
			level = LOG_WARNING;
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		line_put(&l, "{\"ts\":\"", 7);
		line_put(&l, stamp, strlen(stamp));
		snprintf(stamp, sizeof(stamp), ".%03dZ\",\"level\":\"%s\",\"pid\":%d,\"msg\":",
				 (int) (tv.tv_usec / 1000), level_names[level], (int) getpid());
		line_put(&l, stamp, strlen(stamp));
		line_json_string(&l, msg);
		if (node > 0)
		{
			snprintf(stamp, sizeof(stamp), ",\"node\":%d", node);
			line_put(&l, stamp, strlen(stamp));
		}
		if (event_id > 0)
		{
			snprintf(stamp, sizeof(stamp), ",\"event_id\":%lld", event_id);
			line_put(&l, stamp, strlen(stamp));
		}
		if (sink != NULL)
		{
			line_put(&l, ",\"sink\":", 8);
			line_json_string(&l, sink);
		}
		line_put(&l, "}\n", 2);
	}
	else
	{
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
		line_put(&l, stamp, strlen(stamp));
		snprintf(stamp, sizeof(stamp), ".%03d UTC orderexp-relay[%d]: ",
				 (int) (tv.tv_usec / 1000), (int) getpid());
		line_put(&l, stamp, strlen(stamp));
		line_put(&l, msg, strlen(msg));
		line_put(&l, "\n", 1);
	}
	if (l.data != NULL)
		fwrite(l.data, 1, l.len, stderr);
	fflush(stderr);
	free(l.data);
	if (msg != small)
		free(msg);
}

void
logmsg(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, 0, 0, NULL, fmt, ap);
	va_end(ap);
}

/* a log line about NODE's EVENT_ID, through SINK (0, 0, NULL: not known) */
void
lognode(LogLevel level, int node, long long event_id, const char *sink, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog(level, node, event_id, sink, fmt, ap);
	va_end(ap);
}

void
fatal(int code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog(LOG_ERROR, 0, 0, NULL, fmt, ap);
	va_end(ap);
	exit(code);
}

void *
xmalloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		fatal(EXIT_INTERNAL, "out of memory");
	return p;
}

char *
xstrdup(const char *s)
{
	char	   *p = strdup(s);

	if (p == NULL)
		fatal(EXIT_INTERNAL, "out of memory");
	return p;
}
