
# Copyright (c) 2026, orderexp developers

# An event stream restored from a dump (1.3, issue 22).  Events delivered in
# batches carry the id of the transaction that wrote them, and their
# delivery is their batch's: pg_dump keeps the outbox, the batches and the
# stream's origins, and a restore into another cluster (or another database
# of the same one) adopts the restored stream before it is used.  Checked:
# the events a finished batch delivered are delivered in the restored
# database, with the same delivery time, and are never handed out again;
# the events of a batch that was out come back at once with its attempts;
# the events not cut yet come out once; a failed event keeps its retry; an
# event written before the adoption is a row; after it, new events join the
# stream again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# no worker: run_due() closes, and only the relay's calls and run_due()'s
# pruning touch the stream
my $src = new_orderexp_node('streamsrc', 'orderexp.enabled' => 'off');
$src->safe_psql('postgres', 'CREATE DATABASE shop');
$src->safe_psql(
	'shop', q{
CREATE EXTENSION orderexp;
CREATE ROLE relay LOGIN IN ROLE orderexp_relay;
ALTER DATABASE shop SET orderexp.batch_delivery = on;
});
create_orders($src, 'shop', 'orders', q{interval '1 hour'});
$src->safe_psql('shop',
	q{INSERT INTO orders (id, created_at) SELECT g, now() - interval '2 hours' FROM generate_series(1, 30) g;
	  INSERT INTO orders (id) VALUES (100), (101)});
is( $src->safe_psql(
		'shop', q{SELECT closed FROM orderexp.run_due();
		          SELECT count(*) FROM orderexp.outbox WHERE txid IS NOT NULL AND channel IS NOT NULL}),
	"30\n30", '30 closes write 30 events into the stream');

# as the relay: the first batch of 10 delivered, the second out (leased
# for an hour) with one of its events failed; 10 events not cut yet
my $relay_src = $src->connstr('shop') . ' user=relay';
my $out = $src->safe_psql(
	'shop', q{
SELECT orderexp.next_batch(10, '1 hour') AS b \gset
SELECT count(*) FROM orderexp.get_batch_events(:b);
SELECT orderexp.finish_batch(:b);
SELECT orderexp.next_batch(10, '1 hour') AS b2 \gset
SELECT count(*) FROM orderexp.get_batch_events(:b2);
SELECT orderexp.fail(min(e.id), 'smtp 451: try later') IS NOT NULL
  FROM orderexp.get_batch_events(:b2) e;
}, connstr => $relay_src);
is($out, "10\n10\n10\nt", 'a batch of 10 delivered, a batch of 10 out with one event failed');

# each event's state, as outbox_state derives it
my $state_sql = q{
SELECT string_agg(format('%s:%s:%s:%s', o.id,
                         CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered'
                              WHEN o.last_error IS NOT NULL THEN 'retrying'
                              WHEN o.leased_until IS NOT NULL THEN 'out'
                              ELSE 'waiting' END,
                         o.attempts, coalesce(extract(epoch FROM o.delivered_at)::text, '-')),
                  ' ' ORDER BY o.id)
  FROM orderexp.outbox_state o WHERE o.channel IS NOT NULL};
my $before = $src->safe_psql('shop', $state_sql);
my %count;
$count{$1}++ while $before =~ /\d+:(\w+):/g;
is(join(',', map { "$_=$count{$_}" } sort keys %count),
	'delivered=10,out=9,retrying=1,waiting=10', 'the states before the dump');

my $dump = $src->basedir . '/shop.dump';
$src->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('shop') ],
	'pg_dump of the shop');

