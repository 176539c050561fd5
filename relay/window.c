/*-------------------------------------------------------------------------
 *
 * window.c
 *		orderexp-relay's deliveries in flight: per sink a window of
 *		concurrent deliveries (--concurrency), a rate limit (--rate), and
 *		the events' leases.
 *
 * Claimed events wait here in a queue per sink (the sink their route
 * names) until the sink's window has a free slot, its rate limit a token,
 * and a pause asked for by the receiver (HTTP 429) is over; then
 * sink_start() starts them.  window_room() tells the nodes how many events
 * to claim: enough to keep every window full while the next claim is on
 * its way, never more than a rate limit lets through within the lease.
 *
 * The lease rule: an event is ours until its claim's time plus --lease;
 * its delivery must be over before then, or another relay may deliver it
 * at the same time.  Each event carries that deadline, less a safety
 * margin (LEASE_MARGIN); a delivery is bounded by the earlier of --timeout
 * and the deadline, and an event whose deadline is too close to start is
 * not started: it is left to its lease (claimed again when it runs out).
 *
 * Outcomes go back to the event's node: delivered ids are acknowledged in
 * groups, failures reported with fail() (retryable or not), and an event a
 * receiver asked us to hold back (429) waits here again if its lease lets
 * it, without a new attempt; otherwise it is failed, and comes back after
 * the back-off with its attempt spent.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "node.h"
#include "sink.h"
#include "window.h"

/* a claimed event in the relay: waiting for its sink, or in flight */
typedef struct Job
{
	Event		ev;
	Node	   *node;
	SinkType	sink;
	double		claimed_at;		/* when the claim was sent */
	double		deadline;		/* delivery over by then (lease rule) */
	struct Job *next;			/* in its sink's queue */
} Job;

/* a sink's queue, window and rate limit */
typedef struct SinkWindow
{
	Job		   *head;
	Job		   *tail;
	int			queued;
	double		tokens;			/* token bucket of --rate */
	double		burst;
	double		refilled_at;
	double		paused_until;	/* HTTP 429's Retry-After */
} SinkWindow;

static SinkWindow win[SINK_NTYPES];
static bool routable[SINK_NTYPES];
static int	claiming;			/* rows asked for by claims in flight */

/*
 * At most this many starts per window_run(), then the loop looks at the
 * nodes' sockets: a claim's result is read, and the next claim sent, while
 * the last claim's deliveries are being started (starting an HTTP request
 * takes some 30 us of CPU, a window's worth as long as a claim)
 */
#define START_CHUNK		16
static bool more_to_start;		/* the last window_run() stopped early */

/* failure lines in the log: at most FAIL_LOG_MAX a second (but with -v) */
#define FAIL_LOG_MAX	10
static double fail_log_second;
static int	fail_logged;
static int	fail_unlogged;

static double lease_margin(void);
static double min_start(void);
static void push_job(Job *j, bool front);
static Job *pop_job(SinkType s);
static void refill(SinkType s, double now);
static void leave_job(Job *j, const char *why);
static void finish_job(Transfer *t);
static void collect(void);
static bool log_failure(void);

/* the part of the lease kept free at its end: 5 %, at most 1 s */
static double
lease_margin(void)
{
	return cfg.lease * 0.05 < 1 ? cfg.lease * 0.05 : 1;
}

/* the least time a delivery is started with: --timeout, at most 0.5 s */
static double
min_start(void)
{
	return cfg.timeout < 0.5 ? cfg.timeout : 0.5;
}

void
window_init(void)
{
	int			i,
				s;
	double		now = now_seconds();

	for (s = 0; s < SINK_NTYPES; s++)
	{
		win[s].burst = cfg.rate[s] / 10 > 1 ? cfg.rate[s] / 10 : 1;
		win[s].tokens = win[s].burst;
		win[s].refilled_at = now;
	}
	for (i = 0; i < cfg.nroutes; i++)
		routable[cfg.routes[i].sink] = true;
}

static void
push_job(Job *j, bool front)
{
	SinkWindow *w = &win[j->sink];

	if (front)
	{
		j->next = w->head;
		w->head = j;
		if (w->tail == NULL)
			w->tail = j;
	}
	else
	{
		j->next = NULL;
		if (w->tail)
			w->tail->next = j;
		else
			w->head = j;
		w->tail = j;
	}
	w->queued++;
}

static Job *
pop_job(SinkType s)
{
	SinkWindow *w = &win[s];
	Job		   *j = w->head;

	if (j)
	{
		w->head = j->next;
		if (w->head == NULL)
			w->tail = NULL;
		w->queued--;
		j->next = NULL;
	}
	return j;
}

