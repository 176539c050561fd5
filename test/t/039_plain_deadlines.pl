
# Copyright (c) 2026, orderexp developers

# Plain deadlines (set_plain_deadlines) with the background worker:
#  - the worker closes due orders that have no timer row, in batches smaller
#    than the backlog, among them orders that share one created-at (a bulk
#    insert) and, in between, extended orders it must leave alone; each
#    closed once, none left behind, and the worker goes on; the orders were
#    placed before plain deadlines began (an import), and are plain too;
#  - it wakes for the next plain deadline: an order placed now under a
#    two-second policy is closed about two seconds later, without any timer
#    row being written for it;
#  - a timestamp (without time zone) created-at column works too;
#  - a dump restored into another database keeps the table's plain
#    deadlines and its triggers (one on DELETE, none on INSERT): the
#    restored orders are closed there by its worker, and orders placed
#    after the restore get no timer row either;
#  - run_due() runs only the batches that came back full in the rounds that
#    go on with a table: a backlog of plain orders, no timers' batch.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_orderexp_node('plain', 'orderexp.batch_size' => '7',
	'orderexp.databases' => 'postgres,restored');
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE TABLE orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now());
CREATE INDEX orders_due ON orders (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('orders', interval '1 hour', extend_by => '1 hour');
SELECT orderexp.set_plain_deadlines('orders');
});

# --- a backlog in batches of 7, ties and extended orders among it -----------

# Orders placed two hours ago, before plain deadlines began (an import), are
# plain and due: an unpaid order without a timer row has its plain deadline
# whenever it was created.  The worker is paused while they are placed.
set_guc($node, 'orderexp.enabled', 'off');
$node->safe_psql(
	'postgres', q{
INSERT INTO orders (id, created_at)
SELECT i, now() - interval '2 hours' + CASE WHEN i <= 40 THEN interval '0' ELSE i * interval '1 second' END
  FROM generate_series(1, 100) i;
SELECT count(*) FROM (SELECT orderexp.extend_order('orders', i, '3 hours')
						FROM generate_series(5, 95, 10) i) e;
UPDATE orders SET status = 'paid' WHERE id IN (3, 33, 63);
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderexp.timers'),
	'10', 'only the ten extended orders have timer rows');
set_guc($node, 'orderexp.enabled', 'on');
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orders WHERE status = 'unpaid'}, '10', 30),
	'the worker closes the backlog in batches, leaving the ten extended orders');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE status = 'closed'), count(*) FILTER (WHERE status = 'paid'),
       string_agg(id::text, ',' ORDER BY id) FILTER (WHERE status = 'unpaid')
  FROM orders}),
	'87|3|5,15,25,35,45,55,65,75,85,95',
	'87 closed, the paid and the extended ones untouched');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT order_key), count(*) FILTER (WHERE via = 'timeout')
  FROM orderexp.outbox WHERE kind = 'closed'}),
	'87|87|87',
	'one closed event, the record, per closed order');
is( $node->safe_psql(
		'postgres', q{SELECT sum(order_count) FROM orderexp.outcomes WHERE outcome = 'closed'}),
	'87', 'the closes counted in the outcomes');

# --- the worker wakes for the next plain deadline ----------------------------

$node->safe_psql('postgres',
	q{SELECT orderexp.set_close_policy('orders', interval '2 seconds', extend_by => '1 hour')});
$node->safe_psql('postgres', q{INSERT INTO orders (id) VALUES (200)});
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM orderexp.timers WHERE order_key = '200'}),
	'0', 'a new order has no timer row');
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT status FROM orders WHERE id = 200}, 'closed', 15),
	'and is closed at its deadline by the worker');
my $late = $node->safe_psql(
	'postgres', q{
SELECT extract(epoch FROM x.created_at - (x.payload ->> 'close_at')::timestamptz)
  FROM orderexp.outbox x WHERE x.order_key = '200' AND x.kind = 'closed'});
