
# Copyright (c) 2026, orderexp developers

# Reminders with the background worker, in real time: a policy's
# remind_before makes the worker write one 'reminder' event per channel
# when an order's reminder time comes (not before it, and within a second),
# exactly once per deadline, for the unpaid orders only; an extension, by
# the token of the reminder or by an operator, re-arms it and a second
# reminder comes for the new deadline; an order paid between its reminder
# and its deadline is not closed; an unpaid one is closed after its
# reminder; a reminder time already past at insert is reminded at once; a
# policy without remind_before sends none.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;
use Time::HiRes qw(usleep time);

my $node = new_orderexp_node('reminders');

# Deadlines 6 seconds after the order, reminders 3 seconds before them;
# one customer extension of 4 seconds.  A second table without reminders.
$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
create_orders(
	$node, 'postgres', 'orders', q{interval '6 seconds',
	remind_before => interval '3 seconds', extend_by => interval '4 seconds',
	max_extensions => 1, payload_columns => '{amount}', channels => '{email,sms}'},
	amount => 1);
create_orders($node, 'postgres', 'plain',
	q{interval '3 seconds', channels => '{email,sms}'});

ok(defined wait_for($node, 'postgres', workers_in('postgres'), '1', 15),
	'the worker runs');

# 1 untouched; 2 paid between its reminder and its deadline; 3 paid and 4
# cancelled before their reminder; 5 extended with the token of its reminder;
# 6 extended by an operator after its reminder; 7 inserted with its reminder
# time already past (deadline in 2 seconds).
$node->safe_psql(
	'postgres', q{
INSERT INTO orders (id, created_at)
SELECT i, CASE WHEN i = 7 THEN now() - interval '4 seconds' ELSE now() END
  FROM generate_series(1, 7) i;
INSERT INTO plain (id) VALUES (1), (2);
UPDATE orders SET status = 'paid' WHERE id = 3 AND status = 'unpaid';
SELECT orderexp.cancel_order('orders', 4);
});
my $inserted = time();

# --- the first reminders ----------------------------------------------------------

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT string_agg(DISTINCT order_key, ',' ORDER BY order_key) FROM orderexp.outbox
		   WHERE kind = 'reminder' AND order_key = '7'},
		'7', 3),
	'a reminder time already past at insert: reminded at once');
cmp_ok(time() - $inserted, '<', 2.5, 'long before the reminders of the others are due');

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT string_agg(order_key || ':' || channel, ',' ORDER BY order_key, channel)
		    FROM orderexp.outbox WHERE kind = 'reminder' AND order_table = 'orders'::regclass},
		'1:email,1:sms,2:email,2:sms,5:email,5:sms,6:email,6:sms,7:email,7:sms', 8),
	'one reminder per channel for each unpaid order, none for the paid and the cancelled one');

# act on them before their deadline (3 seconds after the reminder)
$node->safe_psql(
	'postgres', q{
UPDATE orders SET status = 'paid' WHERE id = 2 AND status = 'unpaid';
SELECT orderexp.extend_order_by_token(
	(SELECT payload->>'extension_token' FROM orderexp.outbox
	  WHERE kind = 'reminder' AND order_key = '5' AND channel = 'email'));
SELECT orderexp.extend_order('orders', 6);
});
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orderexp.outbox
		   WHERE kind = 'closed' AND order_table = 'orders'::regclass
		     AND order_key IN ('1', '2', '5', '6')}),
	'0', 'no order was closed before we acted on the reminders');

# --- closes, and the second reminders ------------------------------------------------

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM orders},
		'1:closed,2:paid,3:paid,4:cancelled,5:closed,6:closed,7:closed', 15),
	'the unpaid orders are closed, the extended ones at their new deadline');
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM plain},
		'1:closed,2:closed', 5),
	'the orders of the table without reminders are closed');
# anything late would come within a naptime or two
usleep(500_000);

