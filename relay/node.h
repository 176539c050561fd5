/*-------------------------------------------------------------------------
 *
 * node.h
 *		orderexp-relay's nodes: a connection per node, and the statements
 *		on it (claim, ack, fail), sent without blocking.
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

/* the statement in flight on a node's connection */
typedef enum NodeOp
{
	OP_NONE,
	OP_SETUP,					/* LISTEN, and which fail() there is */
	OP_CLAIM,
	OP_ACK,
	OP_FAIL
} NodeOp;

/* a failure to report with orderexp.fail() */
typedef struct FailReport
{
	long long	id;
	char	   *error;
	bool		retryable;
	int			sink;			/* SinkType or METRICS_NO_ROUTE */
} FailReport;

/* a statement sent on a node's connection, its result not all read yet */
typedef struct NodeStatement
{
	NodeOp		op;
	int			claim_asked;	/* OP_CLAIM: rows asked for */
	double		claim_sent;		/* OP_CLAIM: when (the leases start after) */
	long long  *acking;			/* OP_ACK: the ids */
	int			nacking;
	FailReport	failing;		/* OP_FAIL: the report */
	bool		preparing;		/* a Prepare of its statement goes first */
} NodeStatement;

/*
 * Statements in flight at once on a connection in pipeline mode (libpq
 * 14 and later): the next one waits at the server while the relay reads
 * and hands on the last one's result, so the database does not wait for
 * the relay.  Each is a transaction of its own (a sync after each).
 */
#define NODE_PIPELINE	2

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
	long long  *unacked;		/* delivered, ack not sent yet */
	int			nunacked;
	int			unacked_cap;
	double		unacked_since;	/* when the oldest of them was delivered */
	NodeStatement stmts[NODE_PIPELINE];	/* in flight, the oldest first */
	int			nstmts;
	bool		pipeline;		/* the connection is in pipeline mode */
	int			prepared;		/* PREPARED_* statements on the connection */
	bool		flushing;		/* their text is not all sent yet */
	bool		op_failed;		/* one failed; the node is down */
	FailReport *fails;			/* failures to report */
	int			nfails;
	int			fails_cap;
	Stats		st;
} Node;

/* the oldest statement in flight on a node, or OP_NONE */
static inline NodeOp
node_op(const Node *n)
{
	return n->nstmts > 0 ? n->stmts[0].op : OP_NONE;
}

/* the statement sent last on a node, or OP_NONE */
static inline NodeOp
node_sent_op(const Node *n)
{
	return n->nstmts > 0 ? n->stmts[n->nstmts - 1].op : OP_NONE;
}

/* acks go in groups: this many ids, or the oldest this old (seconds) */
#define ACK_GROUP		300
#define ACK_DELAY		0.05

extern void node_claim_setup(const char *kinds, const char *channels, double lease,
							 bool fields);
extern void node_down(Node *n, const char *why);
extern void node_connect_start(Node *n);
extern void node_connect_step(Node *n);
extern bool node_send(Node *n, int claim_room, bool flush_acks);
extern void node_io(Node *n, short revents);
extern void node_delivered(Node *n, long long id);
extern void node_failed(Node *n, long long id, const char *error, bool retryable, int sink);
extern void free_event(Event *ev);

/*
 * Where the claimed events go: relay.c points these at the delivery window
 * (window.c), which in turn reports each event's outcome back through
 * node_delivered() and node_failed().  Hooks rather than calls, so that the
 * node knows nothing of the window: claims_sent(rows) counts rows asked for
 * and not yet answered (negative when a claim ended or was given up),
 * events_claimed() hands over what a claim returned.
 */
extern void (*node_claims_sent_hook) (int rows);
extern void (*node_events_claimed_hook) (Node *n, Event *evs, int nevs, double claimed_at);

#endif							/* ORDEREXP_RELAY_NODE_H */
