
# Copyright (c) 2026, orderexp developers

# The update from 1.2 to 1.3 with data in the database: nothing is lost, and
# what was pending goes on.
#
# 1.3 replaces the one-statement batches by three statements (the orders
# table's run as its owner), takes run_due() from PUBLIC, adds columns and
# counts the sweep's outcomes per batch.  A 1.2 database is filled with
# every kind of state (closed, cancelled, extended, paid and pending
# orders, a due reminder, delivered, leased, failed and dead events, audit
# rows, outcomes, an extension token, an experiment) and updated; every
# table of orderexp, history(), policy_stats, experiment_stats,
# delivery_stats and dead_letters read the same before and after, and then
# the pending work is done by the 1.3 batches: the due reminder goes out
# with a token, the due orders close with their events, audit rows and
# counted outcomes, the experiment's statistics count the orders of both
# versions, and the token made at 1.2 still extends its order.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;

# no worker: run_due() works, so that each step is deterministic
my $node = new_orderexp_node('upgrade13', 'orderexp.enabled' => 'off');
my $db = 'postgres';
$node->safe_psql($db, q{CREATE EXTENSION orderexp VERSION '1.2'});
create_orders($node, $db, 'orders',
	q{interval '1 hour', remind_before => interval '30 minutes', extend_by => interval '1 hour',
	  max_extensions => 2, channels => '{email,sms}'});

# 1, 2 closed at 1.2; 3 cancelled; 4 extended, then paid; 5 paid; 6 pending
# with a token; 7 due after the update; 8 its reminder due after the update
$node->safe_psql(
	$db, q{
INSERT INTO orders (id, created_at) VALUES (1, now() - interval '2 hours'),
	(2, now() - interval '2 hours');
INSERT INTO orders (id) VALUES (3), (4), (5), (6);
SELECT * FROM orderexp.run_due();
SELECT orderexp.cancel_order('orders', 3, 'asked');
SELECT orderexp.extend_order('orders', 4);
UPDATE orders SET status = 'paid' WHERE id IN (4, 5);
CREATE TABLE saved_token AS SELECT orderexp.extension_token('orders', 6) AS token;
-- delivery states: one delivered, one leased, one failed for a retry, one dead
SELECT orderexp.ack(ARRAY(SELECT id FROM orderexp.claim(1, '1 hour', channels => '{email}')));
SELECT count(*) FROM orderexp.claim(1, '1 hour', channels => '{email}');
CREATE TEMP TABLE failing AS SELECT id FROM orderexp.claim(1, '1 minute', channels => '{sms}');
SELECT orderexp.fail((SELECT id FROM failing), 'smtp 451');
-- its back-off is short: retrying for as long as this test compares states
UPDATE orderexp.outbox SET next_attempt_at = now() + interval '1 hour'
 WHERE id = (SELECT id FROM failing);
CREATE TEMP TABLE dying AS SELECT id FROM orderexp.claim(1, '1 minute', channels => '{sms}');
UPDATE orderexp.outbox SET attempts = 100 WHERE id = (SELECT id FROM dying);
SELECT orderexp.fail((SELECT id FROM dying), 'gone');
});
# an experiment at 1.2: 40 orders of ab_orders (101-140) decided, 10 paid
# and 30 closed by the sweep of 1.2, one outcome row each
create_orders($node, $db, 'ab_orders', q{interval '1 hour'});
my ($exp, $closed_12) = split /\n/, $node->safe_psql(
	$db, q{
SELECT orderexp.start_experiment('ab_orders', '{1 hour, 2 hours}');
INSERT INTO ab_orders (id, created_at) SELECT g, now() - interval '3 hours' FROM generate_series(101, 140) g;
UPDATE ab_orders SET status = 'paid' WHERE id % 4 = 0;
SELECT closed FROM orderexp.run_due();
});
is($closed_12, '30', 'at 1.2: the sweep closes 30 orders of the experiment');
is( $node->safe_psql(
		$db, qq{SELECT string_agg(variant || ':' || orders || ':' || paid, ',' ORDER BY variant)
				FROM orderexp.experiment_stats WHERE experiment_id = $exp}),
	$node->safe_psql(
		$db, qq{SELECT string_agg(v || ':' || n || ':' || p, ',' ORDER BY v)
				FROM (SELECT orderexp.assign_variant(id::text, '{1,1}', $exp) AS v, count(*) AS n,
							 count(*) FILTER (WHERE status = 'paid') AS p
						FROM ab_orders GROUP BY 1) r}),
	'at 1.2: experiment_stats counts every order of its variant');