is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(order_key || ':' || channel || ':' || n, ',' ORDER BY order_key, channel)
		    FROM (SELECT order_key, channel, count(*) AS n FROM orderexp.outbox
		           WHERE kind = 'reminder' AND order_table = 'orders'::regclass
		           GROUP BY 1, 2) r}),
	'1:email:1,1:sms:1,2:email:1,2:sms:1,5:email:2,5:sms:2,6:email:2,6:sms:2,7:email:1,7:sms:1',
	'exactly one reminder per deadline and channel: two for the extended orders');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orderexp.outbox WHERE order_table = 'plain'::regclass AND kind = 'reminder'}),
	'0', 'no reminder without remind_before');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) FROM orderexp.outbox
		   WHERE order_key IN ('3', '4') AND order_table = 'orders'::regclass}),
	'cancelled', 'nothing but the cancel for the orders paid or cancelled before their reminder');

# the second reminder is for the new deadline, the one the extension wrote
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(r.order_key || ':' || r.channel, ',' ORDER BY r.order_key, r.channel)
		    FROM orderexp.outbox r
		    JOIN orderexp.outbox x ON x.kind = 'extended' AND x.order_key = r.order_key
		                          AND x.channel = r.channel AND x.order_table = r.order_table
		   WHERE r.kind = 'reminder' AND r.id > x.id
		     AND r.payload->>'close_at' = x.payload->>'close_at'
		     AND (r.payload->>'remind_at')::timestamptz
		         = (x.payload->>'close_at')::timestamptz - interval '3 seconds'}),
	'5:email,5:sms,6:email,6:sms',
	'after an extension, a second reminder for the new deadline');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(order_key || ':' || (payload->>'extensions_left')
		                    || ':' || (payload->>'extension_token' IS NOT NULL), ','
		                    ORDER BY order_key, id)
		    FROM orderexp.outbox WHERE kind = 'reminder' AND channel = 'email'}),
	'1:1:true,2:1:true,5:1:true,5:0:false,6:1:true,6:1:true,7:1:true',
	'a token while the customer may extend: not after the one customer extension, still after an operator\'s');

# timing: never before the reminder time, and within a second of it
my ($min_late, $max_late) = split /\|/,
  $node->safe_psql(
	'postgres', q{
SELECT min(extract(epoch FROM created_at - (payload->>'remind_at')::timestamptz)),
       max(extract(epoch FROM created_at - (payload->>'remind_at')::timestamptz))
  FROM orderexp.outbox WHERE kind = 'reminder' AND order_key <> '7'});
note "reminder lateness: min ${min_late}s, max ${max_late}s";
cmp_ok($min_late, '>=', 0, 'no reminder is written before its reminder time');
cmp_ok($max_late, '<', 1, 'every reminder is written within a second of its reminder time');
is( $node->safe_psql(
		'postgres',
		q{SELECT bool_and(e.created_at - (o.created_at + interval '4 seconds') < interval '1 second')
		    FROM orderexp.outbox e JOIN orders o ON o.id::text = e.order_key
		   WHERE e.kind = 'reminder' AND e.order_key = '7'}),
	't', 'the order inserted past its reminder time is reminded within a second of its insert');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orderexp.outbox
		   WHERE kind = 'reminder' AND (payload->>'close_at')::timestamptz <= created_at}),
	'0', 'every reminder is written before its deadline');

# the close comes after the reminder
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(c.order_key || ':' || c.channel, ',' ORDER BY c.order_key, c.channel)
		    FROM orderexp.outbox c
		   WHERE c.kind = 'closed' AND c.order_table = 'orders'::regclass
		     AND c.id > (SELECT max(r.id) FROM orderexp.outbox r
		                  WHERE r.kind = 'reminder' AND r.order_key = c.order_key)
		     AND c.created_at >= (c.payload->>'close_at')::timestamptz}),
	'1:email,1:sms,5:email,5:sms,6:email,6:sms,7:email,7:sms',
	'the unpaid orders are closed after their last reminder, at their deadline');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(kind, ',' ORDER BY id) FROM orderexp.outbox
		   WHERE order_key = '2' AND channel = 'email' AND order_table = 'orders'::regclass}),
	'reminder', 'the order paid between reminder and deadline has its reminder and no closed event');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM orderexp.timers}),
	'0', 'no timers are left');

# --- the log -------------------------------------------------------------------

is(log_lines($node, 0, sub { /\b(ERROR|FATAL|PANIC|WARNING):/ && /orderexp/ }),
	'', 'no orderexp errors or warnings in the log');

$node->stop;
done_testing();
