
# Copyright (c) 2026, orderexp developers

# Delivery settings and the pruning of delivered events.
#
# First without orderexp preloaded (the pg_cron set-up): claim() and fail()
# in a fresh session, whose first call into orderexp loads the library, see
# orderexp.max_attempts as ALTER DATABASE set it, and run_due() prunes with
# the database's orderexp.event_retention.
#
# Then with orderexp preloaded: the worker deletes delivered rows older than
# the retention and leaves undelivered, dead and young delivered rows alone;
# a changed retention (reload) applies at once, not a minute later; 0 keeps
# everything, and the pass still marks the outbox (outbox_marks).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# rows of every state, made directly (rows with a state of their own, not
# stream events: txid NULL): key says what each one is; in part
# $part of the outbox (default 0, the part pruned row by row; the rotating
# parts are emptied whole)
sub make_rows
{
	my ($node, $tag, $delivered_ago, $part) = @_;
	$part //= 0;
	$node->safe_psql(
		'postgres', qq{
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at,
							 attempts, next_attempt_at, delivered_at, dead_at, txid, part)
VALUES
	('closed', 'shop_orders', '$tag-old-delivered', 'email', '{}', now() - interval '3 hours',
	 1, now(), now() - interval '$delivered_ago', NULL, NULL, $part),
	('closed', 'shop_orders', '$tag-young-delivered', 'email', '{}', now() - interval '3 hours',
	 1, now(), now() - interval '5 minutes', NULL, NULL, $part),
	('closed', 'shop_orders', '$tag-old-undelivered', 'email', '{}', now() - interval '3 days',
	 2, now() + interval '1 min', NULL, NULL, NULL, $part),
	('closed', 'shop_orders', '$tag-old-dead', 'email', '{}', now() - interval '3 days',
	 10, 'infinity', NULL, now() - interval '2 days', NULL, $part);
});
}

# the keys of the rows of a tag that are left
sub left
{
	my ($node, $tag) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT string_agg(order_key, ',' ORDER BY id) FROM orderexp.outbox
		    WHERE order_key LIKE '$tag-%'});
}

my $node = PostgreSQL::Test::Cluster->new('retention');
$node->init;
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE TABLE shop_orders (id integer PRIMARY KEY);
ALTER DATABASE postgres SET orderexp.max_attempts = 2;
ALTER DATABASE postgres SET orderexp.event_retention = '1h';
});

# --- not preloaded: the settings reach the SQL functions -----------------------

is($node->safe_psql('postgres', q{SELECT orderexp._max_attempts()}),
	'2', 'a fresh session reads max_attempts from ALTER DATABASE');
is($node->safe_psql('postgres', q{SELECT orderexp._event_retention()}),
	'01:00:00', 'and event_retention');

my $id = $node->safe_psql(
	'postgres', q{
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
VALUES ('closed', 'shop_orders', 'x', 'email', '{}') RETURNING id});
# each call in a session of its own: the first thing it does is claim or fail
is($node->safe_psql('postgres', q{SELECT attempts FROM orderexp.claim()}),
	'1', 'first attempt claimed');
is($node->safe_psql('postgres', qq{SELECT orderexp.fail($id, 'no route') IS NOT NULL}),
	't', 'first failure: a retry is scheduled');
$node->safe_psql('postgres',
	qq{UPDATE orderexp.outbox SET next_attempt_at = now() WHERE id = $id});
is($node->safe_psql('postgres', q{SELECT attempts FROM orderexp.claim()}),
	'2', 'second attempt claimed');
is($node->safe_psql('postgres', qq{SELECT orderexp.fail($id, 'no route') IS NULL}),
	't', 'second failure: dead, as max_attempts = 2 says');
is($node->safe_psql('postgres', q{SELECT count(*) FROM orderexp.dead_letters}),
	'1', 'the row is a dead letter');

make_rows($node, 'cron', '2 hours');
is($node->safe_psql('postgres', q{SELECT closed FROM orderexp.run_due()}),
	'0', 'run_due() closes nothing here');
is(left($node, 'cron'),
	'cron-young-delivered,cron-old-undelivered,cron-old-dead',
	'run_due() pruned the delivered row older than the retention (1h), and only it');

# --- preloaded: the worker prunes ----------------------------------------------

