
# Copyright (c) 2026, orderexp developers

# orderexp-relay's window: many webhook deliveries in flight at once
# (--concurrency), a rate limit (--rate), HTTP 429 with Retry-After,
# permanent failures, and what happens to the events in flight when the
# receiver dies, the relay is stopped or killed, or two relays share the
# work.  The receiver (test/relay_window_http.py) answers after a delay and
# counts the requests in progress.

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

my $node = new_orderexp_node('window');
$node->safe_psql('postgres',
	q{CREATE EXTENSION orderexp; CREATE ROLE relay LOGIN IN ROLE orderexp_relay;});
create_orders($node, 'postgres', 'jobs', q{interval '1 hour', channels => '{hook}'});
my $conn = $node->connstr('postgres') . ' user=relay';

# a receiver on a free port ($port: again on that port); its pid, port, dir
my $nservers = 0;
sub start_receiver
{
	my ($delay, $port) = @_;
	my $dir = "$tmp/recv" . ++$nservers;
	mkdir $dir;
	$port //= PostgreSQL::Test::Cluster::get_free_port();
	if (defined $delay)
	{
		open my $fh, '>', "$dir/delay" or die;
		print $fh "$delay\n";
		close $fh;
	}
	my $pid = spawn("$dir.log", "$dir.log", $python,
		"$FindBin::RealBin/../relay_window_http.py", $port, $dir);
	wait_until(sub { -e "$dir/ready" }, 15)
	  or die "receiver did not start: " . slurp_file("$dir.log");
	return ($pid, $port, $dir);
}

sub stop_receiver
{
	my ($pid) = @_;
	kill 'TERM', $pid;
	finish($pid, 10) // kill 'KILL', $pid;
}

# the event ids the receiver answered 200 to (a list, in order)
sub received
{
	my ($dir, $file) = @_;
	$file //= 'ids';
	return () unless -e "$dir/$file";
	return map { (split / /)[0] } grep { /\S/ } split /\n/, slurp_file("$dir/$file");
}

# events for order keys $from..$to: cancelled orders; returns their ids
sub events
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
INSERT INTO jobs (id) SELECT generate_series($from, $to);
SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series($from, $to)));});
	return split /\n/, $node->safe_psql('postgres',
		"SELECT id FROM orderexp.outbox_state WHERE order_key::int BETWEEN $from AND $to ORDER BY id");
}

sub delivered
{
	my ($from, $to) = @_;
	return $node->safe_psql('postgres', qq{
SELECT count(*) FROM orderexp.outbox_state
 WHERE order_key::int BETWEEN $from AND $to AND delivered_at IS NOT NULL});
}

# no id twice, and every id of @want there: '' when so, else what is wrong
sub once_each
{
	my ($got, $want) = @_;
	my %n;
	$n{$_}++ for @$got;
	my @twice   = grep { $n{$_} > 1 } sort keys %n;
	my @missing = grep { !$n{$_} } @$want;
	return (@twice ? "twice: @twice " : '') . (@missing ? "missing: @missing" : '');
}

sub run_relay
{
	my ($name, @args) = @_;
	return spawn("$tmp/$name.out", "$tmp/$name.log", 'orderexp-relay', '-d', $conn, @args);
}

# --- bad values ------------------------------------------------------------------------

for my $bad (['--concurrency', 'webhook=0'], ['--concurrency', 'fax=3'],
	['--concurrency', 'webhook'], ['--rate', 'webhook=5'], ['--rate', 'webhook=0/s'])
{
	my $pid = run_relay('bad', '--webhook', 'http://127.0.0.1:1/', @$bad);
	is(finish($pid, 10), 1, "@$bad: exit 1");
}
like(slurp_file("$tmp/bad.log"), qr/invalid value "webhook=5" for --rate: SINK=N\/s/,
	'the message says what is expected');
my $pid = run_relay('long', '--webhook', 'http://127.0.0.1:1/', '--once', '--lease', '7200');
is(finish($pid, 10), 3, '--lease above orderexp.max_lease: exit 3');
like(slurp_file("$tmp/long.log"), qr/claim refused: .*max_lease/, 'saying so');

# --- the window: 300 events, a receiver that takes 100 ms --------------------------------

