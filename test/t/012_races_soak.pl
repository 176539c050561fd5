
# Copyright (c) 2026, orderexp developers

# Races and a bounded soak.
#
# Race: a backlog of 20,000 due orders, closed by the worker and by four
# pgbench clients calling orderexp.run_due(500) at the same time: every order
# is closed exactly once (one 'closed' event per channel), by whichever got
# it first.
#
# Soak (OX_SOAK_SECONDS, default 30): pgbench clients insert orders (due
# after 2 s, a reminder 1 s before), pay, cancel (cancel_orders), extend
# (extend_order, and extend_order_by_token with fresh tokens) and call
# run_due, while the worker closes what comes due.  No client may fail
# (pgbench stops a client at its first error, a deadlock included).  Then,
# once everything due is closed, the invariants over every order and event
# hold (OrderexpTest::order_invariants): each closed order has exactly one
# 'closed' event per channel and was not closed before its deadline, no event
# without its change, every unpaid order is tracked.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $soak_seconds = $ENV{OX_SOAK_SECONDS} || 30;

my $node = new_orderexp_node(
	'soak',
	'orderexp.batch_size' => '200',
	'log_statement'       => 'none',
	'max_connections'     => '40');
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE SEQUENCE order_ids;
CREATE TABLE orders (
	id			integer PRIMARY KEY DEFAULT nextval('order_ids'),
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	amount		numeric NOT NULL DEFAULT 10);
SELECT orderexp.set_close_policy('orders', interval '2 seconds',
	remind_before => interval '1 second', extend_by => interval '1 second',
	max_extensions => 1, channels => '{email,sms}', payload_columns => '{amount}');
});

# run pgbench with the given scripts (name => [weight, sql]); its output
sub pgbench
{
	my ($name, $clients, $seconds, %scripts) = @_;
	my @args = ('pgbench', '-n', '-c', $clients, '-j', 2, '-T', $seconds);
	for my $s (sort keys %scripts)
	{
		my $file = $node->basedir . "/$name-$s.sql";
		open my $fh, '>', $file or die "$file: $!";
		print $fh $scripts{$s}[1];
		close $fh;
		push @args, '-f', "$file\@$scripts{$s}[0]";
	}
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ @args, '-d', $node->connstr('postgres') ],
		'>', \$stdout, '2>', \$stderr);
	ok($ok, "$name: pgbench exits successfully") or diag $stderr;
	unlike($stdout . $stderr, qr/aborted|ERROR/, "$name: no client failed") or diag $stderr;
	my ($tx) = $stdout =~ /number of transactions actually processed: (\d+)/;
	note "$name: $clients clients, $seconds s, " . ($tx // '?') . ' transactions';
	return $tx;
}

# --- race: the worker and four run_due() callers on one backlog --------------------

set_guc($node, 'orderexp.enabled', 'off');
$node->safe_psql('postgres',
	q{INSERT INTO orders (created_at) SELECT now() - interval '1 hour' FROM generate_series(1, 20000)});
set_guc($node, 'orderexp.enabled', 'on');
$node->safe_psql('postgres', 'CREATE TABLE run_due_log (closed bigint)');
pgbench('race', 4, 5,
	run_due => [ 1, "INSERT INTO run_due_log SELECT closed FROM orderexp.run_due(500);\n" ]);
ok( defined wait_for(
		$node, 'postgres', q{SELECT count(*) FROM orders WHERE status = 'unpaid'},
		'0', 60),
	'race: the backlog is closed');
is(order_invariants($node, 'postgres', 'orders', 2),
	$NO_VIOLATIONS, 'race: every order closed exactly once, with its events');
