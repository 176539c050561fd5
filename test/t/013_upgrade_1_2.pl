
# Copyright (c) 2026, orderexp developers

# The update from 1.1 to 1.2 with data in the database, and the library of
# 1.2 serving a database still at 1.1.
#
# 1.2 links every audit row to its events (audit.event_ids) instead of
# matching them through an index on the outbox by order, which it drops; and
# its sweep writes the outcomes of its closes itself, with the outcome
# trigger standing aside for them.  So:
#
#  - at 1.1 under the new library, closes (run_due), a cancel, an extension,
#    an order the application closes itself and a payment each give one
#    outcome, through the trigger, as 1.1 did;
#  - ALTER EXTENSION UPDATE fills event_ids of the existing audit rows with
#    exactly the events history() showed for them before, and drops
#    outbox_order;
#  - the update makes the triggers of registered tables again, without
#    WHEN clauses (the trigger functions test the status);
#  - at 1.2, the same kinds of change give again exactly one outcome per
#    order (none lost, none twice), with the values the trigger writes, and
#    audit rows that name their own events; history() shows both.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;

# no worker: run_due() closes, so that each step is deterministic
my $node = new_orderexp_node('upgrade12', 'orderexp.enabled' => 'off');
my $db = 'postgres';
$node->safe_psql($db, q{CREATE EXTENSION orderexp VERSION '1.1'});
create_orders($node, $db, 'orders',
	q{interval '1 hour', remind_before => interval '30 minutes', extend_by => interval '1 hour',
	  channels => '{email,sms}'});

# history() of every touched order, with the event ids it finds, one line
my $history_sql = q{
SELECT string_agg(format('%s:%s:%s', o.id, h.action, h.event_ids), ' ' ORDER BY o.id, h.id)
  FROM orders o, LATERAL orderexp.history('orders', o.id) h};

# outcome per order, with what the trigger copies from the timer
my $outcomes_sql = q{
SELECT string_agg(format('%s:%s:%s:%s:%s:%s', order_key, outcome, status, reminded, extensions,
						 created_at IS NOT NULL AND close_at IS NOT NULL AND decided_at IS NOT NULL
						 AND policy_id IS NOT NULL AND policy_version IS NOT NULL),
				  ' ' ORDER BY order_key::integer, decided_at)
  FROM orderexp.outcomes};

# one batch of changes of every kind on orders first .. first + 5:
#   first, first + 1  due (created 2 hours ago): closed by run_due()
#   first + 2          cancelled;  first + 3  extended, then paid
#   first + 4          closed by the application itself;  first + 5 paid
sub changes
{
	my ($first) = @_;
	my @k = map { $first + $_ } 0 .. 5;
	$node->safe_psql(
		$db, qq{
INSERT INTO orders (id, created_at) VALUES ($k[0], now() - interval '2 hours'),
	($k[1], now() - interval '2 hours');
INSERT INTO orders (id) VALUES ($k[2]), ($k[3]), ($k[4]), ($k[5]);
SELECT * FROM orderexp.run_due();
SELECT orderexp.cancel_order('orders', $k[2], 'asked');
SELECT orderexp.extend_order('orders', $k[3]);
UPDATE orders SET status = 'paid' WHERE id IN ($k[3], $k[5]);
UPDATE orders SET status = 'closed' WHERE id = $k[4];
});
}

# --- at 1.1, under this library -----------------------------------------------

changes(1);
my $outcomes_11 = $node->safe_psql($db, $outcomes_sql);
# (reminded is t for 1 and 2: their reminder came due with the deadline, and
# the reminder batch marks a timer it sends nothing for; see the README on
# outcomes.reminded)
is( $outcomes_11,
	'1:closed:closed:t:0:t 2:closed:closed:t:0:t 3:cancelled:cancelled:f:0:t '
	  . '4:paid:paid:f:1:t 5:closed:closed:f:0:t 6:paid:paid:f:0:t',
	'at 1.1 every change has one outcome, written by the trigger');
my $history_11 = $node->safe_psql($db, $history_sql);
like($history_11, qr/^1:closed:\{\d+,\d+\} 2:closed:\{\d+,\d+\} 3:cancelled:\{\d+,\d+\} 4:extended:\{\d+,\d+\}$/,
	'at 1.1 history() finds two events (two channels) for every change');

