/*-------------------------------------------------------------------------
 *
 * easy.c
 *		What every libcurl transfer of orderexp-relay is set up with, and
 *		the fields of an event its requests are made from.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <fcntl.h>
#include <string.h>

#include <curl/curl.h>

#include "common.h"
#include "easy.h"

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
