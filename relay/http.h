/*-------------------------------------------------------------------------
 *
 * http.h
 *		A small HTTP/1.1 client for the webhook sink's plain http:// URL:
 *		kept-alive connections, one request at a time on each, driven by
 *		the relay's poll().
 *
 * http_init() once, with the webhook URL: false when the URL is not one
 * for this client (https, a login in the URL, a proxy from the
 * environment...), and libcurl delivers.  Otherwise a request is its
 * head (http_request_head(), then the caller's header lines) and body,
 * handed to http_start(); sink_wait() puts the client's sockets into its
 * poll() (http_pollfds()) and moves them on (http_io()), which calls the
 * DONE callback of http_init() for every call that ended; http_status()
 * and friends read its outcome, http_free() frees it.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_HTTP_H
#define ORDEREXP_RELAY_HTTP_H

#include <poll.h>

#include "common.h"
#include "template.h"

/* one request and its answer (opaque) */
typedef struct HttpCall HttpCall;

typedef void (*HttpDone) (HttpCall *call, void *arg);

extern bool http_init(const char *url, int max_conns, HttpDone done);
extern bool http_enabled(void);
extern void http_cleanup(void);

extern void http_request_head(StrBuf *req, const char *method);
extern HttpCall *http_start(StrBuf *req, const char *body, size_t bodylen,
							double deadline, void *arg);

extern int	http_nfds(void);
extern int	http_pollfds(struct pollfd *fds, double *until);
extern void http_io(const struct pollfd *fds, int nfds);

/* the outcome of a call that ended */
extern long http_status(const HttpCall *call);
extern long http_retry_after(const HttpCall *call);
extern const char *http_error(const HttpCall *call);
extern void http_free(HttpCall *call);

#endif							/* ORDEREXP_RELAY_HTTP_H */