$node->safe_psql(
	$db, q{
INSERT INTO orders (id, created_at) VALUES (7, now() - interval '70 minutes'),
	(8, now() - interval '40 minutes');
});

# every table of orderexp, and what the functions and views answer, as text
# (the outbox without 1.3's claimed_by and obsolete_at, the tables without
# 1.3's channel settings, checked below, the outcomes without 1.3's
# order_count, NULL in the rows of 1.2, policies.plain_since (NULL), policy_stats and experiment_stats
# without their feedback columns)
# (delivery_stats without the age of the oldest event, which grows)
# The audit trail becomes the records of changes in the outbox (1.3): the
# view audit reads as the table did but for the ids of the records that are
# rows of their own, and the outbox's events (rows with a channel) as before
# but for the record columns.
my @tables = qw(tables policies timers outbox audit outcomes token_tables secret);
my $new_columns = q{'{claimed_by,obsolete_at,channels_column,contact_channels,contact_columns,fallback_before,via,actor,reason,policy_id,policy_version,variant,deadline,previous_deadline,event_ids,order_count,txid,plain_since,part}'::text[]};
my %columns = (audit => q{'{id}'::text[]}, outbox => $new_columns);
my %rows = (outbox => 'WHERE t.channel IS NOT NULL');
my $state_sql = join(
	"\nUNION ALL\n",
	(map {
		my $drop = $columns{$_} // $new_columns;
		my $where = $rows{$_} // '';
		"SELECT '$_', md5(coalesce(string_agg((to_jsonb(t) - $drop)::text, '|' ORDER BY (to_jsonb(t) - $drop)::text), '')) FROM orderexp.$_ t $where"
	} @tables),
	q{SELECT 'history', md5(string_agg(format('%s:%s', o.id, to_jsonb(h) - 'id'), ' ' ORDER BY o.id, h.ordinality))
	    FROM orders o, LATERAL orderexp.history('orders', o.id) WITH ORDINALITY h},
	q{SELECT 'policy_stats', md5(string_agg(s.j::text, '|' ORDER BY s.j::text))
	    FROM (SELECT to_jsonb(s) - '{feedback,feedback_per_100_closed}'::text[] AS j
				FROM orderexp.policy_stats s) s},
	q{SELECT 'experiment_stats', md5(string_agg(s.j::text, '|' ORDER BY s.j::text))
	    FROM (SELECT to_jsonb(s) - '{feedback,feedback_per_100_closed}'::text[] AS j
				FROM orderexp.experiment_stats s) s},
	q{SELECT 'delivery_stats', md5(string_agg(concat_ws(':', s.kind, s.channel, s.pending, s.leased, s.retrying, s.delivered, s.dead),
											  '|' ORDER BY s.kind, s.channel))
	    FROM orderexp.delivery_stats s},
	q{SELECT 'dead_letters', md5(string_agg(s::text, '|' ORDER BY s::text)) FROM orderexp.dead_letters s});
my $before = $node->safe_psql($db, $state_sql);
# each event's state at 1.2: leased, retrying, dead, due (issue 22: they keep it)
my $event_states = q{
SELECT count(*) FILTER (WHERE leased_until > now() AND delivered_at IS NULL) || ':'
	|| count(*) FILTER (WHERE leased_until IS NULL AND delivered_at IS NULL AND dead_at IS NULL
						  AND next_attempt_at > now()) || ':'
	|| count(*) FILTER (WHERE dead_at IS NOT NULL) || ':'
	|| count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now())
	|| ':' || count(*) FILTER (WHERE delivered_at IS NOT NULL)
  FROM orderexp.%s WHERE channel IS NOT NULL};
