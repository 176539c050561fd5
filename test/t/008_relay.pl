
# Copyright (c) 2026, orderexp developers

# orderexp-relay against real servers on loopback: an SMTP server
# (test/relay_smtp.py, aiosmtpd) and a webhook receiver (test/relay_http.py)
# that can be told to answer 500.  Mails reach the recipient of the order's
# email column with the subject and body of their kind's template (the
# reminder with its extension token), webhooks carry the event's JSON and a
# valid HMAC-SHA256 signature, every event is delivered once; a failing
# sink (HTTP 500, SMTP server down, a command exiting 1 or hanging) leads to
# retries with the reason in last_error and finally to a dead row; a relay
# killed with SIGKILL mid-batch and started again loses nothing; two relays
# at once deliver each event once; SIGTERM mid-batch acknowledges what was
# delivered, leaves the rest to its lease, prints a summary and exits 0;
# bad usage or a bad config file exits 1, an unreachable server 2, a role
# without orderexp_relay 3; a missing or invalid recipient fails the event
# with a reason that names the field, and order data with a line break adds
# neither a header nor a recipient to a mail.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use FindBin;
use JSON::PP;
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $tmp    = PostgreSQL::Test::Utils::tempdir();

# the records a test server wrote into $dir ($prefix-N.json), in order
sub read_records
{
	my ($dir, $prefix) = @_;
	my @files = sort { ($a =~ /(\d+)\.json$/)[0] <=> ($b =~ /(\d+)\.json$/)[0] }
	  glob("$dir/$prefix-*.json");
	return map { decode_json(slurp_file($_)) } @files;
}

# start_server($script, $name): a test server on a free port, recording into
# $tmp/$name; returns its pid, port and directory
sub start_server
{
	my ($script, $name) = @_;
	my $dir = "$tmp/$name";
	mkdir $dir unless -d $dir;
	unlink "$dir/ready";
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $pid = spawn("$tmp/$name.log", "$tmp/$name.log", $python,
		"$FindBin::RealBin/../$script", $port, $dir);
	ok(wait_until(sub { -e "$dir/ready" }, 15), "$name server listens")
	  or diag slurp_file("$tmp/$name.log");
	return ($pid, $port, $dir);
}

sub stop_server
{
	my ($pid) = @_;
	kill 'TERM', $pid;
	finish($pid, 10) // kill 'KILL', $pid;
}

# --- the node, a login role for the relay, orders with an email column --------

my $node = new_orderexp_node('relay');
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE ROLE relay LOGIN IN ROLE orderexp_relay;
CREATE ROLE nobody LOGIN;
CREATE TABLE orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	email		text);
SELECT orderexp.set_close_policy('orders', interval '2 seconds',
	remind_before => interval '1 second', extend_by => interval '1 hour',
	max_extensions => 1, payload_columns => '{email}', channels => '{email,webhook}');
-- events of a second table go by SMS, i.e. to the exec sink below
CREATE TABLE jobs (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('jobs', interval '1 hour', channels => '{sms}');
ALTER SYSTEM SET orderexp.max_attempts = 2;
SELECT pg_reload_conf();
});
my $conn = $node->connstr('postgres') . ' user=relay';

my $relay_log = "$tmp/relay.log";
my $secret = "$tmp/secret";
open my $fh, '>', $secret or die;
print $fh "s3cret-key\n";
close $fh;
chmod 0600, $secret;    # a secret file others can read is refused

# --- usage and connection errors ------------------------------------------------

sub run_relay
{
	my (@args) = @_;
	my $pid = spawn("$tmp/once.out", "$tmp/once.err", 'orderexp-relay', @args);
	return finish($pid, 30);
}

