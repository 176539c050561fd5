
# Copyright (c) 2026, orderexp developers

# One orderexp-relay draining two nodes: batches alternate between the
# nodes while both have a backlog; when one node is stopped in the middle of
# its batches the other keeps flowing; the relay reconnects when the node
# comes back, acknowledges what it had delivered from it before the stop
# (those acks were lost with the connection), and delivers what came since.
# In the end every event of both nodes has been delivered exactly once.

use strict;
use warnings;

use FindBin;
use JSON::PP;
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $tmp  = PostgreSQL::Test::Utils::tempdir();
my $each = "$tmp/each";    # one file per delivery
mkdir $each;

my %node;
for my $name ('a', 'b')
{
	$node{$name} = new_orderexp_node("relay_$name");
	$node{$name}->safe_psql(
		'postgres', q{
CREATE EXTENSION orderexp;
CREATE ROLE relay LOGIN IN ROLE orderexp_relay;
CREATE TABLE jobs (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('jobs', interval '1 hour', channels => '{sms}');
});
}

# events for order keys $from..$to on a node: cancelled orders
sub events
{
	my ($name, $from, $to) = @_;
	$node{$name}->safe_psql('postgres', qq{
INSERT INTO jobs (id) SELECT generate_series($from, $to);
SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series($from, $to)));});
}

my $delivered =
  q{SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) || '/' || count(*) FROM orderexp.outbox_state};

# keys 1-30 on a, 1001-1030 on b: a backlog of 6 batches of 5 on each
events('a', 1, 30);
events('b', 1001, 1030);

my $log = "$tmp/relay.log";
my $relay = spawn(
	"$tmp/relay.out", $log, 'orderexp-relay',
	'-d', $node{a}->connstr('postgres') . ' user=relay',
	'-d', $node{b}->connstr('postgres') . ' user=relay',
	'--exec', "sleep 0.1; cat > \"\$(mktemp $each/ev.XXXXXX)\"",
	'--batch-size', '5', '--lease', '5', '--timeout', '1',
	'--poll-interval', '0.2', '--retry-max', '1');

# stop b in the middle of its backlog
ok( defined wait_for($node{b}, 'postgres',
		q{SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) >= 10
		     AND count(*) FILTER (WHERE delivered_at IS NULL AND leased_until > now()) > 0
		    FROM orderexp.outbox_state}, 't', 20),
	'b: the relay delivers, a batch is in hand');
$node{b}->stop('fast');
note 'b stopped with '
  . (() = glob("$each/ev.*")) . ' deliveries done in all';

# a keeps flowing while b is down, new events included
events('a', 31, 40);
ok(defined wait_for($node{a}, 'postgres', $delivered, '40/40', 20),
	'a: all 40 events delivered while b is down');
like(slurp_file($log), qr/node 2 \([^)]*\): (connection lost|ack failed|claim failed|fail failed)[^\n]*retrying with back-off/,
	'the relay noticed that b went down and retries it');

# b comes back with the same port; more events on it
$node{b}->start;
events('b', 1031, 1040);
ok(defined wait_for($node{b}, 'postgres', $delivered, '40/40', 30),
	'b: back up, all 40 events delivered (the acks lost with the connection sent after it)');
# (the events in hand: up to a window of --concurrency exec=8 and a batch)
like(slurp_file($log), qr/node 2 \([^)]*\): connected again\n.*node 2 \([^)]*\): sending (?:[1-9]|1[0-3]) acks left from the lost connection/,
	'the relay reconnected to b and sent the acks of the events in hand at the stop');

# batches took turns while both nodes had a backlog: each node among the
# first four batches, and never three in a row (the order of two claims in
# flight at once is the order of their answers: a session's first claim
# plans its statements, tens of milliseconds, so 1211 is a turn too; a
# starved node would show 1111)
my @turns = slurp_file($log) =~ /node (\d) \([^)]*\): batch of/g;
my $first = join('', @turns[0 .. 3]);
ok($first =~ /1/ && $first =~ /2/ && $first !~ /(\d)\1\1/,
	"the first batches take turns between the nodes ($first)");

kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: exit 0');
like(slurp_file($log), qr/summary node 1 .*\n.*summary node 2 .*\n.*summary: /,
	'a summary per node and one for all') or diag slurp_file($log);

# --once with a node down: the other is drained, the exit status says 2
$node{b}->stop('fast');
events('a', 41, 45);
my $once = spawn(
	"$tmp/once.out", "$tmp/once.log", 'orderexp-relay',
	'-d', $node{a}->connstr('postgres') . ' user=relay',
	'-d', $node{b}->connstr('postgres') . ' user=relay',
	'--exec', "cat > \"\$(mktemp $each/ev.XXXXXX)\"", '--once');
is(finish($once, 30), 2, '--once with b down: exit 2');
is($node{a}->safe_psql('postgres', $delivered), '45/45', 'and a drained all the same');
$node{b}->start;

# exactly once: 85 events, one delivery each
my %count;
for my $f (glob("$each/ev.*"))
{
	my $ev = decode_json(slurp_file($f));
	$count{ $ev->{order_key} }++;
}
is(scalar(keys %count), 85, 'every event of both nodes reached the command');
is(join(',', grep { $count{$_} != 1 } sort keys %count), '', 'each exactly once');
is( $node{a}->safe_psql('postgres', 'SELECT max(attempts) FROM orderexp.outbox_state') . ','
	  . $node{b}->safe_psql('postgres', 'SELECT max(attempts) FROM orderexp.outbox_state'),
	'1,1', 'no event needed a second attempt');

$node{a}->stop;
$node{b}->stop;
done_testing();
