/*-------------------------------------------------------------------------
 *
 * node.c
 *		orderexp-relay's nodes: a connection per node that LISTENs on
 *		"orderexp", and the statements on it: claim, ack, fail.
 *
 * A node whose connection drops is reconnected with a doubling back-off
 * (up to --retry-max); acks that could not be sent are sent first after the
 * reconnect.  Nothing here blocks: a statement is sent with
 * PQsendQueryParams() on a non-blocking connection, and its result read by
 * node_io() when the main loop sees the socket ready, so that deliveries go
 * on while the database answers.  After the set-up (LISTEN) a connection
 * is in pipeline mode (libpq 14 and later), with up to NODE_PIPELINE
 * statements in flight, each followed by a sync so that it is a transaction
 * of its own: the next claim or ack waits at the server while the relay
 * reads the last claim's rows and starts their deliveries.  node_send()
 * picks the next statement: the acks when a group is full or old enough
 * (ACK_GROUP ids, ACK_DELAY seconds), then the failures one by one (with
 * orderexp.fail(), which schedules the retry or makes the row dead; a
 * failure the sink calls permanent goes as fail(..., retryable => false),
 * dead at once, where the database has that form (orderexp 1.3), else as a
 * plain failure), then a claim of as many events as the window has room
 * for (window.c).  Claimed
 * events go to window.c, which delivers them and reports back through
 * node_delivered() and node_failed().
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "node.h"
#include "sink.h"

/* set by relay.c: the delivery window (node.h) */
void		(*node_claims_sent_hook) (int rows) = NULL;
void		(*node_events_claimed_hook) (Node *n, Event *evs, int nevs, double claimed_at) = NULL;

/*
 * A claim: one row per event, with its JSON built once (CLAIM_EVENT_JSON,
 * the body a webhook receives, the same in both forms).  The columns are
 * id, kind, channel, table, order_key, json, attempts, created_at; with
 * payload fields (claim_fields_sql, for the templates of the SMTP and SMS
 * sinks) an event has one more row per field of its payload and of the
 * order's payload columns, as key and value, the event's columns repeated
 * but its JSON only in the first row, grouped by id.  Without those sinks
 * the fields are not asked for: they multiplied the rows (eight for a
 * closed event with one payload column) and made the claim about three
 * times as expensive for the server (see bench/results.md).
 */
#define CLAIM_EVENT_JSON \
"(SELECT pg_catalog.row_to_json(e)::text" \
"   FROM (SELECT c.id, c.kind, c.order_table::text AS \"table\", c.order_key," \
"                c.channel, c.created_at, c.attempts," \
"                pg_catalog.current_database() AS database, c.payload) e)"

static const char *const claim_sql =
"SELECT c.id, c.kind, c.channel, c.order_table::text, c.order_key,"
"       " CLAIM_EVENT_JSON ","
"       c.attempts::text, pg_catalog.to_json(c.created_at) #>> '{}'"
"  FROM orderexp.claim($1::int, $2::interval, $3::text[], $4::text[]) c"
" ORDER BY c.id";
static const char *const claim_fields_sql =
"WITH c AS MATERIALIZED ("
"  SELECT c.*, " CLAIM_EVENT_JSON " AS json"
"    FROM orderexp.claim($1::int, $2::interval, $3::text[], $4::text[]) c)"
" SELECT c.id, c.kind, c.channel, c.order_table::text, c.order_key,"
"        CASE WHEN f.n IS NULL OR f.n = 1 THEN c.json END,"
"        c.attempts::text, pg_catalog.to_json(c.created_at) #>> '{}', f.key, f.value"
"   FROM c LEFT JOIN LATERAL ("
"        SELECT pg_catalog.row_number() OVER () AS n, u.key, u.value FROM ("
"          SELECT p.key, p.value FROM pg_catalog.jsonb_each_text("
"            CASE WHEN pg_catalog.jsonb_typeof(c.payload) = 'object' THEN c.payload"
"                 ELSE '{}'::jsonb END) p"
"          UNION ALL"
"          SELECT 'order.' || o.key, o.value FROM pg_catalog.jsonb_each_text("
"            CASE WHEN pg_catalog.jsonb_typeof(c.payload -> 'order') = 'object'"
"                 THEN c.payload -> 'order' ELSE '{}'::jsonb END) o) u) f ON true"
"  ORDER BY c.id, f.n";