/* the token bucket of a rate-limited sink, up to date */
static void
refill(SinkType s, double now)
{
	SinkWindow *w = &win[s];

	if (cfg.rate[s] > 0)
	{
		w->tokens += (now - w->refilled_at) * cfg.rate[s];
		if (w->tokens > w->burst)
			w->tokens = w->burst;
	}
	w->refilled_at = now;
}

/*
 * How many events to claim now: per sink, a window's worth in flight and a
 * batch waiting behind it, less what is there already; for a rate-limited
 * sink, no more than its rate starts within a couple of seconds (and well
 * within the lease).  Claims are not per sink, so the sink with the least
 * room decides (run a relay of its own for a slow sink).  0: wait.
 */
int
window_room(void)
{
	double		now = now_seconds();
	int			room = cfg.batch_size,
				least_window = cfg.batch_size,
				s;
	bool		rated = false;

	for (s = 0; s < SINK_NTYPES; s++)
	{
		int			r,
					held;

		if (!routable[s])
			continue;
		held = win[s].queued + sink_running((SinkType) s);
		r = cfg.concurrency[s] + cfg.batch_size - held;
		if (cfg.rate[s] > 0)
		{
			double		usable = (cfg.lease - lease_margin() - min_start()) / 2;
			double		ahead = usable < 2 ? usable : 2;
			int			budget;

			refill((SinkType) s, now);
			budget = (int) (win[s].tokens + cfg.rate[s] * ahead) - win[s].queued;
			if (budget < r)
				r = budget;
			rated = true;
		}
		if (r < room)
			room = r;
		if (cfg.concurrency[s] < least_window)
			least_window = cfg.concurrency[s];
	}
	room -= claiming;
	/* no claims of a few rows while a large window drains */
	if (!rated && room < least_window / 2)
		return 0;
	return room > 0 ? room : 0;
}

/* a claim of ROWS rows was sent (or, negative, has come back) */
void
window_claiming(int rows)
{
	claiming += rows;
}

/* node N's claim came back with these events: to their sinks' queues */
void
window_claimed(Node *n, Event *evs, int nevs, double claimed_at)
{
	int			i;

	for (i = 0; i < nevs; i++)
	{
		const Route *route = route_for(&evs[i]);
		Job		   *j;

		if (route == NULL)
		{
			char		err[256];

			snprintf(err, sizeof(err), "no route of this relay takes kind %s, channel %s",
					 evs[i].kind, evs[i].channel);
			node_failed(n, evs[i].id, err, true, METRICS_NO_ROUTE);
			metrics_released(n->num, claimed_at, 1);
			free_event(&evs[i]);
			continue;
		}
		j = xmalloc(sizeof(Job));
		j->ev = evs[i];
		j->ev.origin = n->origin;	/* for webhook-id (whsig.c) */
		j->node = n;
		j->sink = route->sink;
		j->claimed_at = claimed_at;
		j->deadline = claimed_at + cfg.lease - lease_margin();
		push_job(j, false);
	}
	if (cfg.verbose >= 0)
		logmsg("node %d (%s): batch of %d claimed; %d deliveries in flight",
			   n->num, n->label, nevs, sink_running(SINK_NTYPES));
}

/* J is not delivered by us: its lease runs out, and it is claimed again */
static void
leave_job(Job *j, const char *why)
{
	if (cfg.verbose > 0)
		lognode(LOG_INFO, j->node->num, j->ev.id, sink_name(j->sink),
				"node %d: event %lld left to its lease: %s", j->node->num, j->ev.id, why);
	j->node->st.left++;
	metrics_released(j->node->num, j->claimed_at, 1);
	free_event(&j->ev);
	free(j);
}

/*
 * Start what the windows, rate limits and pauses let start, and take in
 * the outcomes; over and over while something moves (stdout's deliveries
 * end as they start).  STOPPING: start nothing more.
 */
void
window_run(bool stopping)
{
	bool		moved = true;
	int			started = 0;

	more_to_start = false;
	while (moved)
	{
		double		now = now_seconds();
		int			s;

		moved = false;
		collect();
		if (stopping)
			return;
		for (s = 0; s < SINK_NTYPES; s++)
		{
			SinkWindow *w = &win[s];

			refill((SinkType) s, now);
			while (w->head && sink_running((SinkType) s) < cfg.concurrency[s] &&
				   now >= w->paused_until &&
				   (cfg.rate[s] <= 0 || w->tokens >= 1))
			{
				Job		   *j = pop_job((SinkType) s);
				double		until = now + cfg.timeout;

				if (j->deadline - now < min_start())
				{
					leave_job(j, "too close to the end of its lease to start");
					continue;
				}
				if (j->deadline < until)
					until = j->deadline;
				if (cfg.rate[s] > 0)
					w->tokens -= 1;
				if (j->ev.attempts > 1)
					metrics_retried(j->node->num, j->sink);
				metrics_in_flight(j->sink, 1);
				(void) sink_start(j->sink, &j->ev, until, j);
				moved = true;
				if (++started >= START_CHUNK)
				{
					more_to_start = true;
					return;
				}
			}
		}
	}
}

