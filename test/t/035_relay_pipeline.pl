
# Copyright (c) 2026, orderexp developers

# orderexp-relay's statements in pipeline mode (two in flight per node: the
# next claim or the acks wait at the server while the relay hands on the
# last claim's rows), against a receiver that answers at once, so that
# claims, acks and deliveries overlap all the time.  No ack may be lost or
# sent twice: every event is delivered and acknowledged once in a clean
# run; when the relay's connection is cut with statements in flight, or the
# relay is killed, every event still ends delivered, and an event is
# delivered twice only if its ack had not been committed; when the server
# crashes (an ack commits without waiting for its WAL flush) nothing is
# lost either.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $tmp    = PostgreSQL::Test::Utils::tempdir();

my $node = new_orderexp_node('pipeline');
$node->safe_psql('postgres',
	q{CREATE EXTENSION orderexp; CREATE ROLE relay LOGIN IN ROLE orderexp_relay;});
create_orders($node, 'postgres', 'jobs', q{interval '1 hour', channels => '{hook}'});
my $conn = $node->connstr('postgres') . ' user=relay application_name=pipelined';

# the receiver: answers at once (no delay file), records the ids it got
my $rdir  = "$tmp/recv";
mkdir $rdir;
my $rport = PostgreSQL::Test::Cluster::get_free_port();
my $rpid  = spawn("$rdir.log", "$rdir.log", $python,
	"$FindBin::RealBin/../relay_window_http.py", $rport, $rdir);
wait_until(sub { -e "$rdir/ready" }, 15)
  or die "receiver did not start: " . slurp_file("$rdir.log");
my $url = "http://127.0.0.1:$rport/hook";

# the ids the receiver answered 200 to, in order
sub received
{
	return () unless -e "$rdir/ids";
	return map { (split / /)[0] } grep { /\S/ } split /\n/, slurp_file("$rdir/ids");
}

# events for order keys $from..$to (cancelled orders); their ids
sub events
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
INSERT INTO jobs (id) SELECT generate_series($from, $to);
SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series($from, $to)));});
	return split /\n/, $node->safe_psql('postgres',
		"SELECT id FROM orderexp.outbox_state WHERE order_key::int BETWEEN $from AND $to ORDER BY id");
}

sub undelivered
{
	my ($from, $to) = @_;
	return $node->safe_psql('postgres', qq{
SELECT count(*) FROM orderexp.outbox_state
 WHERE order_key::int BETWEEN $from AND $to AND delivered_at IS NULL});
}

sub run_relay
{
	my ($name, @args) = @_;
	return spawn("$tmp/$name.out", "$tmp/$name.log", 'orderexp-relay', '-d', $conn, @args);
}

# how often each of @ids was received, from the receiver's list
sub counts
{
	my %n;
	$n{$_}++ for received();
	return %n;
}

# --- a clean run: each event delivered once, each ack once -----------------------------

my @ids = events(1, 3000);
my $relay = run_relay('clean', '--once', '--webhook', $url);
is(finish($relay, 60), 0, 'clean run: --once exits 0');
is(undelivered(1, 3000), '0', 'every event acknowledged');
my %n = counts();
is(join(' ', grep { ($n{$_} // 0) != 1 } @ids), '', 'every event delivered exactly once');
my $log = slurp_file("$tmp/clean.log");
like($log, qr/summary: \d+ batches, 3000 claimed, 3000 delivered, 0 failed \(0 dead\), 0 left to their lease\n\z/,
	'the summary counts 3000 delivered');
unlike($log, qr/ack of \d+ delivered events acknowledged/,
	'every ack acknowledged as many events as it named (none lost, none twice)');
cmp_ok(scalar(() = $log =~ /batch of \d+ claimed/g), '>=', 30, 'in batches');

# --- the connection cut with statements in flight ----------------------------------------

@ids = events(3001, 9000);
my @long = ('--webhook', $url, '--lease', '3', '--timeout', '1', '--poll-interval', '0.5',
	'--retry-max', '1');
my $before = scalar(my @r0 = received());
$relay = run_relay('cut', @long);
ok(wait_until(sub { scalar(my @r = received()) >= $before + 1500 }, 30), 'the relay delivers');
my $cut = $node->safe_psql('postgres', q{
SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity
 WHERE application_name = 'pipelined'});
is($cut, '1', "the relay's connection cut mid-run");
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 3001 AND 9000 AND delivered_at IS NULL},
		'0', 60),
	'after the cut: every event acknowledged');
kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: exit 0');
$log = slurp_file("$tmp/cut.log");
like($log, qr/connection lost|terminating connection/, 'the relay saw the cut');
like($log, qr/connected again/, 'and reconnected');
%n = counts();
is(join(' ', grep { !$n{$_} } @ids), '', 'none lost');
my @twice = grep { $n{$_} > 1 } @ids;
note scalar(@twice) . ' delivered twice (claimed or delivered, not acknowledged at the cut)';
cmp_ok(scalar(@twice), '<=', 600, 'at most a few windows delivered twice');

# --- kill -9 mid-run ---------------------------------------------------------------------

@ids = events(9001, 15000);
$before = scalar(@r0 = received());
$relay = run_relay('nine', @long);
ok(wait_until(sub { scalar(my @r = received()) >= $before + 1500 }, 30), 'the relay delivers');
kill 'KILL', $relay;
finish($relay, 5);
# the receiver still answers (and records) what was sent before the kill:
# wait until its list stays the same for half a second
my $last = -1;
wait_until(
	sub {
		my $now = scalar(my @r = received());
		return 1 if $now == $last;
		$last = $now;
		usleep(500_000);
		return 0;
	},
	15);
# what was acknowledged at the kill must not come again
my %acked = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	q{SELECT id FROM orderexp.outbox_state WHERE order_key::int BETWEEN 9001 AND 15000 AND delivered_at IS NOT NULL});
my %at_kill = counts();
$relay = run_relay('nine2', @long);
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 9001 AND 15000 AND delivered_at IS NULL},
		'0', 60),
	'after kill -9 and a restart: every event acknowledged');
kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: exit 0');
%n = counts();
is(join(' ', grep { !$n{$_} } @ids), '', 'none lost');
is(join(' ', grep { $acked{$_} && $n{$_} > ($at_kill{$_} // 0) } @ids), '',
	'no event acknowledged before the kill delivered again');
@twice = grep { $n{$_} > 1 } @ids;
note scalar(@twice) . ' delivered twice (delivered, not acknowledged at the kill)';
is(join(' ', grep { !($at_kill{$_}) } @twice), '',
	'only events delivered before the kill delivered twice');

# --- the server crashes mid-run ------------------------------------------------------------
# acks commit without waiting for their WAL flush: those a crash loses are
# only redeliveries after the lease; nothing may be lost

@ids = events(15001, 21000);
$before = scalar(@r0 = received());
$relay = run_relay('crash', @long);
ok(wait_until(sub { scalar(my @r = received()) >= $before + 1500 }, 30), 'the relay delivers');
$node->stop('immediate');
$node->start;
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 15001 AND 21000 AND delivered_at IS NULL},
		'0', 60),
	'after a server crash and restart: every event acknowledged');
kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: exit 0');
like(slurp_file("$tmp/crash.log"), qr/connected again/, 'the relay reconnected after the crash');
%n = counts();
is(join(' ', grep { !$n{$_} } @ids), '', 'none lost');

kill 'TERM', $rpid;
finish($rpid, 10) // kill 'KILL', $rpid;
done_testing();
