/*-------------------------------------------------------------------------
 *
 * node.c
 *		orderexp-relay's nodes: a connection per node that LISTENs on
 *		"orderexp", and a batch on it: claim, deliver through the sinks,
 *		acknowledge or fail.
 *
 * A node whose connection drops is reconnected with a doubling back-off
 * (up to --retry-max); acks that could not be sent are sent first after the
 * reconnect.  A batch leases up to --batch-size events with
 * orderexp.claim() (the attempt is counted there), hands each to the sink
 * its route names, acknowledges the delivered ones with one orderexp.ack()
 * and reports the others one by one with orderexp.fail(), which schedules
 * the retry or makes the row dead; a failure the sink calls permanent (an
 * SMS to an invalid number) goes as fail(..., retryable => false), dead at
 * once, where the database has that form (orderexp 1.3), else as a plain
 * failure.  A delivery that could still be running when its lease runs out
 * is not started: the rest of the batch is left to its lease.  relay.c
 * decides which node gets a batch and when.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "node.h"
#include "sink.h"

/* one claimed event and the fields for templates, grouped by id */
static const char *const claim_sql =
"WITH c AS MATERIALIZED ("
"  SELECT * FROM orderexp.claim($1::int, $2::interval, $3::text[], $4::text[]))"
" SELECT c.id, c.kind, c.channel, c.order_table::text, c.order_key,"
"        (SELECT pg_catalog.row_to_json(e)::text"
"           FROM (SELECT c.id, c.kind, c.order_table::text AS \"table\", c.order_key,"
"                        c.channel, c.created_at, c.attempts,"
"                        pg_catalog.current_database() AS database, c.payload) e),"
"        c.attempts::text, pg_catalog.to_json(c.created_at) #>> '{}', f.key, f.value"
"   FROM c LEFT JOIN LATERAL ("
"        SELECT p.key, p.value FROM pg_catalog.jsonb_each_text("
"          CASE WHEN pg_catalog.jsonb_typeof(c.payload) = 'object' THEN c.payload"
"               ELSE '{}'::jsonb END) p"
"        UNION ALL"
"        SELECT 'order.' || o.key, o.value FROM pg_catalog.jsonb_each_text("
"          CASE WHEN pg_catalog.jsonb_typeof(c.payload -> 'order') = 'object'"
"               THEN c.payload -> 'order' ELSE '{}'::jsonb END) o) f ON true"
"  ORDER BY c.id";

/* seconds until the retry, NULL when the row is now dead */
static const char *const fail_sql =
"SELECT pg_catalog.date_part('epoch', orderexp.fail($1::bigint, $2::text)"
"                                       - pg_catalog.clock_timestamp())";
static const char *const fail_retryable_sql =
"SELECT pg_catalog.date_part('epoch', orderexp.fail($1::bigint, $2::text, $3::boolean)"
"                                       - pg_catalog.clock_timestamp())";

/*
 * At connect: the node's database as webhook ids name it (the system
 * identifier, the same on a physical standby, and the database's oid), and
 * whether fail() takes retryable.
 */
static const char *const hello_sql =
"SELECT (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s)::text"
"       || '_' || d.oid::text,"
"       pg_catalog.to_regprocedure('orderexp.fail(bigint,text,boolean)') IS NOT NULL"
"  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";

static const char *const ack_sql = "SELECT orderexp.ack($1::bigint[])";

/* the claim's filters and lease, as claim() takes them (node_claim_setup) */
static const char *claim_kinds;
static const char *claim_channels;
static char lease_text[32];

static bool refusal(const PGresult *res);
static void node_error(Node *n, PGresult *res, const char *what);
static bool exec_ok(PGresult *res);
static bool send_ack(Node *n, const long long *ids, int nids);
static void notice_processor(void *arg, const char *message);
static bool node_connected(Node *n);
static void free_events(Event *evs, int nevs);
static char *nullable_dup(const PGresult *res, int row, int col);
static void add_field(Event *ev, int *cap, const char *key, char *value);
static Event *read_events(const PGresult *res, int *nevs);

