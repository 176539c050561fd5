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
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static void vlog(const char *fmt, va_list ap);


/* seconds on the monotonic clock, for time-outs and waits */
double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
vlog(const char *fmt, va_list ap)
{
	struct timeval tv;
	struct tm	tm;
	char		stamp[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s.%03d UTC orderexp-relay[%d]: ", stamp, (int) (tv.tv_usec / 1000), (int) getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
}

void
logmsg(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void
fatal(int code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog(fmt, ap);
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
