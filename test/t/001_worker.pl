
# Copyright (c) 2026, orderexp developers

# The background worker on its own: it closes expired orders without any
# run_due() call, leaves paid ones alone, is late by well under a second,
# shows up in pg_stat_activity, obeys orderexp.enabled and orderexp.naptime
# on reload, and is restarted by the launcher when terminated.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;
use Time::HiRes qw(usleep);

my $worker_q = q{SELECT pid FROM pg_stat_activity
  WHERE backend_type = 'orderexp worker' AND application_name = 'orderexp worker'
    AND datname = 'postgres'};

my $node = new_orderexp_node('worker');

# --- launcher and worker in pg_stat_activity --------------------------------

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type = 'orderexp launcher'
		     AND application_name = 'orderexp launcher' AND datname IS NULL},
		'1', 10),
	'the launcher runs, connected to no database');
my $launcher_pid = launcher_pid($node);

$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
create_orders($node, 'postgres', 'orders',
	q{interval '2 seconds', payload_columns => '{amount}', channels => '{email,sms}'},
	amount => 1);

ok(defined wait_for($node, 'postgres', "SELECT count(*) FROM ($worker_q) w", '1', 10),
	'a worker runs in postgres once the extension is installed, named "orderexp worker"');
my $worker_pid = $node->safe_psql('postgres', $worker_q);
like($worker_pid, qr/^\d+$/, 'exactly one worker pid');

# --- expired orders are closed by the worker alone --------------------------

# deadlines 1 to 2 seconds out; the even ones get paid before the deadline
$node->safe_psql(
	'postgres', q{
INSERT INTO orders (id, created_at)
SELECT i, now() - (i % 3) * interval '400 milliseconds'
  FROM generate_series(1, 20) i;
});
$node->safe_psql('postgres',
	q{UPDATE orders SET status = 'paid' WHERE id % 2 = 0 AND status = 'unpaid'});
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM orders WHERE status = 'paid'}),
	'10',
	'10 orders paid before their deadline');

ok( defined wait_for(
		$node, 'postgres', q{SELECT count(*) FROM orders WHERE status = 'unpaid'},
		'0', 10),
	'the worker closes the unpaid orders without any run_due() call');

is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(DISTINCT status, ',' ORDER BY status)
		    FROM orders WHERE id % 2 = 0}),
	'paid',
	'paid orders stay paid');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orders WHERE status = 'closed' AND id % 2 = 1}),
	'10',
	'every unpaid order is closed');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orderexp.outbox e JOIN orders o ON o.id::text = e.order_key
		   WHERE o.status = 'paid'}),
	'0',
	'no event at all for a paid order');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orders o
		   WHERE o.status = 'closed'
		     AND (SELECT array_agg(e.channel ORDER BY e.channel) FROM orderexp.outbox e
		           WHERE e.kind = 'closed' AND e.order_key = o.id::text)
		         IS DISTINCT FROM '{email,sms}'}),
	'0',
	'one closed event per channel for every closed order');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orderexp.outbox
		   WHERE kind = 'closed' AND payload->'order'->>'amount' = '10'
		     AND payload->>'reason' = 'timeout'}),
	'20',
	'closed events carry the payload columns and the reason');

# lateness: the event is written in the closing transaction, whose start
# (outbox.created_at) is never before the deadline and well within a second
my $lateness = $node->safe_psql(
	'postgres', q{
SELECT min(extract(epoch FROM created_at - (payload->>'close_at')::timestamptz)),
       max(extract(epoch FROM created_at - (payload->>'close_at')::timestamptz))
  FROM orderexp.outbox WHERE kind = 'closed'});
my ($min_late, $max_late) = split /\|/, $lateness;
note "lateness: min ${min_late}s, max ${max_late}s";
cmp_ok($min_late, '>=', 0, 'no order is closed before its deadline');
cmp_ok($max_late, '<', 1, 'every order is closed within a second of its deadline');
is( $node->safe_psql('postgres', 'SELECT count(*) FROM orderexp.timers'),
	'0', 'no timers are left, not even for the paid orders');

# --- locked orders do not hold up the others ---------------------------------

# With batch_size = 2 and the two earliest due orders locked by a payment in
# progress, the worker must skip them and close the later due orders, not
# take the same two busy orders over and over.
set_guc($node, 'orderexp.batch_size', '2');
$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) VALUES (201, now()), (202, now())});
my $payment = $node->background_psql('postgres');
$payment->query_safe(
	q{BEGIN; UPDATE orders SET status = 'paid' WHERE id IN (201, 202) AND status = 'unpaid'});