/*
 * seconds until the retry, NULL when the row is now dead; fail_retryable_sql
 * where the database has fail(id, error, retryable) (orderexp 1.3)
 */
static const char *const fail_sql =
"SELECT pg_catalog.date_part('epoch', orderexp.fail($1::bigint, $2::text)"
"                                       - pg_catalog.clock_timestamp())";
static const char *const fail_retryable_sql =
"SELECT pg_catalog.date_part('epoch', orderexp.fail($1::bigint, $2::text, $3::boolean)"
"                                       - pg_catalog.clock_timestamp())";

/*
 * At connect: LISTEN; the node's database as webhook ids name it (the
 * system identifier, the same on a physical standby, and the database's
 * oid), and whether fail() takes retryable.
 */
static const char *const setup_sql =
"LISTEN orderexp;"
" SELECT (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s)::text"
"       || '_' || d.oid::text,"
"       pg_catalog.to_regprocedure('orderexp.fail(bigint,text,boolean)') IS NOT NULL"
"  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";

/*
 * An ack commits without waiting for its WAL to reach the disk: an ack
 * that a server crash loses only means that its events are delivered
 * again after their lease, which at-least-once delivery allows, and the
 * server does not wait for a flush on every other transaction of the
 * relay.  The claim's commit (the leases) is durable as before.
 */
static const char *const ack_sql =
"SELECT orderexp.ack($1::bigint[])"
"  FROM pg_catalog.set_config('synchronous_commit', 'off', true) s";

/*
 * In pipeline mode the claim and the ack are prepared once per connection
 * (named statements, parsed and planned once) instead of being parsed and
 * planned again on every call; the Prepare goes in the same pipeline, in
 * front of the statement's first use.
 */
#define PREPARED_CLAIM	0x01
#define PREPARED_ACK	0x02
/* the statements' names, by PREPARED_CLAIM and PREPARED_ACK */
static const char *const prepared_name[] = {
	NULL, "orderexp_relay_claim", "orderexp_relay_ack"
};

/* the claim's filters and lease, as claim() takes them (node_claim_setup) */
static const char *claim_kinds;
static const char *claim_channels;
static char lease_text[32];
static bool claim_fields;		/* with the payload's fields (templates) */

static bool refusal(const PGresult *res);
static void node_error(Node *n, PGresult *res, const char *what);
static bool exec_ok(PGresult *res);
static void keep_unacked(Node *n, const long long *ids, int nids);
static void notice_processor(void *arg, const char *message);
static void node_connected(Node *n);
static bool send_op(Node *n, NodeStatement *st, int prepared, const char *sql,
					int nparams, const char *const *params);
static void statement_done(Node *n);
static void op_result(Node *n, PGresult *res);
static void claim_result(Node *n, PGresult *res);
static void ack_result(Node *n, PGresult *res);
static void fail_result(Node *n, PGresult *res);
static char *nullable_dup(const PGresult *res, int row, int col);
static void add_field(Event *ev, int *cap, const char *key, char *value);
static Event *read_events(const PGresult *res, int *nevs);

/*
 * the filters and the lease every claim passes; FIELDS: claim the
 * payload's fields too, for templates
 */
void
node_claim_setup(const char *kinds, const char *channels, double lease, bool fields)
{
	claim_fields = fields;
	claim_kinds = kinds;
	claim_channels = channels;
	snprintf(lease_text, sizeof(lease_text), "%g s", lease);
}

/* ---------------------------------------------------------------------
 * nodes
 * ---------------------------------------------------------------------
 */