/* the filters and the lease every claim passes */
void
node_claim_setup(const char *kinds, const char *channels, double lease)
{
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

	snprintf(msg, sizeof(msg), "%s", why ? why : "");
	msg[strcspn(msg, "\n")] = '\0';
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

/* send acks left over from a lost connection; false if the node went down */
static bool
send_ack(Node *n, const long long *ids, int nids)
{
	char	   *arr;
	size_t		len = 3 + (size_t) nids * 21;
	PGresult   *res;
	const char *params[1];
	int			i,
				acked;

	if (nids == 0)
		return true;
	arr = xmalloc(len);
	strcpy(arr, "{");
	for (i = 0; i < nids; i++)
		sprintf(arr + strlen(arr), "%s%lld", i ? "," : "", ids[i]);
	strcat(arr, "}");
	params[0] = arr;
	res = PQexecParams(n->conn, ack_sql, 1, NULL, params, NULL, NULL, 0);
	free(arr);
	if (!exec_ok(res))
	{
		/* keep them for the next connection */
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
		node_error(n, res, "ack");
		return false;
	}
	acked = atoi(PQgetvalue(res, 0, 0));
	if (acked != nids)
		logmsg("node %d (%s): ack of %d delivered events acknowledged %d (leases expired and another relay took them?)",
			   n->num, n->label, nids, acked);
	PQclear(res);
	return true;
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
 * The connection attempt is made; LISTEN, then send the acks a lost
 * connection swallowed.  False if the node went down again.
 */
static bool
node_connected(Node *n)
{
	PGresult   *res;
	long long  *pending;
	int			npending;

	n->state = NODE_UP;
	PQsetNoticeProcessor(n->conn, notice_processor, n);
	snprintf(n->label, sizeof(n->label), "%s@%s:%s", PQdb(n->conn),
			 PQhost(n->conn), PQport(n->conn));
	res = PQexec(n->conn, "LISTEN orderexp");
	if (!exec_ok(res))
	{
		node_error(n, res, "LISTEN orderexp");
		return false;
	}
	PQclear(res);
	res = PQexec(n->conn, hello_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		node_error(n, res, "reading the database's identity");
		return false;
	}
	snprintf(n->origin, sizeof(n->origin), "%s", PQgetvalue(res, 0, 0));
	n->fail_retryable = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);

	logmsg("node %d (%s): connected%s", n->num, n->label, n->ever_up ? " again" : "");
	metrics_node_up(n->num, true, n->label);
	n->ever_up = true;
	n->backoff = 0;
	n->work = true;

	pending = n->unacked;
	npending = n->nunacked;
	if (npending > 0)
	{
		n->unacked = NULL;
		n->nunacked = n->unacked_cap = 0;
		logmsg("node %d (%s): sending %d acks left from the lost connection", n->num, n->label, npending);
		if (!send_ack(n, pending, npending))
		{
			free(pending);
			return false;
		}
		free(pending);
	}
	return true;
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
		(void) node_connected(n);
	else if (n->poll == PGRES_POLLING_FAILED)
	{
		char		msg[600];

		snprintf(msg, sizeof(msg), "could not connect: %s", PQerrorMessage(n->conn));
		node_down(n, msg);
	}
}

/* ---------------------------------------------------------------------
 * a batch
 * ---------------------------------------------------------------------
 */
static void
free_events(Event *evs, int nevs)
{
	int			i,
				j;

	for (i = 0; i < nevs; i++)
	{
		for (j = 0; j < evs[i].nfields; j++)
		{
			free(evs[i].fields[j].key);
			free(evs[i].fields[j].value);
		}
		free(evs[i].fields);
	}
	free(evs);
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

/* the claim's rows (one per field) as events; the strings point into res */
static Event *
read_events(const PGresult *res, int *nevs)
{
	int			rows = PQntuples(res),
				r,
				n = 0,
				cap = 0;
	Event	   *evs = xmalloc(sizeof(Event) * (rows ? rows : 1));
	long long	last = -1;

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
			ev->kind = PQgetvalue(res, r, 1);
			ev->channel = PQgetvalue(res, r, 2);
			ev->table = PQgetvalue(res, r, 3);
			ev->order_key = PQgetvalue(res, r, 4);
			ev->json = PQgetvalue(res, r, 5);
			add_field(ev, &cap, "id", xstrdup(PQgetvalue(res, r, 0)));
			add_field(ev, &cap, "kind", xstrdup(ev->kind));
			add_field(ev, &cap, "channel", xstrdup(ev->channel));
			add_field(ev, &cap, "table", xstrdup(ev->table));
			add_field(ev, &cap, "order_key", xstrdup(ev->order_key));
			add_field(ev, &cap, "attempts", xstrdup(PQgetvalue(res, r, 6)));
			add_field(ev, &cap, "created_at", xstrdup(PQgetvalue(res, r, 7)));
			last = id;
		}
		else
			ev = &evs[n - 1];
		if (!PQgetisnull(res, r, 8))
			add_field(ev, &cap, PQgetvalue(res, r, 8), nullable_dup(res, r, 9));
	}
	*nevs = n;
	return evs;
}

