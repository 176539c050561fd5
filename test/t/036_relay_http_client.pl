
# Copyright (c) 2026, orderexp developers

# orderexp-relay's built-in HTTP/1.1 client (relay/http.c), which delivers
# webhooks to plain http:// URLs, against a receiver that answers in the
# many ways HTTP/1.1 allows (test/relay_http_odd.py, raw sockets): chunked
# bodies, bodies up to the connection's close, Connection: close, HTTP/1.0,
# interim 100 answers, answers a byte at a time, a large body, 429 with an
# HTTP date, kept-alive connections the server closes, something that is not
# HTTP, no answer, a refused connection.  The requests it sends are compared
# with libcurl's (a URL with a login goes through libcurl).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $tmp    = PostgreSQL::Test::Utils::tempdir();

my $node = new_orderexp_node('httpclient');
$node->safe_psql('postgres',
	q{CREATE EXTENSION orderexp; CREATE ROLE relay LOGIN IN ROLE orderexp_relay;});
create_orders($node, 'postgres', 'jobs', q{interval '1 hour', channels => '{hook}'});
my $conn = $node->connstr('postgres') . ' user=relay';

my $rdir = "$tmp/recv";
mkdir $rdir;
my $rport = PostgreSQL::Test::Cluster::get_free_port();
my $rpid  = spawn("$rdir.log", "$rdir.log", $python,
	"$FindBin::RealBin/../relay_http_odd.py", $rport, $rdir);
wait_until(sub { -e "$rdir/ready" }, 15)
  or die "receiver did not start: " . slurp_file("$rdir.log");
our $url = "http://127.0.0.1:$rport/hooks/orders?via=relay";

sub set_mode
{
	open my $fh, '>', "$rdir/mode" or die;
	print $fh "$_[0]\n";
	close $fh;
}