/* is this SQLSTATE a server that refuses us for good (not a hiccup)? */
static bool
refusal(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (state == NULL)
		return false;
	return strcmp(state, "42883") == 0 ||	/* undefined_function */
		strcmp(state, "42501") == 0 ||	/* insufficient_privilege */
		strcmp(state, "3F000") == 0 ||	/* invalid_schema_name */
		strcmp(state, "42P01") == 0;	/* undefined_table */
}

void
node_down(Node *n, const char *why)
{
	char		msg[512];
	int			i;

	snprintf(msg, sizeof(msg), "%s", why ? why : "");
	msg[strcspn(msg, "\n")] = '\0';
	for (i = 0; i < n->nstmts; i++)
	{
		NodeStatement *st = &n->stmts[i];

		/* an ack in flight is sent again after the reconnect */
		if (st->op == OP_ACK && st->nacking > 0)
			keep_unacked(n, st->acking, st->nacking);
		free(st->acking);
		/* a claim in flight: its rows come back after their lease */
		if (st->op == OP_CLAIM)
			node_claims_sent_hook(-st->claim_asked);
		/* failures not reported come back after their lease */
		if (st->op == OP_FAIL)
		{
			metrics_failed(n->num, st->failing.sink);
			free(st->failing.error);
		}
	}
	memset(n->stmts, 0, sizeof(n->stmts));
	n->nstmts = 0;
	n->pipeline = false;
	n->prepared = 0;
	while (n->nfails > 0)
	{
		metrics_failed(n->num, n->fails[n->nfails - 1].sink);
		free(n->fails[--n->nfails].error);
	}
	n->flushing = false;
	n->op_failed = true;
	if (n->conn)
	{
		PQfinish(n->conn);
		n->conn = NULL;
	}
	n->state = NODE_DOWN;
	n->work = false;
	n->backoff = n->backoff <= 0 ? 1 : n->backoff * 2;
	if (n->backoff > cfg.retry_max)
		n->backoff = cfg.retry_max;
	n->retry_at = now_seconds() + n->backoff;
	metrics_node_up(n->num, false, n->label);
	if (cfg.once)
		lognode(LOG_WARNING, n->num, 0, NULL, "node %d (%s): %s; not retried (--once)", n->num, n->label, msg);
	else
		lognode(LOG_WARNING, n->num, 0, NULL, "node %d (%s): %s; retrying with back-off in %g s", n->num, n->label, msg, n->backoff);
}

/*
 * A statement failed: the connection is gone or the server refused.  A
 * refusal of the API (function or privilege missing) ends the relay;
 * anything else counts as a hiccup of this node.
 */
static void
node_error(Node *n, PGresult *res, const char *what)
{
	char		msg[600];

	snprintf(msg, sizeof(msg), "%s failed: %s", what,
			 res ? PQresultErrorMessage(res) : PQerrorMessage(n->conn));
	msg[strcspn(msg, "\n")] = '\0';
	if (res && refusal(res) && PQstatus(n->conn) == CONNECTION_OK)
	{
		PQclear(res);
		fatal(EXIT_SERVER, "node %d (%s): %s (is orderexp 1.1 installed and the role granted orderexp_relay?)",
			  n->num, n->label, msg);
	}
	if (res)
		PQclear(res);
	node_down(n, msg);
}