is(run_relay('--stdout', '--route', 'kind=nonsense:stdout'), 1, 'an unknown kind in a route: exit 1');
is(run_relay('-d', $conn), 1, 'no sink: exit 1');
open $fh, '>', "$tmp/bad.conf" or die;
print $fh "stdout\nbatch-size 0\n";
close $fh;
is(run_relay('-c', "$tmp/bad.conf"), 1, 'a bad value in a config file: exit 1');
like(slurp_file("$tmp/once.err"), qr/invalid value "0" for --batch-size/, 'which says what is wrong');
open $fh, '>', "$tmp/bad.conf" or die;
print $fh "stdout\n\nwebhok http://127.0.0.1:9/\n";
close $fh;
is(run_relay('-c', "$tmp/bad.conf"), 1, 'an unknown setting in a config file: exit 1');
like(slurp_file("$tmp/once.err"), qr/bad\.conf:3: unknown setting "webhok"/, 'naming the file and line');
is(run_relay('--stdout', '--webhook', 'http://127.0.0.1:9/'), 1, 'two sinks without routes: exit 1');
is(run_relay('--smtp', 'smtp://127.0.0.1:9'), 1, '--smtp without --smtp-from: exit 1');
is(run_relay('-d', 'host=127.0.0.1 port=9 connect_timeout=2', '--stdout', '--once'),
	2, 'no node reachable: exit 2');
is(run_relay('-d', $node->connstr('postgres') . ' user=nobody', '--stdout', '--once'),
	3, 'a role without orderexp_relay: exit 3');
like(slurp_file("$tmp/once.err"), qr/permission denied for function claim.*orderexp_relay/,
	'which says what is missing');
like(`orderexp-relay --help`, qr/--webhook-secret-file.*Exit status/s, '--help documents options and exit codes');

# --- mail and webhooks ------------------------------------------------------------

my ($smtp_pid, $smtp_port, $smtp_dir) = start_server('relay_smtp.py', 'smtp');
my ($http_pid, $http_port, $http_dir) = start_server('relay_http.py', 'http');

my @relay_args = (
	'-d', $conn,
	'--smtp', "smtp://127.0.0.1:$smtp_port", '--smtp-from', 'shop@example.com',
	'--webhook', "http://127.0.0.1:$http_port/hooks/orders",
	'--webhook-secret-file', $secret,
	'--route', 'channel=email:smtp', '--route', 'channel=webhook:webhook',
	'--subject', 'reminder=Order {order_key}: please pay by {close_at} [{kind} {created_at}]',
	'--body', 'reminder=Dear {email},\npay order {order_key} or extend it: https://shop.example.com/extend?t={extension_token}\n',
	'--poll-interval', '0.2', '--timeout', '2');
my $relay = spawn("$tmp/relay.out", $relay_log, 'orderexp-relay', @relay_args);

$node->safe_psql('postgres',
	q{INSERT INTO orders (id, email) SELECT i, 'c' || i || '@example.com' FROM generate_series(1, 3) i});

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) || '/' || count(*)
		    FROM orderexp.outbox_state WHERE order_table = 'orders'::regclass},
		'12/12', 20),
	'reminders and closes of 3 orders on 2 channels: all 12 delivered');

my @mails = read_records($smtp_dir, 'msg');
is(scalar @mails, 6, 'six mails');
is( join(',', sort map { join('+', @{ $_->{rcpt_tos} }) } @mails),
	'c1@example.com,c1@example.com,c2@example.com,c2@example.com,c3@example.com,c3@example.com',
	'two mails to every customer, to the address in the order');
is(scalar(grep { $_->{mail_from} eq 'shop@example.com' } @mails), 6, 'envelope sender from --smtp-from');

my %token = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT order_key || '|' || (payload->>'extension_token') FROM orderexp.outbox_state
	   WHERE kind = 'reminder' AND channel = 'email'});