# the receiver's requests so far (decoded JSON lines), from the Nth on
sub requests
{
	my ($from) = @_;
	return () unless -e "$rdir/requests";
	my @r = map { decode_json($_) } grep { /\S/ } split /\n/, slurp_file("$rdir/requests");
	return @r[ ($from // 0) .. $#r ];
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

# "delivered/attempts/last_error" of each event of keys $from..$to, distinct
sub outcome
{
	my ($from, $to) = @_;
	return $node->safe_psql('postgres', qq{
SELECT string_agg(DISTINCT CASE WHEN delivered_at IS NULL THEN 'f' ELSE 't' END || '/' || attempts || '/' || coalesce(last_error, ''), ' + ')
  FROM orderexp.outbox_state WHERE order_key::int BETWEEN $from AND $to});
}

my $nrun = 0;

# one relay --once with the webhook URL and more options; its exit status
# and its log
sub run_once
{
	my (@args) = @_;
	my $log = "$tmp/run" . ++$nrun . '.log';
	my $pid = spawn("$tmp/run$nrun.out", $log, 'orderexp-relay', '-d', $conn,
		'--webhook', $url, '--once', @args);
	my $rc = finish($pid, 60);
	return ($rc, slurp_file($log));
}

# --- answers that deliver -------------------------------------------------------------

my $key = 0;
for my $case (
	[ 'ok',       'kept alive, Content-Length' ],
	[ 'chunked',  'a chunked body in pieces, with extensions and a trailer' ],
	[ 'close',    'Connection: close' ],
	[ 'eof',      'a body up to the connection\'s close' ],
	[ 'http10',   'HTTP/1.0' ],
	[ 'continue', '100 Continue, then 204' ],
	[ 'split',    '202 written a byte at a time' ],
	[ 'big',      'a body of 1 MB' ])
{
	my ($mode, $what) = @$case;
	set_mode($mode);
	my $seen = () = requests();
	my @ids = events($key + 1, $key + 6);
	my ($rc, $log) = run_once('-q', '--concurrency', 'webhook=2');
	is($rc, 0, "$mode: --once exits 0");
	is(outcome($key + 1, $key + 6), 't/1/', "$mode: $what: each event delivered at the first attempt");
	my @got = sort { $a <=> $b } map { my %h = map { lc($_->[0]) => $_->[1] } @{ $_->{headers} }; $h{'x-orderexp-id'} } requests($seen);
	is("@got", "@ids", "$mode: the receiver got each event once");
	$key += 6;
}

# kept-alive connections are reused: with a window of 2, the 6 requests of
# "ok" came over at most 2 connections
my @ok = grep { $_->{mode} eq 'ok' } requests();
my %conns = map { $_->{conn} => 1 } @ok;
cmp_ok(scalar(keys %conns), '<=', 2, 'ok: 6 requests over at most 2 connections (' . scalar(keys %conns) . ')');

# --- the request: as libcurl sends it -------------------------------------------------

my ($req) = grep { $_->{mode} eq 'ok' } requests();
is($req->{line}, 'POST /hooks/orders?via=relay HTTP/1.1', 'request line: POST, the path and query');
my %h = map { lc($_->[0]) => $_->[1] } @{ $req->{headers} };
is($h{host}, "127.0.0.1:$rport", 'Host');
is($h{'content-type'}, 'application/json', 'Content-Type');
is($h{'content-length'}, length($req->{body}), 'Content-Length: the body\'s');
is($h{'x-orderexp-event'}, 'cancelled', 'X-Orderexp-Event');
like($h{'webhook-id'}, qr/^msg_\d+_\d+_$h{'x-orderexp-id'}$/, 'webhook-id');
like($h{'webhook-timestamp'}, qr/^\d{10}$/, 'webhook-timestamp');
is(decode_json($req->{body})->{id}, $h{'x-orderexp-id'}, 'the body is the event');

# the same event kind through libcurl: a URL with a login is left to it
set_mode('ok');
my $seen = () = requests();
events($key + 1, $key + 1);
$key++;
{
	local $url = "http://user:pw\@127.0.0.1:$rport/hooks/orders?via=relay";
	my ($rc) = run_once('-q');
	is($rc, 0, 'libcurl: delivered');
}
my ($creq) = requests($seen);
my @builtin = map { lc $_->[0] } @{ $req->{headers} };
my @curl = grep { $_ ne 'authorization' } map { lc $_->[0] } @{ $creq->{headers} };
is("@builtin", "@curl", 'the same headers in the same order as libcurl\'s (less its Authorization)');
my %ch = map { lc($_->[0]) => $_->[1] } @{ $creq->{headers} };
is(join(',', map { $h{$_} } qw(host user-agent accept content-type x-orderexp-event)),
	join(',', map { $ch{$_} } qw(host user-agent accept content-type x-orderexp-event)),
	'with the same values');
is($creq->{line}, $req->{line}, 'and the same request line');

# with a proxy in the environment, libcurl delivers (through the proxy: the
# receiver is the proxy here, and gets the target URL in the request line)
set_mode('ok');
$seen = () = requests();
events($key + 1, $key + 1);
$key++;
{
	local $ENV{http_proxy} = "http://127.0.0.1:$rport";
	local $url = 'http://hooks.example.invalid:8080/via-proxy';
	my ($rc) = run_once('-q');
	is($rc, 0, 'http_proxy: delivered');
}
($creq) = requests($seen);
is($creq->{line}, 'POST http://hooks.example.invalid:8080/via-proxy HTTP/1.1',
	'http_proxy: through the proxy, as libcurl does');

# --- a kept-alive connection the server closed ----------------------------------------

# the second request on each connection is dropped without an answer: it is
# sent again on a new connection, not failed
set_mode('dropreused');
$seen = () = requests();
events($key + 1, $key + 4);
my ($rc, $log) = run_once('-q', '--concurrency', 'webhook=1');
is($rc, 0, 'dropped on a reused connection: --once exits 0');
is(outcome($key + 1, $key + 4), 't/1/', 'each event delivered at its first attempt');
my @dropped = grep { $_->{nreq} > 1 } requests($seen);
cmp_ok(scalar(@dropped), '>=', 1, 'the receiver did drop requests on reused connections (' . scalar(@dropped) . ')');
$key += 4;

# idle connections the server closes after 0.3 s: a relay that keeps running
# notices and opens new ones for the next events
set_mode('idleclose');
$seen = () = requests();
my $rlog = "$tmp/idle.log";
my $relay = spawn("$tmp/idle.out", $rlog, 'orderexp-relay', '-d', $conn, '--webhook', $url,
	'--concurrency', 'webhook=1', '--poll-interval', '0.2');
events($key + 1, $key + 2);
ok(wait_until(sub { outcome($key + 1, $key + 2) eq 't/1/' }, 20), 'idle close: the first events delivered');
sleep 1;
events($key + 3, $key + 4);
ok(wait_until(sub { outcome($key + 3, $key + 4) eq 't/1/' }, 20),
	'the next ones too, after the server closed the idle connection, first attempt');
kill 'TERM', $relay;
is(finish($relay, 20), 0, 'the relay stops on SIGTERM');
%conns = map { $_->{conn} => 1 } requests($seen);
cmp_ok(scalar(keys %conns), '>=', 2, 'over new connections');
unlike(slurp_file($rlog), qr/webhook: /, 'no delivery failed');
$key += 4;

# --- answers that do not deliver --------------------------------------------------------

set_mode('chunked410');
events($key + 1, $key + 2);
($rc) = run_once('-q');
is($rc, 5, '410 (chunked): --once exits 5');
is(outcome($key + 1, $key + 2), 'f/1/webhook: HTTP status 410 (permanent)', 'dead at once, with the status');
is($node->safe_psql('postgres', "SELECT count(*) FROM orderexp.dead_letters WHERE order_key::int BETWEEN $key + 1 AND $key + 2"),
	'2', 'in dead_letters');
$key += 2;

set_mode('status503');
events($key + 1, $key + 1);
($rc) = run_once('-q');
is($rc, 5, '503: --once exits 5');
is(outcome($key + 1, $key + 1), 'f/1/webhook: HTTP status 503', 'retried later, with the status');
$key++;

set_mode('garbage');
events($key + 1, $key + 1);
($rc) = run_once('-q');
is($rc, 5, 'not HTTP: --once exits 5');
is(outcome($key + 1, $key + 1), 'f/1/webhook: Weird server reply', 'as libcurl says it');
$key++;

set_mode('silent');
events($key + 1, $key + 1);
my $t0 = time();
($rc) = run_once('-q', '--timeout', '1');
is($rc, 5, 'no answer: --once exits 5');
cmp_ok(time() - $t0, '<', 10, 'after the time-out, not later');
like(outcome($key + 1, $key + 1), qr{^f/1/webhook: Operation timed out after 1\d\d\d milliseconds with 0 bytes received$},
	'timed out, as libcurl says it');
$key++;

my $closed = PostgreSQL::Test::Cluster::get_free_port();
events($key + 1, $key + 1);
{
	local $url = "http://127.0.0.1:$closed/hook";
	($rc) = run_once('-q');
}
is($rc, 5, 'refused: --once exits 5');
like(outcome($key + 1, $key + 1),
	qr{^f/1/webhook: Failed to connect to 127\.0\.0\.1 port $closed after \d+ ms: Connection refused$},
	'the reason');
$key++;

# --- 429 with Retry-After as an HTTP date ------------------------------------------------

set_mode('date429');
$seen = () = requests();
events($key + 1, $key + 3);
($rc, $log) = run_once('--concurrency', 'webhook=1');
is($rc, 0, '429 with a date: --once delivers all the same, exit 0');
like($log, qr/webhook asks to slow down: webhook pauses for [23] s/, 'pausing until that date');
my @r = requests($seen);
cmp_ok($r[1]{time} - $r[0]{time}, '>=', 1.9, sprintf('the next request %.1f s later', $r[1]{time} - $r[0]{time}));
is(outcome($key + 1, $key + 3), 't/1/', 'no attempt spent on the 429');

kill 'TERM', $rpid;
finish($rpid, 10);
done_testing();