# the worker reads postgresql.conf (ALTER DATABASE settings only when it
# starts): the retention goes there
$node->safe_psql(
	'postgres', q{
ALTER DATABASE postgres RESET ALL;
ALTER SYSTEM SET orderexp.event_retention = '1h';
});
make_rows($node, 'w1', '2 hours');
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orderexp'
orderexp.naptime = 100
orderexp.databases = 'postgres'
});
$node->restart;

ok( defined wait_for(
		$node, 'postgres', q{SELECT count(*) FROM orderexp.outbox WHERE order_key = 'w1-old-delivered'},
		'0', 30),
	'the worker pruned the delivered row older than the retention');
is(left($node, 'w1'),
	'w1-young-delivered,w1-old-undelivered,w1-old-dead',
	'young delivered, undelivered and dead rows are left');

# rows delivered 30 minutes ago are young for 1h; at 10 min they are not,
# and a reload makes the worker prune at once instead of a minute later
make_rows($node, 'w2', '30 minutes');
sleep(1);
is(left($node, 'w2'),
	'w2-old-delivered,w2-young-delivered,w2-old-undelivered,w2-old-dead',
	'nothing of the new rows is older than 1h: all left');
set_guc($node, 'orderexp.event_retention', '10min');
my $took = wait_for($node, 'postgres',
	q{SELECT count(*) FROM orderexp.outbox WHERE order_key = 'w2-old-delivered'},
	'0', 30);
ok(defined $took && $took < 20,
	'after the reload the worker pruned with the new retention, long before its minute was up');
is(left($node, 'w2'),
	'w2-young-delivered,w2-old-undelivered,w2-old-dead',
	'and only the row delivered 30 minutes ago');

# the worker empties a rotating part whose time has come (1.3): part 2
# stopped being current two hours ago, and part 1 has been current for
# longer than half the retention; part 2's rows that are not settled
# before the cut-off stay, in part 0, with their ids
$node->safe_psql(
	'postgres', q{
UPDATE orderexp.outbox_parts SET opened_at = now() - interval '1 hour' WHERE part = 1;
UPDATE orderexp.outbox_parts SET closed_at = now() - interval '2 hours' WHERE part = 2;
});
make_rows($node, 'r', '30 minutes', 2);
my $ids = $node->safe_psql('postgres',
	q{SELECT string_agg(id::text, ',' ORDER BY id) FROM orderexp.outbox
	   WHERE order_key IN ('r-young-delivered', 'r-old-undelivered', 'r-old-dead')});
set_guc($node, 'orderexp.event_retention', '10min');
ok( defined wait_for(
		$node, 'postgres', q{SELECT part FROM orderexp.outbox_parts WHERE closed_at IS NULL},
		'2', 30),
	'the worker emptied part 2 and made it the current part');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(order_key || ':' || part, ',' ORDER BY id) FROM orderexp.outbox
		   WHERE order_key LIKE 'r-%'}),
	'r-young-delivered:0,r-old-undelivered:0,r-old-dead:0',
	'the row delivered before the cut-off went with the part, the others are kept in part 0');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM orderexp.outbox WHERE order_key LIKE 'r-%'}),
	$ids, 'with their ids');
is($node->safe_psql('postgres', q{SELECT kept FROM orderexp.outbox_parts WHERE part = 2}),
	'3', 'outbox_parts counts what the rotation kept');

# 0 keeps delivered rows forever
set_guc($node, 'orderexp.event_retention', '0');
sleep(1);		# the worker has taken in the reload
make_rows($node, 'w3', '400 days');
sleep(2);
is(left($node, 'w3'),
	'w3-old-delivered,w3-young-delivered,w3-old-undelivered,w3-old-dead',
	'retention 0: nothing is pruned');
is($node->safe_psql('postgres', q{SELECT count(*) FROM orderexp.outbox WHERE dead_at IS NOT NULL}),
	'6', 'dead rows are never pruned');

# the pruning pass marks the outbox (outbox_marks) with the retention off
# too: a new worker's first pass writes a mark when there is none of the
# last minute
$node->safe_psql('postgres', q{DELETE FROM orderexp.outbox_marks});
$node->restart;
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_marks m
		   WHERE m.last_id = (SELECT s.last_value FROM orderexp.outbox_id_seq s)},
		'1', 30),
	'retention 0: the worker marks the outbox with the last id drawn');

$node->stop;
done_testing();