my ($rpid, $rport, $rdir) = start_receiver(0.1);
my $url = "http://127.0.0.1:$rport/hook";
my @ids = events(1, 300);
my $t0 = time();
my $relay = run_relay('window', '--webhook', $url, '--once', '-q', '--concurrency', 'webhook=16');
is(finish($relay, 60), 0, 'window of 16: --once delivers 300 events');
my $took = time() - $t0;
cmp_ok($took, '<', 10, sprintf('in %.1f s, where one at a time takes 30 s', $took));
my $max = slurp_file("$rdir/max") + 0;
cmp_ok($max, '>', 1, "the receiver saw $max requests at once");
cmp_ok($max, '<=', 16, 'never more than the window');
my $conns = slurp_file("$rdir/connections") + 0;
cmp_ok($conns, '<=', 16, "over $conns kept-alive connections, one request after another on each");
is(once_each([ received($rdir) ], \@ids), '', 'each event reached the receiver once');
is(delivered(1, 300), '300', 'and every one is acknowledged');

# with the defaults (webhook 64): 1,000 events, the rate reported
@ids = events(1001, 2000);
$t0 = time();
$relay = run_relay('default', '--webhook', $url, '--once', '-q');
is(finish($relay, 60), 0, 'defaults: --once delivers 1,000 events');
$took = time() - $t0;
note sprintf('1,000 events to a 100 ms receiver with the default window: %.2f s, %.0f events/s',
	$took, 1000 / $took);
cmp_ok(1000 / $took, '>', 200, sprintf('%.0f events/s', 1000 / $took));
stop_receiver($rpid);

# --- the lease rule: no delivery runs past its event's lease -----------------------------

# --lease 2 (a margin of 0.1 s), one at a time, 1 s a request: the first is
# delivered at 1 s, the second starts with 0.9 s left and is cut off at the
# deadline, the others are not started (less than 0.5 s left)
($rpid, $rport, $rdir) = start_receiver(1.0);
$url = "http://127.0.0.1:$rport/hook";
@ids = events(2101, 2105);
$relay = run_relay('lease', '--webhook', $url, '--once', '--concurrency', 'webhook=1',
	'--lease', '2', '--timeout', '1.5');
is(finish($relay, 30), 5, 'a short lease: --once exits 5');
is(join(' ', received($rdir)), $ids[0], 'the first event delivered');
my ($cut) = $node->safe_psql('postgres', "SELECT last_error FROM orderexp.outbox_state WHERE id = $ids[1]")
  =~ /^webhook: Operation timed out after (\d+) milliseconds/;
cmp_ok($cut // 9999, '<', 1000, "the second cut off after ${\($cut // '?')} ms, before its lease ran out, not after --timeout");
like(slurp_file("$tmp/lease.log"), qr/summary: .* 3 left to their lease\n\z/,
	'the other three not started: left to their lease');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM orderexp.outbox_state WHERE id IN ($ids[2], $ids[3], $ids[4]) AND attempts = 1 AND leased_until > now() - interval '1 s' AND last_error IS NULL"),
	'3', 'still leased, untouched');
# the one cut off is retried after its back-off (8-12 s), which may come in
# the middle of the sections below and add it to their deliveries: later
$node->safe_psql('postgres',
	"UPDATE orderexp.outbox SET next_attempt_at = now() + interval '1 hour' WHERE id = $ids[1] AND txid IS NULL");
stop_receiver($rpid);

# --- 429 Retry-After: the sink pauses, the event waits in the relay -----------------------

($rpid, $rport, $rdir) = start_receiver(0);
$url = "http://127.0.0.1:$rport/hook";
open my $fh, '>', "$rdir/throttle" or die;
print $fh "2 1\n";    # the next 2 requests: 429, Retry-After: 1
close $fh;
@ids = events(3001, 3004);
$t0 = time();
$relay = run_relay('throttle', '--webhook', $url, '--once', '--concurrency', 'webhook=1');
is(finish($relay, 30), 0, '429 twice: --once delivers all the same, exit 0');
$took = time() - $t0;
cmp_ok($took, '>=', 1.9, sprintf('after two pauses of 1 s (%.1f s)', $took));
is(scalar(my @thr = received($rdir, 'throttled')), 2, 'the receiver answered 429 twice');
is(once_each([ received($rdir) ], \@ids), '', 'then took each event once');
is($node->safe_psql('postgres',
		q{SELECT string_agg(DISTINCT attempts::text, ',') FROM orderexp.outbox_state WHERE order_key::int BETWEEN 3001 AND 3004}),
	'1', 'no attempt spent on the 429s');
like(slurp_file("$tmp/throttle.log"), qr/webhook asks to slow down: webhook pauses for 1 s/,
	'the pause is logged');

# --- permanent failures: 410 is dead at once, 503 is retried ------------------------------