/*
 * One batch from node N: claim, deliver, ack, fail.  Returns how many events
 * were claimed, -1 when the node went down.
 */
int
node_batch(Node *n, volatile sig_atomic_t *stop)
{
	const char *params[4];
	char		batch_text[16];
	PGresult   *res;
	Event	   *evs;
	int			nevs,
				i;
	long long  *done;
	int			ndone = 0;
	int		   *failed;
	int		   *failed_sink;
	bool	   *failed_permanent;
	char	  **errors;
	int			nfailed = 0,
				dead = 0,
				left = 0,
				reported = 0;
	double		t0 = now_seconds(),
				started,
				ms;
	bool		up = true;

	snprintf(batch_text, sizeof(batch_text), "%d", cfg.batch_size);
	params[0] = batch_text;
	params[1] = lease_text;
	params[2] = claim_kinds;
	params[3] = claim_channels;
	res = PQexecParams(n->conn, claim_sql, 4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		node_error(n, res, "claim");
		return -1;
	}
	evs = read_events(res, &nevs);
	if (nevs == 0)
	{
		PQclear(res);
		free(evs);
		return 0;
	}
	metrics_claimed(n->num, t0, nevs);

	done = xmalloc(sizeof(long long) * nevs);
	failed = xmalloc(sizeof(int) * nevs);
	failed_sink = xmalloc(sizeof(int) * nevs);
	failed_permanent = xmalloc(sizeof(bool) * nevs);
	errors = xmalloc(sizeof(char *) * nevs);
	for (i = 0; i < nevs; i++)
	{
		Event	   *ev = &evs[i];
		const Route *route;
		char		err[1024];
		Outcome		outcome;

		/*
		 * Stopping, or the lease would run out during this delivery: leave
		 * the rest to their lease rather than deliver what another relay may
		 * already be delivering.
		 */
		if (*stop || now_seconds() - t0 + cfg.timeout >= cfg.lease)
		{
			left = nevs - i;
			break;
		}
		route = route_for(ev);
		if (route == NULL)
		{
			snprintf(err, sizeof(err), "no route of this relay takes kind %s, channel %s",
					 ev->kind, ev->channel);
			failed[nfailed] = i;
			failed_sink[nfailed] = METRICS_NO_ROUTE;
			failed_permanent[nfailed] = false;
			errors[nfailed++] = xstrdup(err);
			continue;
		}
		if (ev->attempts > 1)
			metrics_retried(n->num, route->sink);
		metrics_in_flight(route->sink, 1);
		started = now_seconds();
		ev->origin = n->origin;
		outcome = sink_deliver(route->sink, ev, err, sizeof(err));
		if (outcome == OUTCOME_DELIVERED)
		{
			metrics_in_flight(route->sink, -1);
			metrics_delivered(n->num, route->sink, now_seconds() - started);
			done[ndone++] = ev->id;
			if (cfg.verbose > 0)
				lognode(LOG_INFO, n->num, ev->id, sink_name(route->sink),
						"node %d: event %lld (%s, %s, order %s) delivered to %s",
						n->num, ev->id, ev->kind, ev->channel, ev->order_key, sink_name(route->sink));
		}
		else
		{
			metrics_in_flight(route->sink, -1);
			if (cfg.verbose > 0)
				lognode(LOG_INFO, n->num, ev->id, sink_name(route->sink),
						"node %d: event %lld (%s, %s, order %s) not delivered to %s%s: %s",
						n->num, ev->id, ev->kind, ev->channel, ev->order_key, sink_name(route->sink),
						outcome == OUTCOME_PERMANENT ? " (for good)" : "", err);
			failed[nfailed] = i;
			failed_sink[nfailed] = route->sink;
			failed_permanent[nfailed] = outcome == OUTCOME_PERMANENT;
			errors[nfailed++] = xstrdup(err);
		}
	}

	/* what was delivered first: one ack */
	up = send_ack(n, done, ndone);

	/* then every failure, with its reason */
	for (i = 0; up && i < nfailed; i++)
	{
		char		id[24];
		const char *fp[3];
		PGresult   *fr;

		snprintf(id, sizeof(id), "%lld", evs[failed[i]].id);
		fp[0] = id;
		fp[1] = errors[i];
		fp[2] = failed_permanent[i] ? "false" : "true";
		/* a permanent failure where fail() cannot say so is retried */
		if (n->fail_retryable)
			fr = PQexecParams(n->conn, fail_retryable_sql, 3, NULL, fp, NULL, NULL, 0);
		else
			fr = PQexecParams(n->conn, fail_sql, 2, NULL, fp, NULL, NULL, 0);
		if (!exec_ok(fr) && PQstatus(n->conn) == CONNECTION_OK && !refusal(fr))
		{
			/*
			 * The row moved on without us (its lease expired, and another
			 * relay delivered it or it ran out of attempts): nothing to
			 * report any more.
			 */
			char		msg[512];

			snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(fr));
			msg[strcspn(msg, "\n")] = '\0';
			lognode(LOG_WARNING, n->num, evs[failed[i]].id, NULL,
					"node %d: event %lld: fail() refused: %s", n->num, evs[failed[i]].id, msg);
			metrics_failed(n->num, failed_sink[i]);
			PQclear(fr);
			continue;
		}
		if (!exec_ok(fr))
		{
			node_error(n, fr, "fail");
			up = false;
			break;
		}
		reported++;
		if (PQgetisnull(fr, 0, 0))
		{
			metrics_dead(n->num, failed_sink[i]);
			dead++;
		}
		else
		{
			double		at = now_seconds() + atof(PQgetvalue(fr, 0, 0));

			metrics_failed(n->num, failed_sink[i]);
			if (n->wake_at == 0 || at < n->wake_at)
				n->wake_at = at;
		}
		PQclear(fr);
	}
	/* failures not reported (the node went down) come back after the lease */
	for (; i < nfailed; i++)
		metrics_failed(n->num, failed_sink[i]);
	metrics_released(n->num, t0, nevs);

	ms = (now_seconds() - t0) * 1000;
	n->st.batches++;
	n->st.claimed += nevs;
	n->st.delivered += ndone;
	n->st.failed += nfailed;
	n->st.dead += dead;
	n->st.left += left;
	if (cfg.verbose >= 0 || nfailed > 0)
		logmsg("node %d (%s): batch of %d: %d delivered, %d failed (%d now dead%s), %d left to their lease, %.0f ms",
			   n->num, n->label, nevs, ndone, nfailed, dead,
			   reported < nfailed ? ", some not reported" : "", left, ms);
	for (i = 0; i < nfailed; i++)
	{
		if (cfg.verbose >= 0 && i < 3)
			lognode(LOG_WARNING, n->num, evs[failed[i]].id,
					failed_sink[i] == METRICS_NO_ROUTE ? NULL : sink_name((SinkType) failed_sink[i]),
					"node %d: event %lld failed: %s", n->num, evs[failed[i]].id, errors[i]);
		free(errors[i]);
	}
	free(errors);
	free(failed_permanent);
	free(failed_sink);
	free(failed);
	free(done);
	free_events(evs, nevs);
	PQclear(res);
	return up ? nevs : -1;
}

/* read NOTIFYs and detect dropped connections */
void
drain_socket(Node *n)
{
	PGnotify   *note;

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
}