cmp_ok($late, '>=', 0, 'not before its deadline');
cmp_ok($late, '<', 2, "within two seconds of it ($late s)");

# --- a timestamp created-at -------------------------------------------------

$node->safe_psql(
	'postgres', q{
CREATE TABLE local_orders (
	id			text PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamp NOT NULL DEFAULT localtimestamp);
CREATE INDEX local_orders_due ON local_orders (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('local_orders', interval '2 seconds');
SELECT orderexp.set_plain_deadlines('local_orders');
INSERT INTO local_orders (id) SELECT 'L' || i FROM generate_series(1, 12) i;
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM orderexp.timers
		WHERE order_table = 'local_orders'::regclass}),
	'0', 'timestamp created-at: no timer rows');
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM local_orders WHERE status = 'closed'}, '12', 15),
	'timestamp created-at: all twelve closed at their deadlines');

# --- dump and restore ---------------------------------------------------------

set_guc($node, 'orderexp.enabled', 'off');
$node->safe_psql(
	'postgres', q{
SELECT orderexp.set_close_policy('orders', interval '3 seconds', extend_by => '1 hour');
INSERT INTO orders (id) SELECT i FROM generate_series(300, 304) i;
});
my $dump = $node->basedir . '/plain.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump of the database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok(
	[ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into another database');
is( $node->safe_psql(
		'restored', q{
SELECT plain_since IS NOT NULL,
       (SELECT count(*) FROM orderexp.timers WHERE order_key IN ('300','301','302','303','304'))
  FROM orderexp.policies WHERE order_table = 'orders'::regclass}),
	't|0', 'the restored policy has plain deadlines, the restored orders no timer rows');
is( $node->safe_psql(
		'restored', q{
SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
 WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal}),
	'orderexp_status,orderexp_timer_delete,orderexp_timer_truncate',
	'the restored table has the trigger on DELETE, none on INSERT (its created-at is NOT NULL)');
$node->safe_psql('restored', q{INSERT INTO orders (id) VALUES (400)});
is($node->safe_psql('restored', q{SELECT count(*) FROM orderexp.timers WHERE order_key = '400'}),
	'0', 'an order placed after the restore has no timer row');
set_guc($node, 'orderexp.enabled', 'on');
ok( defined wait_for(
		$node, 'restored',
		q{SELECT count(*) FROM orders WHERE id >= 300 AND status = 'closed'}, '6', 20),
	'the restored database\'s worker closes them at their plain deadlines');

# --- run_due() goes on with the batches that had more -------------------------

# A backlog of 20 due orders with plain deadlines, in batches of 7: rounds of
# the plain batch alone until one comes back short.  The timers' batches had
# nothing due and are not run again in those rounds (before, every round
# that went on with the table ran both, and prepared them in a new session).
set_guc($node, 'orderexp.enabled', 'off');
$node->safe_psql(
	'postgres', q{
CREATE TABLE backlog (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now());
CREATE INDEX backlog_due ON backlog (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('backlog', interval '1 hour');
SELECT orderexp.set_plain_deadlines('backlog');
INSERT INTO backlog (id, created_at) SELECT i, now() - interval '2 hours' FROM generate_series(1, 20) i;
});
my ($ret, $out, $err) = $node->psql('postgres',
	q{SET client_min_messages = debug1; SELECT closed FROM orderexp.run_due()});
is($out, '20', 'run_due() closes the backlog of 20');
my @plain = $err =~ /orderexp closed (\d+) of \d+ due orders with plain deadlines of table public\.backlog/g;
is(join(',', @plain[0 .. 2]), '7,7,6', 'in plain batches of 7, 7 and 6');
is(scalar(() = $err =~ /due orders of table public\.backlog/g),
	0, 'and no timers\' batch of the table in the rounds that went on with it')
  or diag($err);
set_guc($node, 'orderexp.enabled', 'on');

$node->stop;
done_testing();