open $fh, '>', "$rdir/status" or die;
print $fh "410\n";
close $fh;
my ($gone) = events(3101, 3101);
$relay = run_relay('gone', '--webhook', $url, '--once', '-q');
is(finish($relay, 30), 5, '410: --once exits 5');
is($node->safe_psql('postgres', "SELECT attempts || ':' || last_error FROM orderexp.dead_letters WHERE id = $gone"),
	'1:webhook: HTTP status 410 (permanent)', 'dead at once, after one attempt, with the reason');
# a database with orderexp 1.2, whose fail() has no retryable argument: the
# relay falls back to fail(id, error), and the event is retried
$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('old', q{
CREATE EXTENSION orderexp VERSION '1.2';
CREATE TABLE jobs (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
	created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('jobs', interval '1 hour', channels => '{hook}');
INSERT INTO jobs VALUES (1);
SELECT orderexp.cancel_orders('jobs', ARRAY[1]);});
$relay = spawn("$tmp/old.out", "$tmp/old.log", 'orderexp-relay', '-d',
	$node->connstr('old') . ' user=relay', '--webhook', $url, '--once', '-q');
is(finish($relay, 30), 5, 'orderexp 1.2, 410: --once exits 5');
is($node->safe_psql('old',
		q{SELECT attempts || ':' || (dead_at IS NULL) || ':' || (next_attempt_at > now()) || ':' || last_error FROM orderexp.outbox}),
	'1:true:true:webhook: HTTP status 410 (permanent)', 'reported with fail(id, error): retried later');

open $fh, '>', "$rdir/status" or die;
print $fh "503\n";
close $fh;
my ($busy) = events(3102, 3102);
$relay = run_relay('busy', '--webhook', $url, '--once', '-q');
is(finish($relay, 30), 5, '503: --once exits 5');
is($node->safe_psql('postgres',
		"SELECT (dead_at IS NULL) || ':' || (next_attempt_at > now()) || ':' || last_error FROM orderexp.outbox_state WHERE id = $busy"),
	'true:true:webhook: HTTP status 503', 'not dead: a retry is scheduled');
unlink "$rdir/status";
stop_receiver($rpid);

# --- SMTP: a window of 4, and 550 (no such user) is permanent ----------------------------

$node->safe_psql('postgres', q{
CREATE TABLE mails (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	email		text);
SELECT orderexp.set_close_policy('mails', interval '1 hour', payload_columns => '{email}',
	channels => '{email}');
INSERT INTO mails (id, email) SELECT i, 'c' || i || '@example.com' FROM generate_series(1, 20) i;
INSERT INTO mails VALUES (21, 'unpaid', now(), 'nobody@example.com');
SELECT orderexp.cancel_orders('mails', ARRAY(SELECT generate_series(1, 21)));});
my $smtp_dir = "$tmp/smtp";
mkdir $smtp_dir;
my $smtp_port = PostgreSQL::Test::Cluster::get_free_port();
my $smtp_pid = spawn("$tmp/smtp.log", "$tmp/smtp.log", $python,
	"$FindBin::RealBin/../relay_smtp.py", $smtp_port, $smtp_dir);
ok(wait_until(sub { -e "$smtp_dir/ready" }, 15), 'the SMTP server listens');
$relay = run_relay('smtp', '--smtp', "smtp://127.0.0.1:$smtp_port", '--smtp-from', 'shop@example.com',
	'--once', '-q');
is(finish($relay, 30), 5, 'SMTP: --once exits 5 (one refused)');
is(scalar(my @mails = glob("$smtp_dir/msg-*.json")), 20, '20 mails accepted');
is($node->safe_psql('postgres',
		q{SELECT attempts || ':' || last_error FROM orderexp.dead_letters WHERE order_table = 'mails'::regclass}),
	'1:smtp: RCPT failed: 550 (server said 550, permanent)', '550: dead at once, after one attempt');
kill 'TERM', $smtp_pid;
finish($smtp_pid, 10);

# --- SMS: a window of 16 requests to the provider, 429 pauses the sink ------------------

$node->safe_psql('postgres', q{
CREATE TABLE texts (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	phone		text);
SELECT orderexp.set_close_policy('texts', interval '1 hour', payload_columns => '{phone}',
	channels => '{sms}');
INSERT INTO texts (id, phone) SELECT i, '+4917012345' || lpad(i::text, 3, '0') FROM generate_series(1, 48) i;
SELECT orderexp.cancel_orders('texts', ARRAY(SELECT generate_series(1, 48)));});
my @texts = split /\n/, $node->safe_psql('postgres',
	q{SELECT id FROM orderexp.outbox_state WHERE order_table = 'texts'::regclass ORDER BY id});
($rpid, $rport, $rdir) = start_receiver(0.1);
open $fh, '>', "$rdir/throttle" or die;
print $fh "1 1\n";    # the first request: 429, Retry-After: 1
close $fh;
$relay = run_relay('sms', '--sms', "http://127.0.0.1:$rport/send", '--sms-provider', 'template',
	'--sms-from', 'Shop', '--sms-body-template', '{"id":"{id}","to":"{sms.to}","text":"{sms.text}"}',
	'--once', '-q', '--concurrency', 'sms=16');
is(finish($relay, 30), 0, 'SMS: --once delivers 48 events, one after a 429');
$max = slurp_file("$rdir/max") + 0;
cmp_ok($max, '>', 1, "the provider saw $max requests at once");
cmp_ok($max, '<=', 16, 'never more than the window');
is(once_each([ received($rdir) ], \@texts), '', 'each text sent once');
is($node->safe_psql('postgres',
		q{SELECT max(attempts) FROM orderexp.outbox_state WHERE order_table = 'texts'::regclass}),
	'1', 'the 429 spent no attempt');
like(slurp_file("$tmp/sms.log"), qr/sms asks to slow down: sms pauses for 1 s/, 'the SMS sink paused');
stop_receiver($rpid);

# --- exec: a window of 8 commands, exit status 65 is permanent ---------------------------

my $cmds = "$tmp/cmds";
mkdir $cmds;
@ids = events(3201, 3216);
$t0 = time();
$relay = run_relay('exec', '--exec', "sleep 0.5; cat > $cmds/\$ORDEREXP_EVENT_ID", '--once', '-q',
	'--concurrency', 'exec=8');
is(finish($relay, 30), 0, 'exec: --once delivers 16 events');
$took = time() - $t0;
cmp_ok($took, '<', 3, sprintf('8 commands at once: %.1f s, where one at a time takes 8 s', $took));
is(scalar(my @files = glob("$cmds/*")), 16, 'each command got its event');
my ($bad) = events(3217, 3217);
$relay = run_relay('exec65', '--exec', 'cat >/dev/null; echo "not a phone number"; exit 65', '--once', '-q');
is(finish($relay, 30), 5, 'exec exiting 65: --once exits 5');
is($node->safe_psql('postgres', "SELECT attempts || ':' || last_error FROM orderexp.dead_letters WHERE id = $bad"),
	'1:command exited with status 65 (permanent): not a phone number', 'dead at once');

# --- the receiver dies mid-window, and comes back ----------------------------------------

($rpid, $rport, $rdir) = start_receiver(0.1);
$url = "http://127.0.0.1:$rport/hook";
my @long = ('--webhook', $url, '--concurrency', 'webhook=16', '--lease', '3', '--timeout', '1',
	'--poll-interval', '0.2');
@ids = events(4001, 4200);
$relay = run_relay('dies', @long);
ok(wait_until(sub { scalar(my @r = received($rdir)) >= 40 }, 20), 'the relay delivers');
kill 'KILL', $rpid;
finish($rpid, 5);
my @before = received($rdir);
note scalar(@before) . ' events delivered before the receiver died';
usleep(1_500_000);    # deliveries fail: refused connections
my ($rpid2, undef, $rdir2) = start_receiver(0.01, $rport);
# the failed ones are due after a back-off of 8-12 s: make it now
ok($node->safe_psql('postgres', q{
UPDATE orderexp.outbox SET next_attempt_at = now()
 WHERE order_key::int BETWEEN 4001 AND 4200 AND delivered_at IS NULL AND leased_until IS NULL
   AND last_error LIKE 'webhook: %' RETURNING id}) ne '', 'some deliveries failed while the receiver was away');
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 4001 AND 4200 AND delivered_at IS NULL},
		'0', 40),
	'the receiver is back: every event delivered');