my $reminders_ok = 0;
my $closes_ok = 0;
for my $m (@mails)
{
	my ($to) = @{ $m->{rcpt_tos} };
	my ($id) = $to =~ /^c(\d+)@/;
	if ($m->{data} =~ /^X-Orderexp-Event: reminder\r?$/m)
	{
		$reminders_ok++
		  if $m->{data} =~ /^Subject: Order $id: please pay by \d{4}-\d\d-\d\dT[0-9:.]+[+-]\d\d:\d\d \[reminder \d{4}-\d\d-\d\dT[0-9:.]+[+-]\d\d:\d\d\]\r?$/m
		  && $m->{data} =~ /^To: <\Q$to\E>\r?$/m
		  && $m->{data} =~ /Dear \Q$to\E,\r?\npay order $id or extend it: https:\/\/shop\.example\.com\/extend\?t=\Q$token{$id}\E\r?\n/;
	}
	elsif ($m->{data} =~ /^X-Orderexp-Event: closed\r?$/m)
	{
		$closes_ok++
		  if $m->{data} =~ /^Subject: Order $id was closed\r?$/m
		  && $m->{data} =~ /your order $id was not paid by/;
	}
}
is($reminders_ok, 3, 'reminder mails: the subject and body templates filled in, extension token included');
is($closes_ok, 3, 'closed mails: the built-in template');

my @hooks = read_records($http_dir, 'req');
is(scalar @hooks, 6, 'six webhook requests');
is( scalar(grep {
			$_->{path} eq '/hooks/orders'
			  && $_->{headers}{'content-type'} eq 'application/json'
			  && $_->{headers}{'x-orderexp-signature'} eq 'sha256=' . hmac_sha256_hex($_->{body}, 's3cret-key')
		} @hooks),
	6, 'every webhook: JSON with a valid HMAC-SHA256 signature of its body');
my @bodies = map { decode_json($_->{body}) } @hooks;
is( join(',', sort map { "$_->{kind}:$_->{order_key}:$_->{channel}:$_->{payload}{order}{email}" } @bodies),
	'closed:1:webhook:c1@example.com,closed:2:webhook:c2@example.com,closed:3:webhook:c3@example.com,'
	  . 'reminder:1:webhook:c1@example.com,reminder:2:webhook:c2@example.com,reminder:3:webhook:c3@example.com',
	'webhook bodies: kind, order, channel and payload of each event');
my %seen;
$seen{$_->{headers}{'x-orderexp-id'}}++ for @hooks;
$seen{$_}++ for map { $_->{data} =~ /^X-Orderexp-Id: (\d+)/m ? $1 : () } @mails;
is(scalar(grep { $seen{$_} == 1 } keys %seen), 12, 'each of the 12 events delivered exactly once');

# --- failures: HTTP 500, SMTP down -> retries -> dead ------------------------------

# a failed row comes back after its back-off (10 s and more): move it forward
my $due_now = q{UPDATE orderexp.outbox SET next_attempt_at = now()
                 WHERE delivered_at IS NULL AND dead_at IS NULL AND leased_until IS NULL
                   AND last_error IS NOT NULL};

open $fh, '>', "$http_dir/status" or die;
print $fh "500\n";
close $fh;
stop_server($smtp_pid);
$node->safe_psql('postgres', q{INSERT INTO orders (id, email) VALUES (4, 'c4@example.com')});

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT string_agg(kind || ':' || channel || ':' || attempts || ':' || split_part(last_error, ':', 1), ','
		                    ORDER BY kind, channel)
		    FROM orderexp.outbox_state WHERE order_key = '4' AND order_table = 'orders'::regclass
		     AND kind = 'closed' AND dead_at IS NULL AND next_attempt_at > now() + interval '5 seconds'},
		'closed:email:1:smtp,closed:webhook:1:webhook', 20),
	'failed deliveries are reported: one attempt each, a retry scheduled seconds later');
like( $node->safe_psql('postgres',
		q{SELECT string_agg(DISTINCT last_error, ' | ') FROM orderexp.outbox_state WHERE order_key = '4' AND kind = 'closed'}),
	qr/^smtp: .*\| webhook: HTTP status 500$/, 'last_error says why: SMTP refused, HTTP 500');