$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) SELECT i, now() FROM generate_series(203, 207) i});
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orders WHERE id BETWEEN 203 AND 207 AND status = 'closed'},
		'5', 8),
	'two locked orders at the head of the queue do not keep later due orders open (batch_size = 2)');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM orders WHERE id IN (201, 202) AND status = 'unpaid'}),
	'2', 'the locked orders are left to the payment');
$payment->query_safe('COMMIT');
$payment->quit;
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orders WHERE id BETWEEN 201 AND 207 AND status = 'closed'},
		'5', 8),
	'all five later orders closed once the payment committed');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM orders
		   WHERE id BETWEEN 201 AND 207 AND status = 'paid'}),
	'201,202', 'the paid ones stay paid');
ok( defined wait_for(
		$node, 'postgres', q{SELECT count(*) FROM orderexp.timers}, '0', 8),
	'and their timers are cleaned up');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM orderexp.outbox WHERE order_key IN ('201', '202')}),
	'0', 'no event for them');
$node->safe_psql('postgres',
	'ALTER SYSTEM RESET orderexp.batch_size; SELECT pg_reload_conf()');

# --- orderexp.enabled = off pauses the worker, on resumes it -----------------

set_guc($node, 'orderexp.enabled', 'off');
# the reload sets the worker's latch; give it a moment to read the new value
usleep(1_000_000);
$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) VALUES (100, now() - interval '1 hour')});
usleep(3_000_000);
is( $node->safe_psql('postgres', q{SELECT status FROM orders WHERE id = 100}),
	'unpaid', 'with orderexp.enabled = off an expired order stays unpaid');
is($node->safe_psql('postgres', "SELECT count(*) FROM ($worker_q) w"),
	'1', 'the paused worker keeps running');

set_guc($node, 'orderexp.enabled', 'on');
my $took = wait_for($node, 'postgres', q{SELECT status FROM orders WHERE id = 100},
	'closed', 10);
ok(defined $took, 'with orderexp.enabled = on again the order is closed');
cmp_ok($took // 99, '<', 3, 'the worker resumes within a few seconds');

# --- orderexp.naptime is reloaded ---------------------------------------------

# With no deadline pending the worker sleeps a whole naptime.  Nothing but
# its timer, a reload or a signal wakes it, so a timer that becomes due
# behind its back (here: moved by hand) waits for the naptime.
set_guc($node, 'orderexp.naptime', '1h');
usleep(1_000_000);    # the worker reads it and goes to sleep for an hour
$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) VALUES (101, now())});
$node->safe_psql('postgres',
	q{UPDATE orderexp.timers SET close_at = now() - interval '1 second'
	   WHERE order_key = '101'});
usleep(3_000_000);
is( $node->safe_psql('postgres', q{SELECT status FROM orders WHERE id = 101}),
	'unpaid', 'after a reload to naptime = 1h the worker sleeps');

set_guc($node, 'orderexp.naptime', '100ms');
$took = wait_for($node, 'postgres', q{SELECT status FROM orders WHERE id = 101},
	'closed', 10);
ok(defined $took,
	'reloading naptime = 100ms wakes the worker and the due order is closed');
cmp_ok($took // 99, '<', 2, 'promptly');

# --- pg_terminate_backend: the launcher starts a new worker -------------------

$worker_pid = $node->safe_psql('postgres', $worker_q);
is( $node->safe_psql('postgres', "SELECT pg_terminate_backend($worker_pid)"),
	't', 'worker terminated');
$took = wait_for(
	$node, 'postgres',
	"SELECT count(*) FROM ($worker_q) w WHERE pid <> $worker_pid",
	'1', 15);
ok(defined $took, 'the launcher starts a new worker');
cmp_ok($took // 99, '<', 5, 'within a few seconds');
note sprintf('worker back after %.3fs', $took // -1);
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $worker_pid"),
	'0', 'the terminated worker is gone');

is(launcher_pid($node), $launcher_pid,
	'the launcher itself was not restarted (no crash-restart of the cluster)');

$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) VALUES (102, now() - interval '1 hour')});
ok( defined wait_for(
		$node, 'postgres', q{SELECT status FROM orders WHERE id = 102},
		'closed', 10),
	'the new worker closes expired orders');
is($node->safe_psql('postgres', "SELECT count(*) FROM ($worker_q) w"),
	'1', 'still exactly one worker in the database');

# --- the log -------------------------------------------------------------------

is( log_lines(
		$node, 0,
		sub {
			/\b(ERROR|FATAL|PANIC):/ && /orderexp/
			  && !/terminating background worker .* due to administrator command/;
		}),
	'', 'no orderexp errors in the log');
is( log_lines(
		$node, 0,
		sub {
			/terminated by signal|exited with exit code [^01]|terminating any other active server processes/;
		}),
	'', 'no process crashed');

$node->stop;
done_testing();