static bool
exec_ok(PGresult *res)
{
	ExecStatusType s = PQresultStatus(res);

	return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* delivered ids to acknowledge with the next ack on this node */
static void
keep_unacked(Node *n, const long long *ids, int nids)
{
	int			i;

	if (n->nunacked == 0)
		n->unacked_since = now_seconds();
	for (i = 0; i < nids; i++)
	{
		if (n->nunacked == n->unacked_cap)
		{
			n->unacked_cap = n->unacked_cap ? n->unacked_cap * 2 : 256;
			n->unacked = realloc(n->unacked, n->unacked_cap * sizeof(long long));
			if (n->unacked == NULL)
				fatal(EXIT_INTERNAL, "out of memory");
		}
		n->unacked[n->nunacked++] = ids[i];
	}
}

/* server NOTICEs and WARNINGs go into our log, with the node */
static void
notice_processor(void *arg, const char *message)
{
	Node	   *n = arg;
	char		msg[1024];

	snprintf(msg, sizeof(msg), "%s", message);
	msg[strcspn(msg, "\n")] = '\0';
	logmsg("node %d (%s): server: %s", n->num, n->label, msg);
}

/*
 * The connection attempt is made: from now on the connection does not
 * block; LISTEN and look up fail() (OP_SETUP), then the acks a lost
 * connection swallowed go first (node_send()).
 */
static void
node_connected(Node *n)
{
	n->state = NODE_UP;
	n->op_failed = false;
	PQsetNoticeProcessor(n->conn, notice_processor, n);
	snprintf(n->label, sizeof(n->label), "%s@%s:%s", PQdb(n->conn),
			 PQhost(n->conn), PQport(n->conn));
	if (PQsetnonblocking(n->conn, 1) != 0)
	{
		node_error(n, NULL, "set-up");
		return;
	}
	{
		NodeStatement st = {.op = OP_SETUP};

		if (!send_op(n, &st, 0, setup_sql, 0, NULL))
			return;
	}
	logmsg("node %d (%s): connected%s", n->num, n->label, n->ever_up ? " again" : "");
	metrics_node_up(n->num, true, n->label);
	n->ever_up = true;
	n->backoff = 0;
	n->work = true;
	if (n->nunacked > 0)
		logmsg("node %d (%s): sending %d acks left from the lost connection", n->num, n->label, n->nunacked);
}

/*
 * Start a connection attempt without blocking: a node whose host does not
 * answer must not hold up the others.  The main loop drives it on with
 * PQconnectPoll() and gives it up at connect_timeout (10 s unless the
 * connection string says otherwise).
 */
void
node_connect_start(Node *n)
{
	static const char *const keys[] = {
		"connect_timeout", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "fallback_application_name", "dbname", NULL
	};
	const char *values[7] = {"10", "30", "10", "3", "orderexp-relay", n->conninfo, NULL};
	PQconninfoOption *opts,
			   *o;
	double		limit = 10;

	n->conn = PQconnectStartParams(keys, values, 1);
	if (n->conn == NULL)
		fatal(EXIT_INTERNAL, "out of memory");
	if (!n->ever_up && PQdb(n->conn) && PQhost(n->conn) && PQport(n->conn))
		snprintf(n->label, sizeof(n->label), "%s@%s:%s", PQdb(n->conn),
				 PQhost(n->conn), PQport(n->conn));
	if (PQstatus(n->conn) == CONNECTION_BAD)
	{
		char		msg[600];

		snprintf(msg, sizeof(msg), "could not connect: %s", PQerrorMessage(n->conn));
		node_down(n, msg);
		return;
	}
	opts = PQconninfo(n->conn);
	for (o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && atof(o->val) > 0)
			limit = atof(o->val);
	PQconninfoFree(opts);
	n->state = NODE_CONNECTING;
	n->poll = PGRES_POLLING_WRITING;
	n->connect_deadline = now_seconds() + limit;
}

/* one step of a connection attempt, when its socket is ready */
void
node_connect_step(Node *n)
{
	n->poll = PQconnectPoll(n->conn);
	if (n->poll == PGRES_POLLING_OK)
		node_connected(n);
	else if (n->poll == PGRES_POLLING_FAILED)
	{
		char		msg[600];

		snprintf(msg, sizeof(msg), "could not connect: %s", PQerrorMessage(n->conn));
		node_down(n, msg);
	}
}


/* ---------------------------------------------------------------------
 * statements
 * ---------------------------------------------------------------------
 */

/*
 * Send a statement, ST (its kind and what it carries) going to the end of
 * the node's statements in flight; in pipeline mode a sync follows, so
 * that it is a transaction of its own.  PREPARED (PREPARED_CLAIM or
 * PREPARED_ACK, 0: none): in pipeline mode, SQL is sent as that named
 * prepared statement, prepared first if the connection has not got it yet.
 * False (and the node down, ST's rows, acks and failure taken back) if it
 * could not be sent.
 */
static bool
send_op(Node *n, NodeStatement *st, int prepared, const char *sql, int nparams,
		const char *const *params)
{
	int			sent = 1;
	NodeOp		op = st->op;

	if (!n->pipeline)
		prepared = 0;
	st->preparing = prepared != 0 && (n->prepared & prepared) == 0;
	n->stmts[n->nstmts++] = *st;
	if (st->preparing)
	{
		sent = PQsendPrepare(n->conn, prepared_name[prepared], sql, nparams, NULL);
		if (sent)
			n->prepared |= prepared;
	}
	if (sent)
	{
		if (prepared != 0)
			sent = PQsendQueryPrepared(n->conn, prepared_name[prepared], nparams,
									   params, NULL, NULL, 0);
		else if (nparams == 0)
			sent = PQsendQuery(n->conn, sql);
		else
			sent = PQsendQueryParams(n->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	}
#ifdef LIBPQ_HAS_PIPELINING
	if (sent && n->pipeline)
		sent = PQpipelineSync(n->conn);
#endif
	if (!sent)
	{
		node_error(n, NULL, op == OP_CLAIM ? "claim" : op == OP_ACK ? "ack" :
				   op == OP_FAIL ? "fail" : "LISTEN orderexp");
		return false;
	}
	n->flushing = PQflush(n->conn) == 1;
	return true;
}

/* the oldest statement in flight is done: the next one is */
static void
statement_done(Node *n)
{
	NodeStatement *st = &n->stmts[0];

	if (st->op == OP_FAIL)
		free(st->failing.error);
	free(st->acking);
	memmove(n->stmts, n->stmts + 1, sizeof(NodeStatement) * (n->nstmts - 1));
	n->nstmts--;
	memset(&n->stmts[n->nstmts], 0, sizeof(NodeStatement));
}

/*
 * Send the next statement on an UP node with none in flight: the acks when
 * they are due (FLUSH_ACKS: whatever there is, at the end), the failures,
 * or a claim of up to CLAIM_ROOM events.  True if something was sent.
 */
bool
node_send(Node *n, int claim_room, bool flush_acks)
{
	NodeStatement st;

	if (n->state != NODE_UP || n->nstmts >= (n->pipeline ? NODE_PIPELINE : 1))
		return false;
	memset(&st, 0, sizeof(st));
	if (n->nunacked > 0 &&
		(flush_acks || n->nunacked >= ACK_GROUP ||
		 now_seconds() - n->unacked_since >= ACK_DELAY))
	{
		int			take = n->nunacked < ACK_GROUP * 4 ? n->nunacked : ACK_GROUP * 4;
		size_t		len = 3 + (size_t) take * 21;
		char	   *arr = xmalloc(len),
				   *p = arr;
		const char *params[1];
		int			i;

		*p++ = '{';
		for (i = 0; i < take; i++)
			p += sprintf(p, "%s%lld", i ? "," : "", n->unacked[i]);
		*p++ = '}';
		*p = '\0';
		st.op = OP_ACK;
		st.acking = xmalloc(sizeof(long long) * take);
		memcpy(st.acking, n->unacked, sizeof(long long) * take);
		st.nacking = take;
		memmove(n->unacked, n->unacked + take, sizeof(long long) * (n->nunacked - take));
		n->nunacked -= take;
		n->unacked_since = now_seconds();
		params[0] = arr;
		(void) send_op(n, &st, PREPARED_ACK, ack_sql, 1, params);
		free(arr);
		return true;
	}
	if (n->nfails > 0)
	{
		char		id[24];
		const char *params[3];

		st.op = OP_FAIL;
		st.failing = n->fails[0];
		memmove(n->fails, n->fails + 1, sizeof(FailReport) * (n->nfails - 1));
		n->nfails--;
		snprintf(id, sizeof(id), "%lld", st.failing.id);
		params[0] = id;
		params[1] = st.failing.error;
		params[2] = st.failing.retryable ? "true" : "false";
		/* a permanent failure where fail() cannot say so is retried */
		if (n->fail_retryable)
			(void) send_op(n, &st, 0, fail_retryable_sql, 3, params);
		else
			(void) send_op(n, &st, 0, fail_sql, 2, params);
		return true;
	}
	if (n->work && claim_room > 0)
	{
		const char *params[4];
		char		rows[16];

		snprintf(rows, sizeof(rows), "%d", claim_room);
		params[0] = rows;
		params[1] = lease_text;
		params[2] = claim_kinds;
		params[3] = claim_channels;
		st.op = OP_CLAIM;
		st.claim_asked = claim_room;
		st.claim_sent = now_seconds();
		/* counted before it is sent: node_down() takes it back on failure */
		node_claims_sent_hook(claim_room);
		(void) send_op(n, &st, PREPARED_CLAIM,
					   claim_fields ? claim_fields_sql : claim_sql, 4, params);
		return true;
	}
	return false;
}

/*
 * The node's socket is ready (REVENTS): send the rest of the statement,
 * read what came (results, NOTIFYs), detect a dropped connection.
 */
void
node_io(Node *n, short revents)
{
	PGnotify   *note;
	int			nulls = 0;

	if (n->flushing && (revents & POLLOUT))
	{
		int			r = PQflush(n->conn);

		if (r < 0)
		{
			node_error(n, NULL, "send");
			return;
		}
		n->flushing = r == 1;
	}
	if (!(revents & (POLLIN | POLLERR | POLLHUP)))
		return;
	if (PQconsumeInput(n->conn) == 0 || PQstatus(n->conn) != CONNECTION_OK)
	{
		char		msg[600];

		snprintf(msg, sizeof(msg), "connection lost: %s", PQerrorMessage(n->conn));
		node_down(n, msg);
		return;
	}
	while ((note = PQnotifies(n->conn)) != NULL)
	{
		n->work = true;
		PQfreemem(note);
	}
	n->op_failed = false;
	while (n->nstmts > 0 && !PQisBusy(n->conn))
	{
		PGresult   *res = PQgetResult(n->conn);

		if (res == NULL)
		{
			/* in pipeline mode the statement is done at its sync */
			if (n->pipeline)
			{
				if (++nulls > 1)
					break;		/* nothing more for now */
				continue;
			}
			/* the statement is done */
			if (node_op(n) == OP_SETUP)
			{
				statement_done(n);
#ifdef LIBPQ_HAS_PIPELINING
				/* set up: from now on, statements in a pipeline */
				if (PQenterPipelineMode(n->conn) != 1)
				{
					node_error(n, NULL, "pipeline mode");
					return;
				}
				n->pipeline = true;
#endif
			}
			else
				statement_done(n);
			break;
		}
		nulls = 0;
#ifdef LIBPQ_HAS_PIPELINING
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
		{
			PQclear(res);
			statement_done(n);
			continue;
		}
#endif
		op_result(n, res);
		if (n->op_failed)
			return;				/* the node went down */
	}
}

/* one result of the statement in flight */
static void
op_result(Node *n, PGresult *res)
{
	NodeStatement *st = &n->stmts[0];

	/* the Prepare in front of the statement */
	if (st->preparing)
	{
		st->preparing = false;
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			node_error(n, res, st->op == OP_CLAIM ? "claim" : "ack");
		else
			PQclear(res);
		return;
	}
	switch (node_op(n))
	{
		case OP_SETUP:
			if (!exec_ok(res))
			{
				node_error(n, res, "LISTEN orderexp");
				return;
			}
			if (PQresultStatus(res) == PGRES_TUPLES_OK)
			{
				if (PQntuples(res) != 1)
				{
					node_error(n, res, "reading the database's identity");
					return;
				}
				snprintf(n->origin, sizeof(n->origin), "%s", PQgetvalue(res, 0, 0));
				n->fail_retryable = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
			}
			PQclear(res);
			break;
		case OP_CLAIM:
			claim_result(n, res);
			break;
		case OP_ACK:
			ack_result(n, res);
			break;
		case OP_FAIL:
			fail_result(n, res);
			break;
		case OP_NONE:
			PQclear(res);
			break;
	}
}

/* the claimed events go to the window */
static void
claim_result(Node *n, PGresult *res)
{
	Event	   *evs;
	int			nevs;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	NodeStatement *st = &n->stmts[0];

	node_claims_sent_hook(-st->claim_asked);
	if (state && strcmp(state, "22023") == 0)
	{
		char		msg[600];

		/* a lease above the server's orderexp.max_lease: no retry mends it */
		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		msg[strcspn(msg, "\n")] = '\0';
		fatal(EXIT_SERVER, "node %d (%s): claim refused: %s (is --lease above orderexp.max_lease?)",
			  n->num, n->label, msg);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		st->claim_asked = 0;
		node_error(n, res, "claim");
		return;
	}
	evs = read_events(res, &nevs);
	PQclear(res);
	/* a full claim: there is probably more */
	if (nevs < st->claim_asked)
		n->work = false;
	st->claim_asked = 0;
	if (nevs > 0)
	{
		n->st.batches++;
		n->st.claimed += nevs;
		metrics_claimed(n->num, st->claim_sent, nevs);
		node_events_claimed_hook(n, evs, nevs, st->claim_sent);
	}
	free(evs);
}

static void
ack_result(Node *n, PGresult *res)
{
	NodeStatement *st = &n->stmts[0];
	int			acked;

	if (!exec_ok(res))
	{
		node_error(n, res, "ack");
		return;
	}
	acked = atoi(PQgetvalue(res, 0, 0));
	if (acked != st->nacking)
		logmsg("node %d (%s): ack of %d delivered events acknowledged %d (leases expired and another relay took them?)",
			   n->num, n->label, st->nacking, acked);
	free(st->acking);
	st->acking = NULL;
	st->nacking = 0;
	PQclear(res);
}

static void
fail_result(Node *n, PGresult *res)
{
	FailReport *f = &n->stmts[0].failing;

	if (!exec_ok(res) && PQstatus(n->conn) == CONNECTION_OK)
	{
		/*
		 * The row moved on without us (its lease expired, and another relay
		 * delivered it, it ran out of attempts, or another role claimed it:
		 * 42501): nothing to report any more.  A relay whose role may not
		 * call fail() at all could not claim either.
		 */
		char		msg[512];

		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
		msg[strcspn(msg, "\n")] = '\0';
		lognode(LOG_WARNING, n->num, f->id, NULL,
				"node %d: event %lld: fail() refused: %s", n->num, f->id, msg);
		metrics_failed(n->num, f->sink);
		PQclear(res);
		return;
	}
	if (!exec_ok(res))
	{
		node_error(n, res, "fail");
		return;
	}
	if (PQgetisnull(res, 0, 0))
	{
		metrics_dead(n->num, f->sink);
		n->st.dead++;
	}
	else
	{
		double		at = now_seconds() + atof(PQgetvalue(res, 0, 0));

		metrics_failed(n->num, f->sink);
		if (n->wake_at == 0 || at < n->wake_at)
			n->wake_at = at;
	}
	PQclear(res);
}

/* EV was delivered: acknowledge it with the next group */
void
node_delivered(Node *n, long long id)
{
	n->st.delivered++;
	keep_unacked(n, &id, 1);
}

/*
 * EV was not delivered: report it with fail(), retryable or not; on a node
 * that is down it comes back after its lease.
 */
void
node_failed(Node *n, long long id, const char *error, bool retryable, int sink)
{
	FailReport *f;

	n->st.failed++;
	if (n->state != NODE_UP)
	{
		metrics_failed(n->num, sink);
		return;
	}
	if (n->nfails == n->fails_cap)
	{
		n->fails_cap = n->fails_cap ? n->fails_cap * 2 : 64;
		n->fails = realloc(n->fails, n->fails_cap * sizeof(FailReport));
		if (n->fails == NULL)
			fatal(EXIT_INTERNAL, "out of memory");
	}
	f = &n->fails[n->nfails++];
	f->id = id;
	f->error = xstrdup(error);
	f->retryable = retryable;
	f->sink = sink;
}

/* ---------------------------------------------------------------------
 * events
 * ---------------------------------------------------------------------
 */
void
free_event(Event *ev)
{
	int			j;

	for (j = 0; j < ev->nfields; j++)
	{
		free(ev->fields[j].key);
		free(ev->fields[j].value);
	}
	free(ev->fields);
	free(ev->kind);
	free(ev->channel);
	free(ev->table);
	free(ev->order_key);
	free(ev->json);
}

static char *
nullable_dup(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static void
add_field(Event *ev, int *cap, const char *key, char *value)
{
	if (ev->nfields == *cap)
	{
		*cap = *cap ? *cap * 2 : 16;
		ev->fields = realloc(ev->fields, *cap * sizeof(Field));
		if (ev->fields == NULL)
			fatal(EXIT_INTERNAL, "out of memory");
	}
	ev->fields[ev->nfields].key = xstrdup(key);
	ev->fields[ev->nfields].value = value;
	ev->nfields++;
}

/*
 * the claim's rows (with fields: one per field) as events, with copies of
 * the strings; the fields (the event's own and its payload's) only with
 * the fields' claim, whose sinks have templates
 */
static Event *
read_events(const PGresult *res, int *nevs)
{
	int			rows = PQntuples(res),
				r,
				n = 0,
				cap = 0;
	Event	   *evs = xmalloc(sizeof(Event) * (rows ? rows : 1));
	long long	last = -1;
	bool		with_fields = PQnfields(res) > 8;

	for (r = 0; r < rows; r++)
	{
		long long	id = atoll(PQgetvalue(res, r, 0));
		Event	   *ev;

		if (n == 0 || id != last)
		{
			ev = &evs[n++];
			memset(ev, 0, sizeof(*ev));
			cap = 0;
			ev->id = id;
			ev->attempts = atoi(PQgetvalue(res, r, 6));
			ev->kind = xstrdup(PQgetvalue(res, r, 1));
			ev->channel = xstrdup(PQgetvalue(res, r, 2));
			ev->table = xstrdup(PQgetvalue(res, r, 3));
			ev->order_key = xstrdup(PQgetvalue(res, r, 4));
			ev->json = xstrdup(PQgetvalue(res, r, 5));
			/* the event's own fields, for templates only */
			if (with_fields)
			{
				add_field(ev, &cap, "id", xstrdup(PQgetvalue(res, r, 0)));
				add_field(ev, &cap, "kind", xstrdup(ev->kind));
				add_field(ev, &cap, "channel", xstrdup(ev->channel));
				add_field(ev, &cap, "table", xstrdup(ev->table));
				add_field(ev, &cap, "order_key", xstrdup(ev->order_key));
				add_field(ev, &cap, "attempts", xstrdup(PQgetvalue(res, r, 6)));
				add_field(ev, &cap, "created_at", xstrdup(PQgetvalue(res, r, 7)));
			}
			last = id;
		}
		else
			ev = &evs[n - 1];
		if (with_fields && !PQgetisnull(res, r, 8))
			add_field(ev, &cap, PQgetvalue(res, r, 8), nullable_dup(res, r, 9));
	}
	*nevs = n;
	return evs;
}