my $states12 = $node->safe_psql($db, sprintf($event_states, 'outbox'));
like($states12, qr/^1:1:1:[1-9]\d*:1$/, 'at 1.2: a leased, a retrying, a dead, due and a delivered event');
like($node->safe_psql($db, q{SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) || ':'
	|| count(*) FILTER (WHERE leased_until > now()) || ':'
	|| count(*) FILTER (WHERE dead_at IS NOT NULL) FROM orderexp.outbox}),
	qr/^1:\d+:1$/, 'at 1.2: a delivered, leased and a dead event');

$node->safe_psql($db, 'ALTER EXTENSION orderexp UPDATE');
is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'orderexp'}),
	'1.3', 'updated to 1.3');
is($node->safe_psql($db, $state_sql), $before,
	'every table of orderexp, history(), policy_stats, experiment_stats, delivery_stats and dead_letters read as before');
is( $node->safe_psql(
		$db, q{SELECT count(*) || ':' || count(order_count) FROM orderexp.outcomes}),
	'45:0', 'the outcomes of 1.2 are kept, one order each (order_count NULL)');
is( $node->safe_psql(
		$db, q{SELECT string_agg(DISTINCT concat_ws(':', channels_column, contact_channels, contact_columns, fallback_before), ',')
			   FROM orderexp.tables}),
	'{}:{}:00:05:00', 'the registered tables have no customer channels nor contacts, and the default fallback_before');
is($node->safe_psql($db, q{SELECT count(*) FROM orderexp.outbox WHERE claimed_by IS NOT NULL}),
	'0', 'nobody is recorded as the claimer of rows claimed before 1.3');
is( $node->safe_psql(
		$db, q{SELECT orderexp.ack(ARRAY(SELECT id FROM orderexp.outbox WHERE leased_until > now()))
			   || ':' || orderexp.ack(ARRAY(SELECT id FROM orderexp.outbox WHERE leased_until IS NULL))}),
	'1:0', 'the ack of a relay that claimed under 1.2 counts; rows nobody claimed are not acked');

# the events of 1.2 stay rows claimed one by one (no txid: not in the
# stream of batches), each in its state (issue 22); next_batch() hands out
# the due ones as a batch of rows, not the retrying or dead one
is($node->safe_psql($db, q{SELECT count(*) FROM orderexp.outbox WHERE txid IS NOT NULL}),
	'0', 'the events of 1.2 are not in the stream of batches');
my ($due12) = $states12 =~ /^\d+:\d+:\d+:(\d+):/;
is( $node->safe_psql(
		$db, q{
SELECT orderexp.next_batch(1000, '1 minute') AS b \gset
SELECT b.row_ids IS NOT NULL, count(e.*), count(e.*) FILTER (WHERE e.last_error IS NULL)
  FROM orderexp.batches b, orderexp.get_batch_events(b.id) e
 WHERE b.id = :b GROUP BY b.row_ids;
SELECT orderexp.finish_batch(:b)}),
	"t|$due12|$due12\n$due12",
	'next_batch() at 1.3 hands out the due events of 1.2 as a batch of rows, and finishes it');
is($node->safe_psql($db, sprintf($event_states, 'outbox_state')),
	'0:1:1:0:' . ($due12 + 2),
	'the retrying and dead events of 1.2 keep their state (the leased one was acked above)');

is( $node->safe_psql(
		$db, q{SELECT has_function_privilege('public', 'orderexp.run_due(integer)', 'EXECUTE')
			   || ':' || has_function_privilege('orderexp_admin', 'orderexp.run_due(integer)', 'EXECUTE')}),
	'false:true', 'run_due() is orderexp_admin\'s, no longer PUBLIC\'s');
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'orderexp'::regnamespace
			   AND proname IN ('_sweep_sql', '_remind_sql', '_lock_rows_sql', '_created_range_sql')}),
	'0', 'the generators of the one-statement batches are gone');
is( $node->safe_psql(
		$db, q{SELECT string_agg(tgname || ':' || tgnargs, ',' ORDER BY tgname) FROM pg_trigger
			   WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal}),
	'orderexp_status:0,orderexp_timer_insert:0,orderexp_timer_truncate:0',
	'one trigger on the status (orderexp_status) instead of orderexp_outcome and orderexp_timer_unpaid, and no trigger takes arguments');