my %seen;
$seen{$_}++ for @before, received($rdir2);
is(join(' ', grep { !$seen{$_} } @ids), '', 'none lost');
kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: exit 0');
stop_receiver($rpid2);

# --- SIGTERM mid-window: what was delivered is acknowledged, the rest left ----------------

($rpid, $rport, $rdir) = start_receiver(0.1);
$url = "http://127.0.0.1:$rport/hook";
$long[1] = $url;
@ids = events(5001, 5200);
$relay = run_relay('term', @long);
ok(wait_until(sub { scalar(my @r = received($rdir)) >= 40 }, 20), 'the relay delivers');
kill 'TERM', $relay;
$t0 = time();
is(finish($relay, 15), 0, 'SIGTERM mid-window: exit 0');
cmp_ok(time() - $t0, '<', 1.5, 'at once: after the deliveries in flight (100 ms)');
my @got = received($rdir);
# this section's events, and any an earlier section left to its lease that
# this relay took up and delivered too
my $acked = $node->safe_psql('postgres',
	"SELECT string_agg(id::text, ' ' ORDER BY id) FROM orderexp.outbox_state
	  WHERE (order_key::int BETWEEN 5001 AND 5200 OR id = ANY ('{" . join(',', @got) . "}'::bigint[]))
	    AND delivered_at IS NOT NULL");
is($acked, join(' ', sort { $a <=> $b } @got), scalar(@got) . ' delivered, the same acknowledged');
like(slurp_file("$tmp/term.log"), qr/summary: .* ([1-9]\d*) left to their lease\n\z/, 'the rest left to its lease');
$relay = run_relay('term2', @long);
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 5001 AND 5200 AND delivered_at IS NULL},
		'0', 30),
	'restarted: the rest delivered after the lease');