# the SMTP server comes back, the webhook still fails: the mails go, the
# webhooks die after their second attempt
($smtp_pid, $smtp_port, $smtp_dir) = start_server('relay_smtp.py', 'smtp2');
# the relay knows the old port: restart it with the new one
kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: the relay exits 0');
like(slurp_file($relay_log), qr/stopping on signal.*summary: \d+ batches, \d+ claimed, 12 delivered/s,
	'and prints a summary');
$relay_args[3] = "smtp://127.0.0.1:$smtp_port";
$relay = spawn("$tmp/relay.out", $relay_log, 'orderexp-relay', @relay_args);
$node->safe_psql('postgres', $due_now);

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT string_agg(kind || ':' || channel || ':' || attempts || ':'
		                    || CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
		                            WHEN dead_at IS NOT NULL THEN 'dead' ELSE 'waiting' END, ','
		                    ORDER BY kind, channel)
		    FROM orderexp.outbox_state WHERE order_key = '4' AND order_table = 'orders'::regclass
		     AND kind = 'closed'},
		'closed:email:2:delivered,closed:webhook:2:dead', 20),
	'retried: the mail delivered once the server is back, the webhook dead after max_attempts');
# the reminders of order 4 (due a second before its close) failed or were
# not yet claimed when the order closed: from then on they are withheld,
# never sent late
is( $node->safe_psql('postgres',
		q{SELECT string_agg(channel || ':' || (obsolete_at IS NOT NULL) || ':' || (delivered_at IS NULL), ','
		                    ORDER BY channel)
		    FROM orderexp.outbox_state WHERE order_key = '4' AND order_table = 'orders'::regclass
		     AND kind = 'reminder'}),
	'email:true:true,webhook:true:true', 'the reminders of the closed order are withheld, not sent late');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM orderexp.dead_letters WHERE order_key = '4' AND last_error = 'webhook: HTTP status 500'}),
	'1', 'the dead row is in dead_letters with its last error');
is( scalar(grep { my $b = decode_json($_->{body}); $b->{order_key} eq '4' && $b->{kind} eq 'closed' }
		  read_records($http_dir, 'req')),
	2, 'the webhook saw two attempts of the close');
is(scalar(read_records($smtp_dir, 'msg')), 1, 'the close\'s mail for order 4 arrived once, no reminder');
unlink "$http_dir/status";
kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM again: exit 0');

# --- recipients: missing, invalid; order data cannot add headers ---------------------

$node->safe_psql('postgres', q{
INSERT INTO orders (id, email) VALUES (5, NULL), (6, 'not an address'), (7, 'c7@example.com');
SELECT orderexp.cancel_orders('orders', ARRAY[5, 6]);
SELECT orderexp.cancel_order('orders', 7, E'changed mind\r\nBcc: evil@example.net');});
is( run_relay('-d', $conn, '--smtp', "smtp://127.0.0.1:$smtp_port", '--smtp-from', 'shop@example.com',
		'--route', 'channel=email:smtp', '--subject', 'cancelled=Cancelled: {reason}', '--once'),
	5, 'mail with missing or invalid recipients: --once exits 5');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(order_key || ':' || coalesce(last_error, 'delivered'), ' | ' ORDER BY order_key)
		    FROM orderexp.outbox_state WHERE kind = 'cancelled' AND channel = 'email'}),
	'5:no recipient: the event has no field "email" | 6:invalid recipient address in field "email" | 7:delivered',
	'the reasons say which field is wrong');
my ($bcc) = grep { $_->{data} =~ /X-Orderexp-Event: cancelled/ } read_records($smtp_dir, 'msg');
is(join(',', @{ $bcc->{rcpt_tos} }), 'c7@example.com', 'a line break in order data adds no recipient');
like($bcc->{data}, qr/^Subject: Cancelled: changed mind  Bcc: evil\@example\.net\r?$/m,
	'and no header: it is a space in the subject');

# --- exec: exit 1, time-out --------------------------------------------------------------

