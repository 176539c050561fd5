
# Copyright (c) 2026, orderexp developers

# orderexp-relay over events delivered in batches (1.3, issue 22): with
# orderexp.batch_delivery on, the closes write their events into the stream
# and the relay's claim() and ack() take them a batch at a time.  Every
# event is delivered once; the events are not written again (their
# batches are: the relay acks in groups, whose first events split off as
# finished batches); delivery_stats counts them delivered; a failing sink's
# events leave the stream and are retried with their reason.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();

# no worker: run_due() closes, so that the events are there before the relay runs
my $node = new_orderexp_node('relaybatches', 'orderexp.enabled' => 'off');
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE ROLE relay LOGIN IN ROLE orderexp_relay;
ALTER DATABASE postgres SET orderexp.batch_delivery = on;
});
create_orders($node, 'postgres', 'orders', q{interval '1 hour', channels => '{email,sms}'});
my $conn = $node->connstr('postgres') . ' user=relay';

sub run_relay
{
	my (@args) = @_;
	my $pid = spawn("$tmp/relay.out", "$tmp/relay.err", 'orderexp-relay', '-d', $conn,
		'--once', @args);
	return finish($pid, 40);
}

# --- 1,000 events, all delivered, none written again ------------------------------

$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) SELECT g, now() - interval '2 hours' FROM generate_series(1, 500) g});
is( $node->safe_psql(
		'postgres', q{SELECT closed FROM orderexp.run_due();
			SELECT count(*) FILTER (WHERE txid IS NOT NULL) || '/' || count(*)
			  FROM orderexp.outbox WHERE channel IS NOT NULL}),
	"500\n1000/1000", '500 closes on 2 channels write 1000 events into the stream');

is(run_relay('--stdout', '--batch-size', '200'), 0, 'the relay delivers them (--once, exit 0)')
  or diag slurp_file("$tmp/relay.err");
my %seen;
my $out = slurp_file("$tmp/relay.out");
$seen{$1}++ while $out =~ /^\{"id":(\d+),/mg;
is(scalar(keys %seen) . '/' . (grep { $_ > 1 } values %seen), '1000/0',
	'each of the 1000 events went out once');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) FROM orderexp.outbox_state
			WHERE channel IS NOT NULL}),
	'1000', 'outbox_state shows them delivered');
is( $node->safe_psql(
		'postgres', q{SELECT sum(delivered) || ':' || sum(pending) || ':' || sum(leased)
			FROM orderexp.delivery_stats}),
	'1000:0:0', 'and delivery_stats counts them');
my $untouched = $node->safe_psql('postgres',
	q{SELECT count(*) FROM orderexp.outbox WHERE channel IS NOT NULL AND txid IS NOT NULL
		AND delivered_at IS NULL AND attempts = 0 AND leased_until IS NULL});
my $batches = $node->safe_psql('postgres',
	q{SELECT count(*) FROM orderexp.batches WHERE finished_at IS NOT NULL});
diag("events never written again: $untouched of 1000, in $batches finished batches");
cmp_ok($untouched, '>=', 900, 'most events were never written again: their batches were');

# --- a failing sink: its events leave the stream and are retried -------------------

$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at) SELECT g, now() - interval '2 hours' FROM generate_series(501, 510) g;
	  SELECT * FROM orderexp.run_due()});
is( run_relay(
		'--stdout', '--route', 'channel=email:stdout', '--exec', 'cat > /dev/null; exit 3',
		'--route', 'channel=sms:exec'),
	5, 'a failing command for sms: the relay exits 5 (--once left events undelivered)');
is( $node->safe_psql(
		'postgres', q{SELECT channel, count(*) FILTER (WHERE s.delivered_at IS NOT NULL),
				count(*) FILTER (WHERE s.txid IS NULL AND s.attempts = 1 AND s.last_error IS NOT NULL
								   AND s.delivered_at IS NULL AND s.next_attempt_at > now())
			FROM orderexp.outbox_state s WHERE s.order_key::int > 500
			GROUP BY channel ORDER BY channel}),
	"email|10|0\nsms|0|10",
	'the email events are delivered; the sms ones left the stream, retrying with their reason');
is( $node->safe_psql(
		'postgres', q{SELECT retrying FROM orderexp.delivery_stats WHERE channel = 'sms'}),
	'10', 'delivery_stats counts them retrying');

$node->stop;
done_testing();
