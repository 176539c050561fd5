
# Copyright (c) 2026, orderexp developers

# Crashes in the middle of a backlog.  25,000 expired orders per phase,
# orderexp.batch_size = 500, so the worker drains them in 50 transactions.
# Phase 1 kills the worker with SIGKILL mid-backlog (the postmaster
# reinitializes, the launcher starts a new worker); phase 2 stops the whole
# cluster in immediate mode mid-backlog and starts it again.  After each
# drain: no order is left unpaid, every closed order has exactly one 'closed'
# event per channel, no order that is not closed has one, paid orders stay
# paid, and no timers are left.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $per_phase = 25_000;

# Poll $query until it returns $expected, for at most $timeout seconds;
# errors (the server restarting) count as "not yet".  Returns the seconds
# it took, or undef on timeout.
sub wait_for
{
	my ($node, $query, $expected, $timeout) = @_;
	my $start = time();
	my $last  = '';
	while (time() - $start < $timeout)
	{
		my ($ret, $stdout, $stderr) =
		  $node->psql('postgres', $query, on_error_stop => 1);
		$last = $stdout;
		return time() - $start if $ret == 0 && $stdout eq $expected;
		usleep(50_000);
	}
	diag "timed out after ${timeout}s waiting for <$expected> from: $query\n"
	  . "last output: <$last>";
	return undef;
}

# Poll until the worker is inside a transaction with at least $closed orders
# of ids from $first on closed and more than $left still unpaid; its pid.
sub worker_mid_backlog
{
	my ($node, $first, $closed, $left, $timeout) = @_;
	my $start = time();
	while (time() - $start < $timeout)
	{
		my $pid = $node->safe_psql(
			'postgres', qq{
SELECT w.pid FROM pg_stat_activity w
 WHERE w.backend_type = 'orderexp worker' AND w.xact_start IS NOT NULL
   AND (SELECT count(*) FROM orders WHERE id >= $first AND status = 'closed') >= $closed
   AND (SELECT count(*) FROM orders WHERE id >= $first AND status = 'unpaid') > $left});
		return $pid if $pid =~ /^\d+$/;
		usleep(20_000);
	}
	return undef;
}

sub set_enabled
{
	my ($node, $value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET orderexp.enabled = $value; SELECT pg_reload_conf();");
}

# a backlog of expired orders with ids from $first on; every tenth is paid
sub add_backlog
{
	my ($node, $first) = @_;
	my $last = $first + $per_phase - 1;
	$node->safe_psql(
		'postgres', qq{
INSERT INTO orders (id, created_at)
SELECT i, now() - interval '1 hour' - i * interval '10 milliseconds'
  FROM generate_series($first, $last) i;
UPDATE orders SET status = 'paid' WHERE id BETWEEN $first AND $last AND id % 10 = 0;
});
}

sub check_invariants
{
	my ($node, $phase, $total) = @_;
	my $paid = $total / 10;

	is( $node->safe_psql(
			'postgres',
			q{SELECT status, count(*) FROM orders GROUP BY status ORDER BY status}),
		"closed|" . ($total - $paid) . "\npaid|$paid",
		"$phase: every unpaid order is closed, every paid one stays paid");

	is( $node->safe_psql(
			'postgres', q{
WITH ev AS (
	SELECT order_key, count(*) AS n, count(DISTINCT channel) AS channels
	  FROM orderexp.outbox WHERE kind = 'closed' GROUP BY order_key)
SELECT count(*) FILTER (WHERE o.status = 'closed'
                          AND (ev.n IS DISTINCT FROM 2 OR ev.channels IS DISTINCT FROM 2)),
       count(*) FILTER (WHERE o.status <> 'closed' AND ev.n IS NOT NULL),
       (SELECT count(*) FROM ev WHERE NOT EXISTS
           (SELECT 1 FROM orders x WHERE x.id::text = ev.order_key))
  FROM orders o LEFT JOIN ev ON ev.order_key = o.id::text}),
		'0|0|0',
		"$phase: exactly one closed event per channel per closed order, none for any other order"
	);

	is( $node->safe_psql(
			'postgres',
			q{SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed'}),
		2 * ($total - $paid),
		"$phase: closed events add up to two per closed order");

	is( $node->safe_psql(
			'postgres', q{
SELECT (SELECT count(*) FROM orderexp.timers t JOIN orders o ON o.id::text = t.order_key
         WHERE o.status = 'closed'),
       (SELECT count(*) FROM orderexp.timers)}),
		'0|0',
		"$phase: no timers left, for closed orders or any other");

	is( $node->safe_psql(
			'postgres',
			q{SELECT count(*) FROM orderexp.outbox WHERE kind <> 'closed'}),
		'0', "$phase: no other events");
}

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orderexp'
orderexp.databases = 'postgres'
orderexp.naptime = 50
orderexp.batch_size = 500
orderexp.enabled = off
restart_after_crash = on
log_statement = none
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE TABLE orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('orders', interval '15 minutes',
	channels => '{email,sms}');

-- Makes every batch take at least 50 ms, so that the backlog takes a few
-- seconds to drain and the crashes below land in the middle of it.
CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_catalog.pg_sleep(0.05); RETURN NULL; END$$;
CREATE TRIGGER slow_down AFTER UPDATE ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION slow_down();
});

ok( defined wait_for(
		$node,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orderexp worker'},
		'1', 15),
	'the worker runs (paused)');

# --- phase 1: SIGKILL of the worker mid-backlog --------------------------------

add_backlog($node, 1);
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderexp.timers'),
	$per_phase, "$per_phase orders tracked");

