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
 * last claim was a full batch.  Rounds go over the nodes with work, one
 * batch each, so that a busy node cannot starve the others.
 *
 * A batch on a node (node.c): orderexp.claim() leases up to --batch-size
 * events, each goes to the sink its route names, the delivered ones are
 * acknowledged by one orderexp.ack() and the others reported with
 * orderexp.fail().  Delivery is at least once: a relay that dies between a
 * delivery and the ack leaves the row to its lease, and it is delivered
 * again after the lease.  A node whose connection drops is reconnected
 * with a doubling back-off (node.c).
 *
 * SIGTERM / SIGINT: the event being delivered is finished, the batch's
 * delivered events acknowledged and its failures reported, the rest left
 * to their lease; a summary goes to stderr and the exit status is 0.
 *
 * This file holds the signals, the main loop that chooses the nodes with
 * work and waits for more, and the summary.
 *
 * The main loop waits in select() on the nodes' sockets and a self-pipe the
 * signal handler writes to, so a signal ends the wait at once.
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
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "node.h"
#include "sink.h"

static volatile sig_atomic_t stop_requested = 0;
static Node nodes[MAX_NODES];
static int	nnodes;
static int	signal_pipe[2] = {-1, -1};
static char *kinds_filter;
static char *channels_filter;

static void handle_stop(int signo);
static void setup_signals(void);
static void wait_for_work(double until);
static void check_connect_deadlines(void);
static void settle_connections(bool stop_on_signal);
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
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
}

/* ---------------------------------------------------------------------
 * main loop
 * ---------------------------------------------------------------------
 */

/*
 * Sleep until UNTIL, a signal, a NOTIFY or a dropped connection on an UP
 * node, or progress of a connection attempt; then handle what came.
 */
static void
wait_for_work(double until)
{
	fd_set		rfds,
				wfds;
	int			maxfd = signal_pipe[0],
				i;
	double		left;
	struct timeval tv;
	char		buf[64];

	FD_ZERO(&rfds);
	FD_ZERO(&wfds);
	FD_SET(signal_pipe[0], &rfds);
	for (i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];
		int			fd;

		if (n->state == NODE_DOWN || (fd = PQsocket(n->conn)) < 0)
			continue;
		if (n->state == NODE_CONNECTING)
		{
			if (n->poll == PGRES_POLLING_READING)
				FD_SET(fd, &rfds);
			else
				FD_SET(fd, &wfds);
			if (n->connect_deadline < until)
				until = n->connect_deadline;
		}
		else
			FD_SET(fd, &rfds);
		if (fd > maxfd)
			maxfd = fd;
	}
	left = until - now_seconds();
	if (left < 0)
		left = 0;
	tv.tv_sec = (time_t) left;
	tv.tv_usec = (suseconds_t) ((left - (double) tv.tv_sec) * 1e6);
	if (select(maxfd + 1, &rfds, &wfds, NULL, &tv) < 0)
	{
		if (errno != EINTR)
			fatal(EXIT_INTERNAL, "select() failed: %s", strerror(errno));
		return;
	}
	while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
		;
	for (i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];
		int			fd;

		if (n->state == NODE_DOWN || (fd = PQsocket(n->conn)) < 0)
			continue;
		if (n->state == NODE_CONNECTING)
		{
			if (FD_ISSET(fd, &rfds) || FD_ISSET(fd, &wfds))
				node_connect_step(n);
		}
		else if (FD_ISSET(fd, &rfds))
			drain_socket(n);
	}
}

/* give up connection attempts that ran past their connect_timeout */
static void
check_connect_deadlines(void)
{
	double		now = now_seconds();
	int			i;

	for (i = 0; i < nnodes; i++)
		if (nodes[i].state == NODE_CONNECTING && now >= nodes[i].connect_deadline)
			node_down(&nodes[i], "could not connect: timed out (connect_timeout)");
}

/* drive the connection attempts in progress to success or failure */
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
			if (nodes[i].state == NODE_CONNECTING)
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

int
main(int argc, char **argv)
{
	int			i,
				up = 0;
	double		next_poll;
	bool		any_failed = false,
				any_down = false;

	config_defaults();
	config_parse_args(argc, argv);
	config_finish();
	setup_signals();
	sinks_init();
	kinds_filter = claim_filter(true);
	channels_filter = claim_filter(false);
	node_claim_setup(kinds_filter, channels_filter, cfg.lease);

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
		logmsg("started: %d of %d nodes up, kinds %s, channels %s, batch size %d, lease %g s, poll every %g s",
			   up, nnodes, kinds_filter ? kinds_filter : "all",
			   channels_filter ? channels_filter : "all", cfg.batch_size, cfg.lease,
			   cfg.poll_interval);
	service_notify("READY=1");

	next_poll = now_seconds() + cfg.poll_interval;
	while (!stop_requested)
	{
		double		now = now_seconds(),
					until;
		bool		more = false;

		/* down nodes whose back-off is over, retry times that came */
		for (i = 0; i < nnodes; i++)
		{
			Node	   *n = &nodes[i];

			if (n->state == NODE_DOWN)
			{
				if (!cfg.once && now >= n->retry_at)
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

		/* one round: a batch from every node with work */
		for (i = 0; i < nnodes && !stop_requested; i++)
		{
			Node	   *n = &nodes[i];
			int			got;

			if (n->state != NODE_UP || !n->work)
				continue;
			got = node_batch(n, &stop_requested);
			if (got < cfg.batch_size && n->state == NODE_UP)
				n->work = false;
			if (n->state == NODE_UP && n->work)
				more = true;
		}
		if (stop_requested)
			break;
		if (more)
		{
			/* take in NOTIFYs and signals, but do not wait */
			wait_for_work(now_seconds());
			continue;
		}
		if (cfg.once)
			break;

		/* nothing to do: sleep until a NOTIFY, a poll, a retry or a signal */
		until = next_poll;
		for (i = 0; i < nnodes; i++)
		{
			if (nodes[i].state == NODE_DOWN && nodes[i].retry_at < until)
				until = nodes[i].retry_at;
			if (nodes[i].state == NODE_UP && nodes[i].wake_at > 0 && nodes[i].wake_at < until)
				until = nodes[i].wake_at;
		}
		wait_for_work(until);
		check_connect_deadlines();
	}

	if (stop_requested)
	{
		service_notify("STOPPING=1");
		logmsg("stopping on signal");
	}
	/* last chance for acks a lost connection swallowed */
	for (i = 0; i < nnodes; i++)
		if (nodes[i].nunacked > 0 && nodes[i].state == NODE_DOWN && !cfg.once)
			node_connect_start(&nodes[i]);
	settle_connections(false);
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
