/*-------------------------------------------------------------------------
 *
 * relay.c
 *		orderexp-relay: deliver orderexp's outbox events from one or several
 *		PostgreSQL nodes.
 *
 * For every node (a libpq connection string) the relay keeps a connection
 * that LISTENs on "orderexp".  A node "has work" after a NOTIFY, after
 * (re)connecting, every --poll-interval (so that nothing waits on a missed
 * notification), when a failed event's retry time comes, and as long as its
 * last claim came back full.  Claims go to the nodes with work in turn, so
 * that a busy node cannot starve the others, as long as the windows have
 * room for more events (window.c).
 *
 * Everything happens in one loop, in one thread: the nodes' statements go
 * out without blocking (node.c), many deliveries are in flight at once
 * (sink.c: the HTTP client of http.c, libcurl's multi interface, commands
 * with pipes), and one wait (sink_wait(): poll() over the HTTP client's and
 * libcurl's sockets, the commands' pipes, the nodes' sockets and a
 * self-pipe the signal handlers write to)
 * takes in whatever comes first: a result, a NOTIFY, a delivery's end, a
 * command's exit (SIGCHLD), a signal, or the next timer (a poll, a
 * reconnect, a retry, a group of acks, a rate limit's token).
 *
 * Delivery is at least once: a relay that dies between a delivery and the
 * ack leaves the row to its lease, and it is delivered again after the
 * lease.  A node whose connection drops is reconnected with a doubling
 * back-off (node.c).
 *
 * SIGTERM / SIGINT: no more claims and no more starts; the deliveries in
 * flight are finished, the delivered events acknowledged and the failures
 * reported, the events not started left to their lease; a summary goes to
 * stderr and the exit status is 0.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "node.h"
#include "sink.h"
#include "sms.h"
#include "whsig.h"
#include "window.h"

static volatile sig_atomic_t stop_requested = 0;
static Node nodes[MAX_NODES];
static int	nnodes;
static int	signal_pipe[2] = {-1, -1};
static char *kinds_filter;
static char *channels_filter;

static void handle_stop(int signo);
static void handle_child(int signo);
static void setup_signals(void);
static void wait_for_work(double until);
static bool settling(const Node *n);
static void check_connect_deadlines(void);
static void settle_connections(bool stop_on_signal);
static bool nodes_busy(void);
static void send_statements(bool stopping, int *rr);
static void summary(void);


/* ---------------------------------------------------------------------
 * signals
 * ---------------------------------------------------------------------
 */
static void
handle_stop(int signo)
{
	int			save_errno = errno;
	char		c = 1;

	(void) signo;
	stop_requested = 1;
	if (signal_pipe[1] >= 0 && write(signal_pipe[1], &c, 1) < 0)
	{
		/* the pipe is full: a wake-up is pending anyway */
	}
	errno = save_errno;
}

/* a command of the exec sink ended: wake the loop, which reaps it */
static void
handle_child(int signo)
{
	int			save_errno = errno;
	char		c = 2;

	(void) signo;
	if (signal_pipe[1] >= 0 && write(signal_pipe[1], &c, 1) < 0)
	{
		/* the pipe is full: a wake-up is pending anyway */
	}
	errno = save_errno;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe(signal_pipe) != 0)
		fatal(EXIT_INTERNAL, "could not create a pipe: %s", strerror(errno));
	fcntl(signal_pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
	fcntl(signal_pipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(signal_pipe[1], F_SETFD, FD_CLOEXEC);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = handle_child;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
}

/* ---------------------------------------------------------------------
 * main loop
 * ---------------------------------------------------------------------
 */

/*
 * Wait until UNTIL, a signal, something on a node's socket (a result, a
 * NOTIFY, a dropped connection, progress of a connection attempt) or on a
 * delivery; then handle what came.
 */
static void
wait_for_work(double until)
{
	struct pollfd fds[MAX_NODES + 1];
	int			slot[MAX_NODES];
	int			nfds = 0,
				i;
	char		buf[64];

	fds[nfds].fd = signal_pipe[0];
	fds[nfds++].events = POLLIN;
	for (i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];
		int			fd;

		slot[i] = -1;
		if (n->state == NODE_DOWN || (fd = PQsocket(n->conn)) < 0)
			continue;
		fds[nfds].fd = fd;
		if (n->state == NODE_CONNECTING)
		{
			fds[nfds].events = n->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			if (n->connect_deadline < until)
				until = n->connect_deadline;
		}
		else
			fds[nfds].events = POLLIN | (n->flushing ? POLLOUT : 0);
		slot[i] = nfds++;
	}
	sink_wait(fds, nfds, until);
	if (fds[0].revents)
		while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
			;
	for (i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];

		if (slot[i] < 0 || n->state == NODE_DOWN)
			continue;
		if (n->state == NODE_CONNECTING)
		{
			if (fds[slot[i]].revents)
				node_connect_step(n);
		}
		else if (fds[slot[i]].revents || node_op(n) != OP_NONE)
		{
			/*
			 * With a statement in flight, look for its result even when the
			 * socket says nothing: libpq may have read it already while it
			 * sent (the socket does not block, so this costs one recv)
			 */
			node_io(n, fds[slot[i]].revents | (node_op(n) != OP_NONE ? POLLIN : 0));
		}
	}
}

