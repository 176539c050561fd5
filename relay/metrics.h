/*-------------------------------------------------------------------------
 *
 * metrics.h
 *		orderexp-relay as operators see it: Prometheus metrics and a health
 *		check over HTTP (--metrics-listen), and readiness for systemd.
 *
 * The relay's loop reports what happens through the one-line hooks below;
 * they only count, under a mutex, and never block on the network.  An HTTP
 * server thread of its own (libmicrohttpd) answers /metrics and /healthz
 * from those counts, so the loop need not know about it.  Nodes are the
 * 1-based numbers of the -d options; a sink is a SinkType, or
 * METRICS_NO_ROUTE for an event that no route of this relay takes.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_METRICS_H
#define ORDEREXP_RELAY_METRICS_H

#include <stdbool.h>

#define METRICS_NO_ROUTE	(-1)

/* set-up, from main() */
extern void metrics_check_listen(const char *value);
extern void metrics_start(int nnodes);
extern void metrics_stop(void);
extern void service_notify(const char *state);

/* a node's connection: up (LISTENing) or not, and its db@host:port */
extern void metrics_node_up(int node, bool up, const char *label);

/* events held by this relay: COUNT claimed at CLAIMED_AT (now_seconds()) */
extern void metrics_claimed(int node, double claimed_at, int count);
extern void metrics_released(int node, double claimed_at, int count);

/* one delivery */
extern void metrics_in_flight(int sink, int delta);
extern void metrics_retried(int node, int sink);
extern void metrics_delivered(int node, int sink, double seconds);
extern void metrics_failed(int node, int sink);
extern void metrics_dead(int node, int sink);

#endif							/* ORDEREXP_RELAY_METRICS_H */