is($node->safe_psql('postgres', q{SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed'}),
	'40000', 'race: 40,000 closed events for 20,000 orders on two channels');
my $by_run_due = $node->safe_psql('postgres', 'SELECT sum(closed) FROM run_due_log');
cmp_ok($by_run_due, '>', 0, "race: the run_due() callers closed $by_run_due of them, the worker the rest");

# --- soak -------------------------------------------------------------------------

my %soak = (
	insert => [ 10, "INSERT INTO orders (amount) SELECT random() * 100 FROM generate_series(1, 3);\n" ],
	pay => [
		4, q{\set r random(0, 40)
UPDATE orders SET status = 'paid'
 WHERE id = (SELECT max(id) FROM orders) - :r AND status = 'unpaid';
}
	],
	cancel => [
		2, q{\set r random(0, 40)
SELECT orderexp.cancel_orders('orders', ARRAY[(SELECT max(id) FROM orders) - :r,
											 (SELECT max(id) FROM orders) - :r - 1], 'soak');
}
	],
	extend => [
		2, q{\set r random(0, 40)
DO $$
BEGIN
	PERFORM orderexp.extend_order('orders', (SELECT max(id) FROM orders) - :r);
EXCEPTION WHEN object_not_in_prerequisite_state OR no_data_found THEN
	NULL;	-- paid, closed or cancelled meanwhile
END $$;
}
	],
	token => [
		1, q{\set r random(0, 40)
DO $$
BEGIN
	PERFORM orderexp.extend_order_by_token(
		orderexp.extension_token('orders', (SELECT max(id) FROM orders) - :r));
EXCEPTION WHEN object_not_in_prerequisite_state OR no_data_found THEN
	NULL;	-- not unpaid, no extension left, or the deadline passed
END $$;
}
	],
	run_due => [ 1, "SELECT * FROM orderexp.run_due(100);\n" ]);
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM orders');
pgbench('soak', 6, $soak_seconds, %soak);
my $inserted = $node->safe_psql('postgres', 'SELECT count(*) FROM orders') - $before;
cmp_ok($inserted, '>', 100, "soak: $inserted orders placed");

ok( defined wait_for(
		$node, 'postgres', q{SELECT count(*) FROM orders WHERE status = 'unpaid'},
		'0', 90),
	'soak: after the load, every unpaid order comes due and is closed');
is(order_invariants($node, 'postgres', 'orders', 2),
	$NO_VIOLATIONS, 'soak: the invariants hold over every order and event');
is( $node->safe_psql(
		'postgres', q{
WITH ext AS (
	SELECT x.order_key, count(*) / 2 AS n FROM orderexp.outbox x
	 WHERE x.kind = 'extended' GROUP BY x.order_key)
SELECT count(*) FROM orders o
  JOIN orderexp.outbox e ON e.order_key = o.id::text AND e.kind = 'closed'
  LEFT JOIN ext ON ext.order_key = e.order_key
 WHERE (e.payload->>'close_at')::timestamptz
	   <> o.created_at + interval '2 seconds' + interval '1 second' * coalesce(ext.n, 0)}),
	'0', 'soak: each order closed at its deadline plus one second per extension');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (
	SELECT order_key FROM orderexp.outbox WHERE kind = 'extended'
	   AND payload->>'via' = 'token'
	 GROUP BY order_key HAVING count(*) > 2) x}),
	'0', 'soak: no order was extended by token more often than max_extensions allows');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderexp.timers'),
	'0', 'soak: no timers are left');

my $figures = $node->safe_psql(
	'postgres', q{
SELECT (SELECT count(*) FROM orders) || ' orders: ' ||
	   (SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
		  FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) s) || '; ' ||
	   (SELECT count(*) FROM orderexp.outbox) || ' events: ' ||
	   (SELECT string_agg(kind || ' ' || n, ', ' ORDER BY kind)
		  FROM (SELECT kind, count(*) AS n FROM orderexp.outbox GROUP BY kind) k)});
note "checked $figures";
cmp_ok(
	$node->safe_psql('postgres',
		q{SELECT count(DISTINCT kind) FROM orderexp.outbox}),
	'>=', 4, 'soak: it exercised closes, cancels, extensions and reminders');

unlike(
	slurp_file($node->logfile),
	qr/(PANIC|TRAP|deadlock detected|server process .* was terminated)/,
	'no crash or deadlock in the log');
$node->stop;
done_testing();