/* is node N connecting, or connected and not set up yet (LISTEN...)? */
static bool
settling(const Node *n)
{
	return n->state == NODE_CONNECTING || (n->state == NODE_UP && node_op(n) == OP_SETUP);
}

/*
 * give up connection attempts (and set-ups after them) that ran past their
 * connect_timeout
 */
static void
check_connect_deadlines(void)
{
	double		now = now_seconds();
	int			i;

	for (i = 0; i < nnodes; i++)
		if (settling(&nodes[i]) && now >= nodes[i].connect_deadline)
			node_down(&nodes[i], "could not connect: timed out (connect_timeout)");
}

/*
 * drive the connection attempts in progress to success (set up) or
 * failure; at start, so that every node is ready before the first claim
 */
static void
settle_connections(bool stop_on_signal)
{
	for (;;)
	{
		double		until = 0;
		bool		any = false;
		int			i;

		check_connect_deadlines();
		for (i = 0; i < nnodes; i++)
			if (settling(&nodes[i]))
			{
				if (!any || nodes[i].connect_deadline < until)
					until = nodes[i].connect_deadline;
				any = true;
			}
		if (!any || (stop_on_signal && stop_requested))
			return;
		wait_for_work(until);
	}
}

static void
summary(void)
{
	Stats		t = {0};
	int			i;

	for (i = 0; i < nnodes; i++)
	{
		Stats	   *s = &nodes[i].st;

		t.batches += s->batches;
		t.claimed += s->claimed;
		t.delivered += s->delivered;
		t.failed += s->failed;
		t.dead += s->dead;
		t.left += s->left;
		if (nnodes > 1)
			logmsg("summary node %d (%s): %lld batches, %lld claimed, %lld delivered, %lld failed (%lld dead), %lld left to their lease%s",
				   nodes[i].num, nodes[i].label, s->batches, s->claimed, s->delivered,
				   s->failed, s->dead, s->left, nodes[i].nunacked ? ", acks unsent" : "");
	}
	logmsg("summary: %lld batches, %lld claimed, %lld delivered, %lld failed (%lld dead), %lld left to their lease",
		   t.batches, t.claimed, t.delivered, t.failed, t.dead, t.left);
}

/*
 * the next statement of every node with none in flight: acks and failures
 * first, then claims while the windows have room, the nodes taking turns
 * (*RR: the node to ask first)
 */
static void
send_statements(bool stopping, int *rr)
{
	int			k;

	for (k = 0; k < nnodes; k++)
	{
		Node	   *n = &nodes[(*rr + k) % nnodes];
		int			room = stopping ? 0 : window_room();

		if (node_send(n, room, stopping || (cfg.once && window_held() == 0)) &&
			node_sent_op(n) == OP_CLAIM)
			*rr = (n->num) % nnodes;
	}
}

/* a statement in flight, or acks or failures still to report, on an UP node */
static bool
nodes_busy(void)
{
	int			i;

	for (i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];

		if (n->state == NODE_UP && (node_op(n) != OP_NONE || n->nunacked > 0 || n->nfails > 0))
			return true;
	}
	return false;
}