# check_restored($node, $db, $what): the restored database $db adopts the
# stream as described above
sub check_restored
{
	my ($node, $db, $what) = @_;
	my $relay = $node->connstr($db) . ' user=relay';

	is( $node->safe_psql(
			$db, q{SELECT orderexp._stream_foreign(),
			              (SELECT count(*) FROM orderexp.stream_origins),
			              (SELECT count(*) FROM orderexp.batches)}),
		't|2|2', "$what: the restored stream is foreign (two origins) and its batches are there");

	# an operator's cancel before any relay or pruning ran: a row, not a
	# stream event whose transaction id means nothing in the dumped batches
	is( $node->safe_psql(
			$db, q{SET orderexp.batch_delivery = on;
			       SELECT orderexp.cancel_order('orders', '100');
			       SELECT txid IS NULL FROM orderexp.outbox WHERE kind = 'cancelled'}),
		"t\nt", "$what: an event written before the adoption is a row");

	# the first claim adopts the stream, then hands out what was not delivered
	my $claimed = $node->safe_psql(
		$db, q{SELECT string_agg(c.id || ':' || c.attempts, ' ' ORDER BY c.id)
		         FROM orderexp.claim(100, '1 minute') c},
		connstr => $relay);
	my %got = map { split /:/ } split / /, $claimed;
	my %want;
	for (split / /, $before)
	{
		my ($id, $st, $att) = split /:/;
		$want{$id} = $att + 1 if $st eq 'out';
		$want{$id} = 1 if $st eq 'waiting';
	}
	my $cancel_id = $node->safe_psql($db,
		q{SELECT id FROM orderexp.outbox WHERE kind = 'cancelled' AND channel IS NOT NULL});
	$want{$cancel_id} = 1;
	is_deeply(\%got, \%want,
		"$what: claim hands out the out batch's events (its attempt counted again), the uncut ones and the new cancel, nothing delivered"
	);

	is( $node->safe_psql(
			$db, q{SELECT orderexp._stream_foreign(),
			              (SELECT count(*) FROM orderexp.stream_origins),
			              (SELECT count(*) FROM orderexp.batches WHERE hi_snap IS NOT NULL),
			              (SELECT count(*) FROM orderexp.outbox WHERE txid IS NOT NULL)}),
		'f|1|0|0', "$what: adopted: one origin, the dumped batches gone, every event a row");

	# the delivered ones keep their delivery time; the failed one its retry
	my $after = $node->safe_psql($db, $state_sql);
	my @delivered_before = grep { /:delivered:/ } split / /, $before;
	my %after = map { (split /:/)[0] => $_ } split / /, $after;
	is_deeply([ map { $after{ (split /:/)[0] } } @delivered_before ],
		\@delivered_before, "$what: the 10 delivered events are delivered, at the same time");
	my ($failed) = grep { /:retrying:/ } split / /, $before;
	is($after{ (split /:/, $failed)[0] }, $failed, "$what: the failed event still waits for its retry");

	# the acks of the claimed events deliver them; nothing is left
	is( $node->safe_psql(
			$db, q{SELECT orderexp.ack(array_agg(o.id)) FROM orderexp.outbox o
			        WHERE o.claimed_by = 'relay' AND o.leased_until IS NOT NULL;
			       SELECT count(*) FROM orderexp.claim(100, '1 minute')},
			connstr => $relay),
		(scalar(keys %want)) . "\n0", "$what: acked, nothing more to claim");

	# new events join the stream again and go out once
	is( $node->safe_psql(
			$db, q{SET orderexp.batch_delivery = on;
			       SELECT orderexp.cancel_order('orders', '101');
			       SELECT count(*) FROM orderexp.outbox
			        WHERE kind = 'cancelled' AND txid IS NOT NULL}),
		"t\n1", "$what: after the adoption a new event joins the stream");
	is( $node->safe_psql(
			$db, q{SELECT string_agg(c.kind || ':' || c.order_key, ',')
			         FROM orderexp.claim(100, '1 minute') c},
			connstr => $relay),
		'cancelled:101', "$what: and is claimed from it, alone");
}

# into another cluster: other transaction ids altogether
my $dst = new_orderexp_node('streamdst', 'orderexp.enabled' => 'off');
$dst->safe_psql('postgres', 'CREATE DATABASE shop');
$dst->command_ok([ 'pg_restore', '--single-transaction', '-d', $dst->connstr('shop'), $dump ],
	'pg_restore into another cluster');
$dst->safe_psql('shop', 'CREATE ROLE relay LOGIN IN ROLE orderexp_relay');
check_restored($dst, 'shop', 'another cluster');

# into another database of the same cluster: the same transaction ids, but
# a new cursor
$src->safe_psql('postgres', 'CREATE DATABASE shop2');
$src->command_ok([ 'pg_restore', '--single-transaction', '-d', $src->connstr('shop2'), $dump ],
	'pg_restore into another database of the same cluster');
check_restored($src, 'shop2', 'the same cluster');

# the pruning adopts too, without a relay: run_due() in a third copy
$src->safe_psql('postgres', 'CREATE DATABASE shop3');
$src->command_ok([ 'pg_restore', '--single-transaction', '-d', $src->connstr('shop3'), $dump ],
	'pg_restore into a third database');
is( $src->safe_psql(
		'shop3', q{SELECT count(*) FROM orderexp.run_due();
		           SELECT orderexp._stream_foreign(), count(*) FILTER (WHERE delivered_at IS NOT NULL)
		             FROM orderexp.outbox WHERE channel IS NOT NULL}),
	"1\nf|10", 'run_due()\'s pruning adopts the restored stream: the 10 delivered events are delivered rows');

# the source is untouched by all this: its stream is its own
is( $src->safe_psql(
		'shop', q{SELECT orderexp._stream_foreign(), (SELECT count(*) FROM orderexp.stream_origins)}),
	'f|1', 'the dumped database keeps its own stream');

$dst->stop;
$src->stop;
done_testing();