/* take in the deliveries that ended */
static void
collect(void)
{
	Transfer   *t;

	while ((t = sink_finished()) != NULL)
		finish_job(t);
}

/* a delivery ended: ack, fail, or hold back (429) */
static void
finish_job(Transfer *t)
{
	Job		   *j = sink_owner(t);
	Node	   *n = j->node;
	SinkResult	r;
	const char *sname = sink_name(j->sink);

	sink_done(t, &r);
	metrics_in_flight(j->sink, -1);
	if (r.outcome == OUTCOME_THROTTLED)
	{
		double		now = now_seconds();
		SinkWindow *w = &win[j->sink];

		if (now + r.retry_after > w->paused_until)
		{
			w->paused_until = now + r.retry_after;
			lognode(LOG_WARNING, n->num, j->ev.id, sname,
					"%s asks to slow down: %s pauses for %g s", sname, sname, r.retry_after);
		}
		/* again after the pause, if the lease lets it: no attempt spent */
		if (w->paused_until + min_start() <= j->deadline && n->state == NODE_UP)
		{
			push_job(j, true);
			return;
		}
	}
	if (r.outcome == OUTCOME_DELIVERED)
	{
		metrics_delivered(n->num, j->sink, r.seconds);
		node_delivered(n, j->ev.id);
		if (cfg.verbose > 0)
			lognode(LOG_INFO, n->num, j->ev.id, sname,
					"node %d: event %lld (%s, %s, order %s) delivered to %s",
					n->num, j->ev.id, j->ev.kind, j->ev.channel, j->ev.order_key, sname);
	}
	else
	{
		char		err[1100];

		if (r.outcome == OUTCOME_THROTTLED)
			snprintf(err, sizeof(err), "%s; the lease ends first", r.err);
		else
			snprintf(err, sizeof(err), "%s", r.err);
		if (log_failure())
			lognode(LOG_WARNING, n->num, j->ev.id, sname,
					"node %d: event %lld (%s, %s, order %s) not delivered to %s: %s",
					n->num, j->ev.id, j->ev.kind, j->ev.channel, j->ev.order_key, sname, err);
		node_failed(n, j->ev.id, err, r.outcome != OUTCOME_PERMANENT, j->sink);
	}
	metrics_released(n->num, j->claimed_at, 1);
	free_event(&j->ev);
	free(j);
}

/*
 * Log this failed delivery?  Always with -v; otherwise (-q too: failures
 * are problems) at most FAIL_LOG_MAX a second, so that a receiver that is
 * down does not flood the log: the lines left out are counted in the next
 * second's log.
 */
static bool
log_failure(void)
{
	double		now = now_seconds();

	if (cfg.verbose > 0)
		return true;
	if (now - fail_log_second >= 1)
	{
		if (fail_unlogged > 0)
			logmsg("%d more failed deliveries not logged (at most %d lines a second; -v logs all)",
				   fail_unlogged, FAIL_LOG_MAX);
		fail_log_second = now;
		fail_logged = fail_unlogged = 0;
	}
	if (fail_logged < FAIL_LOG_MAX)
	{
		fail_logged++;
		return true;
	}
	fail_unlogged++;
	return false;
}

/*
 * the next time a waiting event may start (a token, a pause's end; now
 * when the last window_run() stopped early); 0: none
 */
double
window_wake(void)
{
	double		at = 0;
	int			s;

	if (more_to_start)
		return now_seconds();

	for (s = 0; s < SINK_NTYPES; s++)
	{
		SinkWindow *w = &win[s];
		double		t;

		if (w->head == NULL || sink_running((SinkType) s) >= cfg.concurrency[s])
			continue;
		t = w->paused_until;
		if (cfg.rate[s] > 0 && w->tokens < 1)
		{
			double		tok = w->refilled_at + (1 - w->tokens) / cfg.rate[s];

			if (tok > t)
				t = tok;
		}
		if (at == 0 || t < at)
			at = t;
	}
	return at;
}

/* events held: waiting or in flight */
int
window_held(void)
{
	int			s,
				n = sink_running(SINK_NTYPES);

	for (s = 0; s < SINK_NTYPES; s++)
		n += win[s].queued;
	return n;
}

/* stopping: the waiting events are left to their lease */
void
window_leave_queued(void)
{
	int			s;
	Job		   *j;

	for (s = 0; s < SINK_NTYPES; s++)
		while ((j = pop_job((SinkType) s)) != NULL)
			leave_job(j, "stopping");
}