# --- the pending work, done by 1.3 ------------------------------------------------

is($node->safe_psql($db, 'SELECT reminded, closed FROM orderexp.run_due()'),
	'1|1', 'run_due at 1.3 reminds order 8 and closes order 7');
is( $node->safe_psql(
		$db, q{
SELECT string_agg(order_key || ':' || kind || ':' || channel, ',' ORDER BY order_key, kind, channel)
  FROM orderexp.outbox WHERE order_key IN ('7', '8')}),
	'7:closed:email,7:closed:sms,8:reminder:email,8:reminder:sms',
	'one event per channel for the close and the reminder');
is( $node->safe_psql(
		$db, q{SELECT count(*) FROM orderexp.outbox WHERE order_key = '8'
				AND payload ->> 'extension_token' IS NOT NULL}),
	'2', 'the reminder carries its extension token');
is( $node->safe_psql(
		$db, q{SELECT action || ':' || cardinality(event_ids) FROM orderexp.audit WHERE order_key = '7'}),
	'closed:2', 'the close has its audit row, naming its two events');
is( $node->safe_psql(
		$db, q{SELECT outcome || ':' || status || ':' || order_count || ':' || num_nulls(order_key, created_at, close_at)
				 FROM orderexp.outcomes WHERE order_table = 'orders'::regclass AND order_key IS NULL}),
	'closed:closed:1:3', 'the close has its outcome, counted: one order of the batch, no order key');
is($node->safe_psql($db, q{SELECT count(*) FROM orderexp.timers WHERE order_key = '7'}),
	'0', 'the closed order\'s timer is gone');
is( $node->safe_psql(
		$db, q{SELECT orderexp.extend_order_by_token(token) > now() + interval '1 hour' FROM saved_token}),
	't', 'the token made at 1.2 extends its order at 1.3');
is( $node->safe_psql(
		$db, q{UPDATE orders SET status = 'unpaid' WHERE id = 5;
			   SELECT count(*) FROM orderexp.timers WHERE order_key = '5' AND close_at > now()}),
	'1', 'a paid order set back to unpaid is tracked again (by orderexp_status)');

# the experiment goes on at 1.3: 20 more orders (141-160), 5 paid (the trigger's
# rows), 15 closed (counted rows); the statistics count the rows of 1.2
# and 1.3 together as a recount of the orders does
$node->safe_psql(
	$db, q{
INSERT INTO ab_orders (id, created_at) SELECT g, now() - interval '3 hours' FROM generate_series(141, 160) g;
UPDATE ab_orders SET status = 'paid' WHERE id > 140 AND id % 4 = 0;
SELECT * FROM orderexp.run_due();
});
is( $node->safe_psql(
		$db, q{SELECT sum(order_count) || ':' || (count(*) <= 2) FROM orderexp.outcomes
			   WHERE order_table = 'ab_orders'::regclass AND order_key IS NULL}),
	'15:true', 'at 1.3: the 15 closes are counted, a row per variant');
is( $node->safe_psql(
		$db, qq{SELECT string_agg(variant || ':' || orders || ':' || paid, ',' ORDER BY variant)
				FROM orderexp.experiment_stats WHERE experiment_id = $exp}),
	$node->safe_psql(
		$db, qq{SELECT string_agg(v || ':' || n || ':' || p, ',' ORDER BY v)
				FROM (SELECT orderexp.assign_variant(id::text, '{1,1}', $exp) AS v, count(*) AS n,
							 count(*) FILTER (WHERE status = 'paid') AS p
						FROM ab_orders GROUP BY 1) r}),
	'experiment_stats counts the orders of 1.2 and 1.3 as a recount of the orders');
is( $node->safe_psql(
		$db, q{SELECT orders || ':' || paid || ':' || closed || ':' || conversion_rate
			   FROM orderexp.policy_stats WHERE order_table = 'ab_orders'::regclass}),
	'60:15:45:0.2500', 'and so does policy_stats');

# explanations and feedback (1.3) on orders decided at 1.2
is( $node->safe_psql(
		$db, q{SELECT orderexp.record_feedback('orders', 1, 'closed too early', 'at 1.2') > 0;
			   SELECT feedback || ':' || feedback_per_100_closed FROM orderexp.policy_stats
			    WHERE order_table = 'orders'::regclass}),
	"t\n1:33.33", 'feedback on an order closed at 1.2 is counted for its policy version');
