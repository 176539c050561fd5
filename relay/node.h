/*-------------------------------------------------------------------------
 *
 * node.h
 *		orderexp-relay's nodes: a connection per node, and a batch of
 *		claim, delivery and acknowledgement on it.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_NODE_H
#define ORDEREXP_RELAY_NODE_H

#include <signal.h>
#include <stdbool.h>

#include <libpq-fe.h>

#include "common.h"

typedef struct Stats
{
	long long	batches;
	long long	claimed;
	long long	delivered;
	long long	failed;
	long long	dead;
	long long	left;
} Stats;

typedef enum NodeState
{
	NODE_DOWN,					/* no connection; next attempt at retry_at */
	NODE_CONNECTING,			/* PQconnectPoll() in progress */
	NODE_UP						/* connected, LISTENing */
} NodeState;

typedef struct Node
{
	int			num;			/* 1-based, for messages */
	const char *conninfo;
	NodeState	state;
	PGconn	   *conn;			/* NULL while down */
	PostgresPollingStatusType poll;	/* last PQconnectPoll() result */
	double		connect_deadline;	/* give the attempt up then */
	char		label[160];		/* db@host:port once connected */
	char		origin[64];		/* "SYSID_DBOID" once connected (Event) */
	bool		fail_retryable; /* orderexp.fail(id, error, retryable) exists */
	bool		work;			/* claim from it in the next round */
	bool		ever_up;
	double		retry_at;		/* next connection attempt while down */
	double		backoff;
	double		wake_at;		/* earliest retry of a failed event, 0: none */
	long long  *unacked;		/* delivered, ack not sent (connection lost) */
	int			nunacked;
	int			unacked_cap;
	Stats		st;
} Node;

extern void node_claim_setup(const char *kinds, const char *channels, double lease);
extern void node_down(Node *n, const char *why);
extern void node_connect_start(Node *n);
extern void node_connect_step(Node *n);
extern int	node_batch(Node *n, volatile sig_atomic_t *stop);
extern void drain_socket(Node *n);

#endif							/* ORDEREXP_RELAY_NODE_H */