$node->safe_psql('postgres', q{
INSERT INTO jobs (id) VALUES (1), (2);
SELECT orderexp.cancel_orders('jobs', ARRAY[1]);});
# the settings from a config file this time
open $fh, '>', "$tmp/relay.conf" or die;
print $fh <<"EOC";
# orderexp-relay settings
dbname $conn

exec   cat >/dev/null; echo "gateway says no" >&2; exit 1
route channel=sms:exec
once
EOC
close $fh;
is(run_relay('-c', "$tmp/relay.conf"), 5, 'exec exiting 1: --once exits 5 (not delivered)');
is( $node->safe_psql('postgres',
		q{SELECT attempts || ':' || last_error FROM orderexp.outbox_state WHERE order_table = 'jobs'::regclass}),
	'1:command exited with status 1: gateway says no', 'the exit status and the output\'s first line in last_error');
$node->safe_psql('postgres', $due_now);
my $t0 = time();
is( run_relay('-d', $conn, '--exec', 'sleep 10', '--timeout', '0.5', '--route', 'channel=sms:exec', '--once'),
	5, 'exec hanging: killed at the time-out');
cmp_ok(time() - $t0, '<', 5, 'after half a second, not ten');
is( $node->safe_psql('postgres',
		q{SELECT attempts || ':' || (dead_at IS NOT NULL) || ':' || last_error
		    FROM orderexp.outbox_state WHERE order_table = 'jobs'::regclass}),
	'2:true:command timed out after 0.5 s', 'second attempt timed out: dead');

# --- SIGKILL mid-batch, restart: nothing lost ----------------------------------------------

$node->safe_psql('postgres', q{
ALTER SYSTEM SET orderexp.max_attempts = 5;
SELECT pg_reload_conf();
INSERT INTO jobs (id) SELECT i FROM generate_series(10, 29) i;
SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series(10, 29)));});
my $sms = "$tmp/sms.jsonl";
# one command at a time: the commands append to one file, and the test
# counts on a slow, steady pace (031_relay_window.pl tests the window)
my @exec_args = ('-d', $conn, '--exec', "sleep 0.1; (cat; echo) >> $sms",
	'--route', 'channel=sms:exec', '--lease', '2', '--timeout', '1', '--poll-interval', '0.2',
	'--concurrency', 'exec=1');
my $killed = spawn("$tmp/exec.out", "$tmp/exec.log", 'orderexp-relay', @exec_args);
ok(wait_until(sub { -e $sms && (() = slurp_file($sms) =~ /\n/g) >= 3 }, 15), 'the exec relay delivers');
kill 'KILL', $killed;
finish($killed, 5);
usleep(300_000);    # the command in flight finishes on its own
my $before = () = slurp_file($sms) =~ /\n/g;
cmp_ok($before, '<', 20, "killed mid-batch after $before of 20 events");
# acks go in groups (every 50 ms): some may have gone out before the kill,
# but only of events that reached the command
my %reached;
$reached{ decode_json($_)->{order_key} }++ for grep { /\S/ } split /\n/, slurp_file($sms);
my @acked = split /,/, $node->safe_psql('postgres',
	q{SELECT string_agg(order_key, ',') FROM orderexp.outbox_state
	   WHERE order_table = 'jobs'::regclass AND order_key::int >= 10 AND delivered_at IS NOT NULL});
is(join(',', grep { !$reached{$_} } @acked), '',
	scalar(@acked) . ' acknowledged before the kill, all of them delivered');

my $again = spawn("$tmp/exec.out", "$tmp/exec.log", 'orderexp-relay', @exec_args);
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_table = 'jobs'::regclass AND order_key::int >= 10 AND delivered_at IS NOT NULL},
		'20', 20),
	'restarted: after the lease, every event is delivered');
my %sent;
$sent{ decode_json($_)->{order_key} }++ for grep { /\S/ } split /\n/, slurp_file($sms);
is(scalar(keys %sent), 20, 'nothing lost: all 20 events reached the command');
cmp_ok(scalar(grep { $sent{$_} > 1 } keys %sent), '<=', $before,
	'delivered twice at most: the events delivered but not acknowledged before the kill');