like(
	$node->safe_psql($db, q{SELECT orderexp.explain_order('orders', 1)}),
	qr/^Order 1 was placed on \d{4}-\d\d-\d\d \d\d:\d\d UTC\. .* It was closed on .* recorded feedback \(closed too early\): "at 1\.2"\.$/,
	'explain_order() tells the close made at 1.2 and the feedback');
like(
	$node->safe_psql($db, q{SELECT action || ':' || reason FROM orderexp.history('orders', 1) ORDER BY at DESC LIMIT 1}),
	qr/^feedback:closed too early: at 1\.2$/, 'history() shows it');

# events written with orderexp.batch_delivery on (the default) go into the
# stream: a batch of them is one row of orderexp.batches.  What is due
# before (the rows of 1.2, the events of the changes made at 1.3 above) is
# delivered first, so that the next batch holds the new close's events alone.
$node->safe_psql($db, q{
DO $$
DECLARE
	b bigint;
BEGIN
	LOOP
		b := orderexp.next_batch(1000);
		EXIT WHEN b IS NULL;
		PERFORM orderexp.finish_batch(b);
	END LOOP;
END $$});
$node->safe_psql($db, q{INSERT INTO orders (id, created_at) VALUES (9, now() - interval '2 hours')});
is( $node->safe_psql(
		$db, q{SHOW orderexp.batch_delivery;
			   SELECT closed FROM orderexp.run_due();
			   SELECT count(*) FROM orderexp.outbox WHERE txid IS NOT NULL AND order_key = '9'}),
	"on\n1\n2", 'at 1.3 with batch_delivery on by default, a close writes its events into the stream');
is( $node->safe_psql(
		$db, q{
SELECT orderexp.next_batch(1000) AS b \gset
SELECT b.hi_snap IS NOT NULL, string_agg(e.order_key || ':' || e.channel, ',' ORDER BY e.channel)
  FROM orderexp.batches b, orderexp.get_batch_events(b.id) e
 WHERE b.id = :b GROUP BY b.hi_snap IS NOT NULL;
SELECT orderexp.finish_batch(:b)}),
	"t|9:email,9:sms\n2", 'next_batch() takes them as a stream batch and finish_batch() delivers them');
is( $node->safe_psql(
		$db, q{SELECT count(*) FILTER (WHERE o.delivered_at IS NOT NULL) || ':' || count(*)
				 FROM orderexp.outbox_state o WHERE o.order_key = '9'}),
	'2:2', 'outbox_state shows them delivered, though the events were not written again');

# plain deadlines on the updated table: its timers stay, new orders need none
$node->safe_psql(
	$db, q{
CREATE INDEX orders_due ON orders (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('orders', interval '1 hour', extend_by => interval '1 hour',
								 max_extensions => 2);
CREATE TABLE timers_before AS SELECT * FROM orderexp.timers;
SELECT orderexp.set_plain_deadlines('orders');
INSERT INTO orders (id) VALUES (11);
});
is( $node->safe_psql(
		$db, q{
SELECT (SELECT count(*) FROM orderexp.timers t
		 WHERE NOT EXISTS (SELECT 1 FROM timers_before b WHERE b.order_key = t.order_key
							 AND b.order_table = t.order_table AND b.close_at = t.close_at))
	   || ':' || (SELECT count(*) FROM timers_before b
				   WHERE NOT EXISTS (SELECT 1 FROM orderexp.timers t WHERE t.order_key = b.order_key
									   AND t.order_table = b.order_table))
	   || ':' || (SELECT count(*) FROM orderexp.pending WHERE order_key = '11')}),
	'0:0:1', 'plain deadlines at 1.3: the timers of 1.2 stay as they were, order 11 is pending without one');
is( $node->safe_psql(
		$db, q{SELECT orderexp.set_plain_deadlines('orders', false);
			   SELECT count(*) FROM orderexp.timers WHERE order_key = '11'}),
	"f\n1", 'and gets its timer row when plain deadlines end');

$node->stop;
done_testing();