int
main(int argc, char **argv)
{
	int			i,
				up = 0,
				rr = 0;
	double		next_poll;
	bool		any_failed = false,
				any_down = false,
				stopping = false;

	config_defaults();
	config_parse_args(argc, argv);
	config_finish();
	/* claimed events go to the delivery window */
	node_claims_sent_hook = window_claiming;
	node_events_claimed_hook = window_claimed;
	/* what the modules check of their settings (config.c knows no module) */
	if (cfg.metrics_listen != NULL)
		metrics_check_listen(cfg.metrics_listen);
	if (cfg.sink_on[SINK_WEBHOOK])
		whsig_init(cfg.webhook_secret, cfg.webhook_previous_secret);
	if (cfg.sink_on[SINK_SMS])
		sms_check_config();
	setup_signals();
	sinks_init();
	window_init();
	kinds_filter = claim_filter(true);
	channels_filter = claim_filter(false);
	/* payload fields only for the sinks with templates */
	node_claim_setup(kinds_filter, channels_filter, cfg.lease,
					 cfg.sink_on[SINK_SMTP] || cfg.sink_on[SINK_SMS]);

	nnodes = cfg.nnodes;
	metrics_start(nnodes);
	for (i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];

		n->num = i + 1;
		n->conninfo = cfg.conninfo[i];
		snprintf(n->label, sizeof(n->label), "not connected yet");
		node_connect_start(n);
	}
	settle_connections(true);
	for (i = 0; i < nnodes; i++)
		if (nodes[i].state == NODE_UP)
			up++;
	if (up == 0 && !stop_requested)
		fatal(EXIT_CONNECT, "no node reachable, giving up");
	if (cfg.verbose >= 0)
	{
		char		windows[200] = "";
		int			s;

		for (s = 0; s < SINK_NTYPES; s++)
			if (cfg.sink_on[s])
			{
				size_t		l = strlen(windows);

				snprintf(windows + l, sizeof(windows) - l, "%s%s %d", l ? ", " : "",
						 sink_name((SinkType) s), cfg.concurrency[s]);
				l = strlen(windows);
				if (cfg.rate[s] > 0)
					snprintf(windows + l, sizeof(windows) - l, " (at most %g/s)", cfg.rate[s]);
			}
		logmsg("started: %d of %d nodes up, kinds %s, channels %s, batch size %d, lease %g s, poll every %g s, in flight at once: %s",
			   up, nnodes, kinds_filter ? kinds_filter : "all",
			   channels_filter ? channels_filter : "all", cfg.batch_size, cfg.lease,
			   cfg.poll_interval, windows);
	}
	service_notify("READY=1");

	next_poll = now_seconds() + cfg.poll_interval;
	for (;;)
	{
		double		now = now_seconds(),
					until,
					wake;

		if (stop_requested && !stopping)
		{
			stopping = true;
			service_notify("STOPPING=1");
			logmsg("stopping on signal");
			window_leave_queued();
		}

		/* down nodes whose back-off is over, retry times that came */
		for (i = 0; i < nnodes; i++)
		{
			Node	   *n = &nodes[i];

			if (n->state == NODE_DOWN)
			{
				if (!cfg.once && !stopping && now >= n->retry_at)
					node_connect_start(n);
				continue;
			}
			if (n->state != NODE_UP)
				continue;
			if (!cfg.once && n->wake_at > 0 && now >= n->wake_at)
			{
				n->wake_at = 0;
				n->work = true;
			}
		}
		if (!cfg.once && now >= next_poll)
		{
			for (i = 0; i < nnodes; i++)
				if (nodes[i].state == NODE_UP)
					nodes[i].work = true;
			next_poll = now + cfg.poll_interval;
		}

		/*
		 * statements, before and after the deliveries: a claim that has
		 * just come back is followed by the next one at once, so that the
		 * database works on it while the deliveries of the last one start
		 * (starting a window's worth of HTTP requests takes as long as a
		 * claim); after them, the acks and failures they brought
		 */
		send_statements(stopping, &rr);
		/* deliveries: take in the ended ones, start what may start */
		window_run(stopping);
		/* stopping: what waits (a 429 sent it back, say) is left to its lease */
		if (stopping)
			window_leave_queued();
		send_statements(stopping, &rr);

		if (stopping && sink_running(SINK_NTYPES) == 0 && !nodes_busy())
			break;
		if (cfg.once && !stopping && window_held() == 0 && !nodes_busy())
		{
			bool		work = false;

			for (i = 0; i < nnodes; i++)
				if (nodes[i].state == NODE_UP && nodes[i].work)
					work = true;
			if (!work)
				break;
		}

		/* wait: for I/O, a signal, or the next timer */
		until = now + 60;
		if (!cfg.once && !stopping && next_poll < until)
			until = next_poll;
		for (i = 0; i < nnodes; i++)
		{
			Node	   *n = &nodes[i];

			if (n->state == NODE_DOWN && !cfg.once && !stopping && n->retry_at < until)
				until = n->retry_at;
			if (n->state == NODE_UP && n->wake_at > 0 && !cfg.once && n->wake_at < until)
				until = n->wake_at;
			if (n->state == NODE_UP && n->nstmts < (n->pipeline ? NODE_PIPELINE : 1) &&
				n->nunacked > 0 &&
				n->unacked_since + ACK_DELAY < until)
				until = n->unacked_since + ACK_DELAY;
		}
		wake = window_wake();
		if (wake > 0 && wake < until)
			until = wake;
		wait_for_work(until);
		check_connect_deadlines();
	}

	/* last chance for acks a lost connection swallowed */
	for (i = 0; i < nnodes; i++)
		if (nodes[i].nunacked > 0 && nodes[i].state == NODE_DOWN && !cfg.once)
			node_connect_start(&nodes[i]);
	settle_connections(false);
	for (;;)
	{
		bool		sent = false;

		for (i = 0; i < nnodes; i++)
			if (node_send(&nodes[i], 0, true) || node_op(&nodes[i]) != OP_NONE)
				sent = true;
		if (!sent)
			break;
		wait_for_work(now_seconds() + 1);
	}
	summary();
	for (i = 0; i < nnodes; i++)
	{
		if (nodes[i].st.failed > 0 || nodes[i].nunacked > 0)
			any_failed = true;
		if (nodes[i].state != NODE_UP)
			any_down = true;
		if (nodes[i].conn)
			PQfinish(nodes[i].conn);
	}
	metrics_stop();
	sinks_cleanup();
	if (cfg.once && any_down)
		return EXIT_CONNECT;
	if (cfg.once && any_failed)
		return EXIT_UNDELIVERED;
	return EXIT_OK;
}