# the row triggers: WHEN clause or none, and their number of arguments
my $triggers_sql = q{
SELECT string_agg(tgname || ':' || (tgqual IS NULL) || ':' || tgnargs, ',' ORDER BY tgname)
  FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname <> 'orderexp_timer_truncate'};
is( $node->safe_psql($db, $triggers_sql),
	'orderexp_outcome:false:6,orderexp_timer_insert:false:4,orderexp_timer_unpaid:false:4',
	'at 1.1 the triggers have WHEN clauses (and the library above served them)');

# --- the update ---------------------------------------------------------------

$node->safe_psql($db, q{ALTER EXTENSION orderexp UPDATE TO '1.2'});
is( $node->safe_psql($db, $triggers_sql),
	'orderexp_outcome:true:7,orderexp_timer_insert:true:6,orderexp_timer_unpaid:true:6',
	'the update made the triggers of the registered table again, without WHEN clauses');
is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'orderexp'}),
	'1.2', 'updated to 1.2');
is($node->safe_psql($db, q{SELECT to_regclass('orderexp.outbox_order') IS NULL}),
	't', 'outbox_order is gone');
is( $node->safe_psql(
		$db, q{
SELECT string_agg(format('%s:%s:%s', order_key, action, event_ids), ' ' ORDER BY order_key::integer, id)
  FROM orderexp.audit}),
	$history_11,
	'the update linked every audit row to the events history() showed for it');
is($node->safe_psql($db, $history_sql), $history_11,
	'history() after the update is what it was before');

# --- at 1.2 -------------------------------------------------------------------

changes(11);
my $outcomes_12 = $node->safe_psql($db, $outcomes_sql);
# the same changes on orders 11-16 as on 1-6 before the update
(my $expected_12 = $outcomes_11) =~ s/(^| )(\d+):/$1 . ($2 + 10) . ':'/ge;
is($outcomes_12, "$outcomes_11 $expected_12",
	'at 1.2 every change has exactly one outcome with the same values as at 1.1, the sweep\'s closes included');
is( $node->safe_psql(
		$db, q{
SELECT count(*) FROM orderexp.audit a
 WHERE cardinality(a.event_ids) <> 2
    OR EXISTS (SELECT 1 FROM unnest(a.event_ids) i
                WHERE NOT EXISTS (SELECT 1 FROM orderexp.outbox o
                                   WHERE o.id = i AND o.order_key = a.order_key
                                     AND o.kind = a.action AND o.created_at = a.at))}),
	'0',
	'every audit row names its own two events: same order, kind and transaction');
like(
	$node->safe_psql($db, $history_sql),
	qr/^\Q$history_11\E 11:closed:\{\d+,\d+\} 12:closed:\{\d+,\d+\} 13:cancelled:\{\d+,\d+\} 14:extended:\{\d+,\d+\}$/,
	'history() shows the changes of both versions with their events');

# the sweep's outcomes carry what the trigger would have written: the
# timer's deadline, and the order's created-at
is( $node->safe_psql(
		$db, q{
SELECT count(*) FROM orderexp.outcomes x JOIN orders o ON o.id = x.order_key::integer
 WHERE x.outcome = 'closed' AND x.order_key IN ('11', '12')
   AND x.created_at = o.created_at AND x.close_at = o.created_at + interval '1 hour'
   AND x.decided_at <= now()}),
	'2',
	'the sweep\'s outcome rows have the order\'s created-at and its deadline');

# a reopened order closed again: a second outcome, as for any order leaving
# the unpaid state again
$node->safe_psql($db,
	q{SELECT orderexp.reopen_order('orders', 11, interval '1 second')});
$node->safe_psql($db, q{SELECT pg_sleep(1.2); SELECT * FROM orderexp.run_due()});
is( $node->safe_psql(
		$db, q{
SELECT string_agg(outcome || ':' || reopened, ',' ORDER BY decided_at, reopened)
  FROM orderexp.outcomes WHERE order_key = '11'}),
	'closed:false,closed:true',
	'a reopened order closed again has a second outcome, marked reopened');

$node->stop;
done_testing();