# --- SIGTERM mid-batch ---------------------------------------------------------------------

$node->safe_psql('postgres', q{
INSERT INTO jobs (id) SELECT i FROM generate_series(30, 39) i;
SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series(30, 39)));});
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_table = 'jobs'::regclass AND order_key::int >= 30
		     AND (delivered_at IS NOT NULL OR leased_until > now())},
		'10', 10),
	'a batch of 10 in hand');
usleep(250_000);
kill 'TERM', $again;
$t0 = time();
is(finish($again, 10), 0, 'SIGTERM mid-batch: exit 0');
cmp_ok(time() - $t0, '<', 2, 'at once: after the event in hand, not the whole batch');
my $log = slurp_file("$tmp/exec.log");
like($log, qr/summary: .* (\d+) left to their lease\n\z/, 'a summary on exit');
my ($left) = $log =~ / (\d+) left to their lease\n\z/;
cmp_ok($left, '>', 0, "$left events were left to their lease");
my %got;
$got{ decode_json($_)->{order_key} }++ for grep { /\S/ } split /\n/, slurp_file($sms);
my $delivered30 = join(',', sort { $a <=> $b } grep { $_ >= 30 } keys %got);
is( $node->safe_psql('postgres',
		q{SELECT string_agg(order_key, ',' ORDER BY order_key::int) FROM orderexp.outbox_state
		   WHERE order_table = 'jobs'::regclass AND order_key::int >= 30 AND delivered_at IS NOT NULL}),
	$delivered30, 'what was delivered before the stop is acknowledged, nothing else');

# --- two relays at once ----------------------------------------------------------------------

my $each = "$tmp/each";
mkdir $each;
# the events left to their lease are due now: their leases end (a row's,
# or the stream batch's that holds them)
my $expected = 60 + $node->safe_psql('postgres', q{
UPDATE orderexp.outbox SET next_attempt_at = now(), leased_until = NULL
 WHERE order_table = 'jobs'::regclass AND delivered_at IS NULL AND dead_at IS NULL AND txid IS NULL;
UPDATE orderexp.batches SET leased_until = now() WHERE finished_at IS NULL;
INSERT INTO jobs (id) SELECT i FROM generate_series(100, 159) i;
SELECT count(*) FROM orderexp.outbox_state
 WHERE order_table = 'jobs'::regclass AND delivered_at IS NULL AND dead_at IS NULL;});
# one file per delivery: EVENT-ID.PID
my @two = map {
	spawn("$tmp/two$_.out", "$tmp/two$_.log", 'orderexp-relay', '-d', $conn,
		'--exec', "sleep 0.02; cat > $each/\$ORDEREXP_EVENT_ID.\$\$", '--route', 'channel=sms:exec',
		'--batch-size', '4', '--poll-interval', '0.2')
} 1, 2;
$node->safe_psql('postgres', q{SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series(100, 159)))});
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orderexp.outbox_state WHERE order_table = 'jobs'::regclass
		   AND order_key::int >= 30 AND delivered_at IS NULL},
		'0', 30),
	'two relays: everything delivered');
kill 'TERM', @two;
is(finish($two[0], 10), 0, 'first relay exits 0');
is(finish($two[1], 10), 0, 'second relay exits 0');
my %twice;
$twice{ decode_json(slurp_file($_))->{id} }++ for glob("$each/*");
is(scalar(keys %twice), $expected, "the $expected events (those left by the stop, 60 new) reached the command");
is(scalar(grep { $twice{$_} != 1 } keys %twice), 0, 'each exactly once');
my @shares = map { slurp_file("$tmp/two$_.log") =~ /summary: .*?(\d+) delivered/ ? $1 : 0 } 1, 2;
note "shares of the two relays: @shares";
is($shares[0] + $shares[1], $expected, 'the summaries add up');

stop_server($smtp_pid);
stop_server($http_pid);
$node->stop;
done_testing();
