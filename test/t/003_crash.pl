
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

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;
use Time::HiRes qw(usleep time);

my $per_phase = 25_000;

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

# after the $event of $phase: the backlog drains, then the paid orders'
# timers go too
sub check_drained
{
	my ($node, $phase, $event) = @_;
	my $took = wait_for($node, 'postgres',
		q{SELECT count(*) FROM orders WHERE status = 'unpaid'},
		'0', 60);
	ok(defined $took, "$phase: the backlog drains after the $event");
	note sprintf("drained %.1fs after the $event", $took // -1);
	ok( defined wait_for(
			$node, 'postgres', 'SELECT count(*) FROM orderexp.timers', '0', 10),
		"$phase: and the paid orders' timers are cleaned up");
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

my $node = new_orderexp_node(
	'crash',
	'orderexp.naptime'    => '50',
	'orderexp.batch_size' => '500',
	'orderexp.enabled'    => 'off',
	'restart_after_crash' => 'on',
	'log_statement'       => 'none');

$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
create_orders($node, 'postgres', 'orders',
	q{interval '15 minutes', channels => '{email,sms}'});
$node->safe_psql(
	'postgres', q{
-- Makes every batch take at least 50 ms, so that the backlog takes a few
-- seconds to drain and the crashes below land in the middle of it.
CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_catalog.pg_sleep(0.05); RETURN NULL; END$$;
CREATE TRIGGER slow_down AFTER UPDATE ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION slow_down();
});

ok(defined wait_for($node, 'postgres', workers_in('postgres'), '1', 15),
	'the worker runs (paused)');

# --- phase 1: SIGKILL of the worker mid-backlog --------------------------------

add_backlog($node, 1);
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderexp.timers'),
	$per_phase, "$per_phase orders tracked");

set_guc($node, 'orderexp.enabled', 'on');
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
check_drained($node, 'phase 1', 'crash');
check_invariants($node, 'phase 1', $per_phase);
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type IN ('orderexp launcher', 'orderexp worker')}),
	'2', 'phase 1: launcher and one worker run again');

# --- phase 2: immediate shutdown mid-backlog -------------------------------------

set_guc($node, 'orderexp.enabled', 'off');
usleep(1_000_000);    # the worker reads the reload
my $first = $per_phase + 1;
add_backlog($node, $first);
set_guc($node, 'orderexp.enabled', 'on');
$pid = worker_mid_backlog($node, $first, 1000, 5000, 30);
ok(defined $pid, 'the worker is in the middle of the second backlog');
$closed_before = $node->safe_psql('postgres',
	"SELECT count(*) FROM orders WHERE id >= $first AND status = 'closed'");
note "immediate stop with $closed_before orders of phase 2 closed";
$node->stop('immediate');
$node->start;

check_drained($node, 'phase 2', 'restart');
check_invariants($node, 'phase 2', 2 * $per_phase);

$node->stop;
done_testing();