set_enabled($node, 'on');
my $pid = worker_mid_backlog($node, 1, 1000, 5000, 30);
ok(defined $pid, 'the worker is in the middle of the backlog');
my $closed_before = $node->safe_psql('postgres',
	q{SELECT count(*) FROM orders WHERE status = 'closed'});
note "killing worker $pid with $closed_before orders closed";
my $log_offset = -s $node->logfile;
kill 'KILL', $pid if defined $pid;

ok( defined $node->wait_for_log(
		qr/all server processes terminated; reinitializing/, $log_offset),
	'the postmaster reinitializes after the SIGKILL');
my $took = wait_for($node,
	q{SELECT count(*) FROM orders WHERE status = 'unpaid'},
	'0', 60);
ok(defined $took, 'phase 1: the backlog drains after the crash');
note sprintf('drained %.1fs after the kill', $took // -1);
ok( defined wait_for(
		$node, 'SELECT count(*) FROM orderexp.timers', '0', 10),
	'phase 1: and the paid orders\' timers are cleaned up');
check_invariants($node, 'phase 1', $per_phase);
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type IN ('orderexp launcher', 'orderexp worker')}),
	'2', 'phase 1: launcher and one worker run again');

# --- phase 2: immediate shutdown mid-backlog -------------------------------------

set_enabled($node, 'off');
usleep(1_000_000);    # the worker reads the reload
my $first = $per_phase + 1;
add_backlog($node, $first);
set_enabled($node, 'on');
$pid = worker_mid_backlog($node, $first, 1000, 5000, 30);
ok(defined $pid, 'the worker is in the middle of the second backlog');
$closed_before = $node->safe_psql('postgres',
	"SELECT count(*) FROM orders WHERE id >= $first AND status = 'closed'");
note "immediate stop with $closed_before orders of phase 2 closed";
$node->stop('immediate');
$node->start;

$took = wait_for($node,
	q{SELECT count(*) FROM orders WHERE status = 'unpaid'},
	'0', 60);
ok(defined $took, 'phase 2: the backlog drains after the restart');
note sprintf('drained %.1fs after the restart', $took // -1);
ok( defined wait_for(
		$node, 'SELECT count(*) FROM orderexp.timers', '0', 10),
	'phase 2: and the paid orders\' timers are cleaned up');
check_invariants($node, 'phase 2', 2 * $per_phase);

$node->stop;
done_testing();