is(once_each([ received($rdir) ], \@ids), '', 'each event once: nothing lost, nothing twice');
kill 'TERM', $relay;
finish($relay, 15);

# --- kill -9 mid-window: everything comes back after its lease ---------------------------

@ids = events(6001, 6200);
$relay = run_relay('nine', @long);
my $n0 = scalar(my @r0 = received($rdir));
ok(wait_until(sub { scalar(my @r = received($rdir)) >= $n0 + 40 }, 20), 'the relay delivers');
kill 'KILL', $relay;
finish($relay, 5);
$relay = run_relay('nine2', @long);
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 6001 AND 6200 AND delivered_at IS NULL},
		'0', 30),
	'after kill -9 and a restart: every event delivered');
my %got6;
$got6{$_}++ for received($rdir);
is(join(' ', grep { !$got6{$_} } @ids), '', 'none lost');
note scalar(grep { $got6{$_} > 1 } @ids) . ' delivered twice (delivered, not acknowledged at the kill)';
kill 'TERM', $relay;
finish($relay, 15);
stop_receiver($rpid);

# --- two relays, one database: each event once -------------------------------------------

($rpid, $rport, $rdir) = start_receiver(0.02);
$url = "http://127.0.0.1:$rport/hook";
@ids = events(7001, 7400);
my @two = map {
	run_relay("two$_", '--webhook', $url, '--concurrency', 'webhook=16', '--batch-size', '20',
		'--poll-interval', '0.2')
} 1, 2;
ok(defined wait_for($node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_key::int BETWEEN 7001 AND 7400 AND delivered_at IS NULL},
		'0', 30),
	'two relays: 400 events delivered');
kill 'TERM', @two;
is(finish($two[0], 15), 0, 'first relay exits 0');
is(finish($two[1], 15), 0, 'second relay exits 0');
is(once_each([ received($rdir) ], \@ids), '', 'each event reached the receiver exactly once');
my @share = map { (slurp_file("$tmp/two$_.log") =~ /summary: \d+ batches, \d+ claimed, (\d+) delivered/)[0] } 1, 2;
note "delivered by each relay: @share";
cmp_ok($share[0] * $share[1], '>', 0, 'both relays delivered some');

# --- --rate webhook=5/s: 30 events in about 6 s ------------------------------------------

unlink "$rdir/delay";
@ids = events(8001, 8030);
$t0 = time();
$relay = run_relay('rate', '--webhook', $url, '--once', '-q', '--rate', 'webhook=5/s');
is(finish($relay, 30), 0, '--rate webhook=5/s: --once delivers 30 events');
$took = time() - $t0;
cmp_ok(abs($took - 6), '<=', 0.6, sprintf('in %.2f s (6 s expected)', $took));
my @times = map { (split / /)[1] } grep { /\S/ } split /\n/, slurp_file("$rdir/ids");
@times = @times[-30 .. -1];
my $most = 0;
for my $i (0 .. $#times)
{
	my $n = grep { $_ >= $times[$i] && $_ < $times[$i] + 1 } @times;
	$most = $n if $n > $most;
}
cmp_ok($most, '<=', 6, "at most 5 a second, and the burst of 1 ($most in the busiest second)");
# this phase's events among all received: an event of an earlier phase left to
# its lease (a relay killed above) may come due now and arrive in between
my %phase = map { $_ => 1 } @ids;
is(once_each([ grep { $phase{$_} } received($rdir) ], \@ids), '', 'nothing twice, nothing missing');
stop_receiver($rpid);

$node->stop;
done_testing();
