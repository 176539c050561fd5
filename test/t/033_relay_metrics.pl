
# Copyright (c) 2026, orderexp developers

# orderexp-relay for operators: --metrics-listen serves Prometheus metrics
# and a health check, --log-format json writes JSON lines, and the relay
# tells systemd (NOTIFY_SOCKET) when it is ready and when it stops.
#
# The relay delivers through an exec sink whose command can be told to
# fail (with a message that needs escaping) or to take its time.  After N
# events the counters say N delivered and the histogram counts N; a
# failure, its retry and the dead row that follows are counted; a slow
# delivery shows as one in flight and as the age of the oldest claimed
# event, both back to 0 when it is done.  Every scrape passes a check of
# the text exposition format (and promtool's, where installed), the node's
# database name with a quote and a backslash comes out escaped, /healthz
# says 503 while the server is stopped and 200 again once it is back,
# other paths are 404 and other methods 405; bad --metrics-listen and
# --log-format values and a port in use stop the relay with exit 1 (the
# relay's status for bad usage); every log line, even one with bytes that
# are not UTF-8, parses as JSON.

use strict;
use warnings;

use FindBin;
use HTTP::Tiny;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP;
use Socket qw(SOCK_DGRAM);
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $cmd_dir = "$tmp/cmd";    # the command's fail and delay files
mkdir $cmd_dir;

# --- the exposition format ------------------------------------------------------

# check_exposition($text): what is wrong with $text as Prometheus text
# format 0.0.4, '' when nothing; and the samples, { 'name{labels}' => value }
sub check_exposition
{
	my ($text) = @_;
	my (@problems, %help, %type, %samples, @order);
	my $name_re  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
	my $value_re = qr/(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)/;
	my $label_re = qr/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"/;
	my %bucket_last;

	push @problems, 'no final line feed' unless $text =~ /\n\z/;
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^# HELP ($name_re) (.*)$/)
		{
			push @problems, "second HELP for $1" if $help{$1}++;
			push @order, $1;
		}
		elsif ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/)
		{
			push @problems, "second TYPE for $1" if $type{$1};
			push @problems, "TYPE of $1 after its samples"
			  if grep { /^\Q$1\E(_bucket|_sum|_count)?\{/ } keys %samples;
			$type{$1} = $2;
		}
		elsif ($line =~ /^#/)
		{
			push @problems, "bad comment line: $line";
		}
		elsif ($line =~ /^($name_re)(\{(?:$label_re(?:,$label_re)*)?\})? ($value_re)$/)
		{
			my ($name, $labels, $value) = ($1, $2 // '', $3);
			my $family = $name;
			$family =~ s/_(bucket|sum|count)$//
			  unless defined $type{$name};
			push @problems, "$name: no HELP" unless $help{$family};
			push @problems, "$name: no TYPE" unless $type{$family};
			push @problems, "$name: not in its family's block"
			  unless @order && $order[-1] eq $family;
			push @problems, "counter $name does not end in _total"
			  if ($type{$family} // '') eq 'counter' && $name !~ /_total$/;
			push @problems, "second sample $name$labels"
			  if exists $samples{"$name$labels"};
			$samples{"$name$labels"} = $value;
			if ($name =~ /_bucket$/)
			{
				my ($le) = $labels =~ /le="([^"]*)"/;
				(my $series = $labels) =~ s/,?le="[^"]*"//;
				push @problems, "$name$labels: no le" unless defined $le;
				my $last = $bucket_last{"$name$series"};
				push @problems, "$name$labels: buckets not cumulative or not in order"
				  if $last && ($value < $last->[1] || ($le ne '+Inf' && $le <= $last->[0]));
				$bucket_last{"$name$series"} = [ $le eq '+Inf' ? 9**9**9 : $le, $value ];
			}
		}
		else
		{
			push @problems, "not a sample: $line";
		}
	}
	for my $series (keys %bucket_last)
	{
		(my $count = $series) =~ s/_bucket/_count/;
		push @problems, "$series: +Inf bucket is not _count"
		  unless $bucket_last{$series}[0] == 9**9**9
		  && defined $samples{$count}
		  && $samples{$count} == $bucket_last{$series}[1];
	}
	return (join("\n", @problems), \%samples);
}

# the check can fail: broken texts are caught
like((check_exposition(qq{# HELP a x\n# TYPE a counter\na_total{n="1} 1\n}))[0],
	qr/not a sample/, 'format check: an unterminated label value is caught');
like((check_exposition(qq{b_total 1\n}))[0], qr/no HELP/, 'format check: a sample without HELP is caught');
like(
	(check_exposition(
		qq{# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n}))[0],
	qr/not cumulative/, 'format check: a bucket below the one before is caught');

# --- the node: a database whose name needs escaping, events by "SMS" --------------

my $node = new_orderexp_node('metrics');
my $dbname = q{met"rics\db};
$node->safe_psql('postgres', q{CREATE DATABASE "met""rics\db";});
$node->safe_psql($dbname,
	q{CREATE EXTENSION orderexp; CREATE ROLE relay LOGIN IN ROLE orderexp_relay;});
create_orders($node, $dbname, 'jobs', q{interval '1 hour', channels => '{sms}'});
$node->safe_psql(
	$dbname, q{
ALTER SYSTEM SET orderexp.max_attempts = 2;
SELECT pg_reload_conf();
});
my $conn = $node->connstr($dbname) . ' user=relay';

# cancelled orders $from..$to: one event each
sub events
{
	my ($from, $to) = @_;
	$node->safe_psql($dbname, qq{
INSERT INTO jobs (id) SELECT generate_series($from, $to);
SELECT orderexp.cancel_orders('jobs', ARRAY(SELECT generate_series($from, $to)));});
}

# --- bad usage ------------------------------------------------------------------

sub run_relay
{
	my (@args) = @_;
	unlink "$tmp/bad.err";
	my $pid = spawn("$tmp/bad.out", "$tmp/bad.err", 'orderexp-relay', @args);
	return finish($pid, 30);
}

for my $bad ('127.0.0.1', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:65536', '::1:9464', 'localhost:http')
{
	is(run_relay('-d', $conn, '--stdout', '--metrics-listen', $bad), 1,
		"--metrics-listen $bad: exit 1");
	like(slurp_file("$tmp/bad.err"), qr/invalid value "\Q$bad\E" for --metrics-listen: \S/,
		'which says what is wrong');
}
open my $fh, '>', "$tmp/bad.conf" or die;
print $fh "stdout\nmetrics-listen 127.0.0.1\n";
close $fh;
chmod 0600, "$tmp/bad.conf";
is(run_relay('-d', $conn, '-c', "$tmp/bad.conf"), 1, 'metrics-listen in a config file is checked too');
is(run_relay('-d', $conn, '--stdout', '--log-format', 'xml'), 1, '--log-format xml: exit 1');
like(slurp_file("$tmp/bad.err"), qr/invalid value "xml" for --log-format: text or json expected/,
	'which says what is expected');

my $busy = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
  or die "listen: $!";
is(run_relay('-d', $conn, '--stdout', '--metrics-listen', '127.0.0.1:' . $busy->sockport), 1,
	'a port in use: exit 1');
like(slurp_file("$tmp/bad.err"), qr/could not listen on 127\.0\.0\.1:\d+ \(--metrics-listen\): Address already in use/,
	'with the reason');
close $busy;
like(`orderexp-relay --help`, qr/--log-format=FORMAT .*--metrics-listen=ADDR:PORT /s, '--help shows the options')
  or diag `orderexp-relay --help`;

# --- a relay with metrics, JSON logs and a notify socket ----------------------------------

my $notify_path = "/tmp/ox-relay-notify-$$.sock";    # short: sun_path has 108 bytes
unlink $notify_path;
my $notify = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $notify_path)
  or die "notify socket: $!";
$notify->blocking(0);
END { unlink $notify_path if $notify_path; }

# what the relay told the service manager so far
my $notified = '';
sub notified
{
	my $msg;
	$notified .= "$msg\n" while defined $notify->recv($msg, 4096) && length $msg;
	return $notified;
}

my $mport = PostgreSQL::Test::Cluster::get_free_port();
my $base = "http://127.0.0.1:$mport";
my $http = HTTP::Tiny->new(timeout => 5);
my $log = "$tmp/relay.log";
$ENV{NOTIFY_SOCKET} = $notify_path;
my $relay = spawn(
	"$tmp/relay.out", $log, 'orderexp-relay',
	'-d', $conn,
	'--exec', qq{cat >/dev/null; d='$cmd_dir'; }
	  . q{[ -f "$d/delay" ] && sleep "$(cat "$d/delay")"; }
	  . q{if [ -f "$d/fail" ]; then cat "$d/fail"; exit 1; fi},
	'--metrics-listen', "127.0.0.1:$mport", '--log-format', 'json', '-v',
	'--poll-interval', '0.2', '--timeout', '5', '--lease', '10', '--retry-max', '1');
delete $ENV{NOTIFY_SOCKET};

# scrape(): /metrics, checked; the samples
my $scrapes = 0;
my $format_problems = '';
sub scrape
{
	my $res = $http->get("$base/metrics");
	die "GET /metrics: $res->{status} $res->{content}" unless $res->{status} == 200;
	my ($problems, $samples) = check_exposition($res->{content});
	$format_problems .= $problems;
	$scrapes++;
	# the last scrape, or the first with a problem, for promtool and diag
	if (!$format_problems || $problems)
	{
		open my $out, '>', "$tmp/metrics.txt" or die;
		print $out $res->{content};
		close $out;
	}
	return $samples;
}

sub sample
{
	my ($samples, $series) = @_;
	return $samples->{"orderexp_relay_$series"} // 'missing';
}

ok(wait_until(sub { notified() =~ /READY=1/ }, 20), 'the relay says READY=1 to the service manager')
  or diag slurp_file($log);
my $res = $http->get("$base/healthz");
is("$res->{status} $res->{content}", "200 ok: 1 of 1 nodes connected\n", '/healthz: 200 with a node up');
like($res->{headers}{'content-type'}, qr{^text/plain}, 'as text');

my $m = scrape();
is(sample($m, 'node_up{node="1"}'), 1, 'node_up 1');
like(join("\n", grep { /^orderexp_relay_node_info/ } keys %$m),
	qr/^orderexp_relay_node_info\{node="1",address="met\\"rics\\\\db\@[^"]*:\d+"\}$/,
	'the node\'s address with its quote and backslash escaped');
is(sample($m, 'delivered_total{node="1",sink="exec"}'), 0, 'the counters are there from the start, at 0');
is(sample($m, 'delivery_duration_seconds_count{sink="exec"}'), 0, 'and the histogram');
ok((grep { /^orderexp_relay_build_info\{version="[\d.]+",libpq="\d+",libcurl="[^"]+",libmicrohttpd="[^"]+"\}$/ } keys %$m),
	'build info');

# N events, all delivered
my $n = 20;
events(1, $n);
my $delivered = q{SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) FROM orderexp.outbox_state};
ok(defined wait_for($node, $dbname, $delivered, $n, 20), "$n events delivered");
ok(wait_until(sub { sample(scrape(), 'delivered_total{node="1",sink="exec"}') == $n }, 5),
	"delivered_total = $n");
$m = scrape();
is(sample($m, 'claimed_total{node="1"}'), $n, "claimed_total = $n");
is(sample($m, 'delivery_duration_seconds_count{sink="exec"}'), $n, "histogram count = $n");
is(sample($m, 'delivery_duration_seconds_bucket{sink="exec",le="+Inf"}'), $n, "+Inf bucket = $n");
ok(sample($m, 'delivery_duration_seconds_sum{sink="exec"}') > 0, 'a sum of times above 0');
is(sample($m, 'failed_total{node="1",sink="exec"}') . ' ' . sample($m, 'dead_total{node="1",sink="exec"}')
	  . ' ' . sample($m, 'retried_total{node="1",sink="exec"}'),
	'0 0 0', 'no failure, no dead row, no retry');

# a failure, with a reason that needs escaping in JSON; then its retry fails
# too and the row is dead (orderexp.max_attempts = 2)
open $fh, '>', "$cmd_dir/fail" or die;
print $fh qq{gateway says "no" \\ \t caf\xc3\xa9\n};
close $fh;
events(21, 21);
ok( defined wait_for($node, $dbname,
		q{SELECT attempts = 1 AND last_error IS NOT NULL FROM orderexp.outbox_state WHERE order_key = '21'},
		't', 20),
	'a failing delivery is reported');
ok(wait_until(sub { sample(scrape(), 'failed_total{node="1",sink="exec"}') == 1 }, 5),
	'failed_total = 1');
$node->safe_psql($dbname, q{UPDATE orderexp.outbox SET next_attempt_at = now() WHERE order_key = '21'});
ok( defined wait_for($node, $dbname,
		q{SELECT dead_at IS NOT NULL FROM orderexp.outbox_state WHERE order_key = '21'}, 't', 20),
	'its second attempt fails too: the row is dead');
ok(wait_until(sub { sample(scrape(), 'dead_total{node="1",sink="exec"}') == 1 }, 5),
	'dead_total = 1');
$m = scrape();
is(sample($m, 'retried_total{node="1",sink="exec"}'), 1, 'retried_total = 1 (the second attempt)');
is(sample($m, 'failed_total{node="1",sink="exec"}'), 1, 'failed_total still 1: the dead one counts as dead');
is(sample($m, 'delivered_total{node="1",sink="exec"}'), $n, "delivered_total still $n");
is(sample($m, 'delivery_duration_seconds_count{sink="exec"}'), $n, 'failures are not in the histogram');
unlink "$cmd_dir/fail";

# a slow delivery: in flight, and the oldest claimed event ages
open $fh, '>', "$cmd_dir/delay" or die;
print $fh "1.5\n";
close $fh;
events(22, 22);
ok(wait_until(sub { sample(scrape(), 'deliveries_in_flight{sink="exec"}') == 1 }, 10),
	'a slow delivery: 1 in flight');
ok(wait_until(sub { sample(scrape(), 'oldest_claimed_event_age_seconds{node="1"}') >= 0.5 }, 5),
	'the oldest claimed event ages while it is delivered');
unlink "$cmd_dir/delay";
ok(defined wait_for($node, $dbname, $delivered, $n + 1, 20), 'and is delivered');
ok(wait_until(sub { sample(scrape(), 'delivered_total{node="1",sink="exec"}') == $n + 1 }, 5),
	'delivered_total = N + 1');
$m = scrape();
is(sample($m, 'deliveries_in_flight{sink="exec"}'), 0, 'in flight: 0 at the end');
is(sample($m, 'oldest_claimed_event_age_seconds{node="1"}'), '0.000', 'oldest claimed event age: 0 again');
is(sample($m, 'delivery_duration_seconds_bucket{sink="exec",le="1"}') . ' '
	  . sample($m, 'delivery_duration_seconds_bucket{sink="exec",le="2.5"}'),
	"$n " . ($n + 1), 'the slow one is in the bucket 1 s < t <= 2.5 s');

# other paths and methods
$res = $http->get("$base/nope");
is($res->{status}, 404, 'another path: 404');
$res = $http->request('POST', "$base/metrics", { content => 'x=1' });
is($res->{status}, 405, 'POST: 405');
is($res->{headers}{allow}, 'GET, HEAD', 'with Allow: GET, HEAD');
$res = $http->request('DELETE', "$base/healthz");
is($res->{status}, 405, 'DELETE: 405');
$res = $http->request('HEAD', "$base/metrics");
is("$res->{status} " . length($res->{content} // ''), '200 0', 'HEAD: 200 without a body');

# the node goes away and comes back
$node->stop('fast');
ok(wait_until(sub { $http->get("$base/healthz")->{status} == 503 }, 15),
	'/healthz: 503 while the only node is down');
is($http->get("$base/healthz")->{content}, "unavailable: 0 of 1 nodes connected\n", 'saying why');
is(sample(scrape(), 'node_up{node="1"}'), 0, 'node_up 0');
$node->start;
ok(wait_until(sub { $http->get("$base/healthz")->{status} == 200 }, 20),
	'/healthz: 200 again once the node is back');
is(sample(scrape(), 'node_up{node="1"}'), 1, 'node_up 1');

# a failure reason with bytes that are not UTF-8 (the server refuses it in
# fail(): the event is left to its lease), logged as valid JSON all the same
open $fh, '>', "$cmd_dir/fail" or die;
print $fh "bad \xff\xfe byte\n";
close $fh;
events(23, 23);
ok(wait_until(sub { slurp_file($log) =~ /fail\(\) refused/ }, 20), 'a reason that is not UTF-8')
  or diag slurp_file($log);
unlink "$cmd_dir/fail";

kill 'TERM', $relay;
is(finish($relay, 15), 0, 'SIGTERM: exit 0');
like(notified(), qr/READY=1\nSTOPPING=1\n/, 'the relay says STOPPING=1 when it stops');
is($http->get("$base/metrics")->{status}, 599, 'and the metrics server is gone');

is($format_problems, '', "$scrapes scrapes, all in the text exposition format")
  or diag slurp_file("$tmp/metrics.txt");
SKIP:
{
	my $promtool = `sh -c 'command -v promtool'`;
	chomp $promtool;
	skip 'promtool is not installed', 1 unless $promtool;
	my $out = `$promtool check metrics < '$tmp/metrics.txt' 2>&1`;
	is($? >> 8, 0, 'promtool check metrics') or diag $out;
}

# --- the JSON log ----------------------------------------------------------------------

my @lines = split /\n/, slurp_file($log);
my @bad;
my @records;
for my $line (@lines)
{
	my $rec = eval { JSON::PP->new->utf8->decode($line) };
	if (!$rec || ref $rec ne 'HASH'
		|| ($rec->{ts} // '') !~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
		|| ($rec->{level} // '') !~ /^(info|warning|error)$/
		|| !defined $rec->{msg})
	{
		push @bad, $line;
		next;
	}
	push @records, $rec;
}
ok(@lines > 20, scalar(@lines) . ' log lines');
is(join("\n", @bad), '', 'every one a JSON object with ts (RFC 3339, UTC, ms), level and msg');
ok((grep { ($_->{node} // 0) == 1 && ($_->{event_id} // 0) > 0 && ($_->{sink} // '') eq 'exec' } @records),
	'event lines name node, event_id and sink');
ok((grep { $_->{msg} =~ /^node 1 \(met"rics\\db\@.*\): connected/ && ($_->{node} // 0) == 1 } @records),
	'the database name\'s quote and backslash come back from the JSON');
ok((grep { $_->{level} eq 'warning' && ($_->{node} // 0) == 1 && $_->{msg} =~ /connection lost|failed:/ } @records),
	'losing the node is a warning, with the node');
ok((grep { $_->{level} eq 'warning' && $_->{msg} =~ /gateway says "no" \\ \t caf\x{e9}$/ } @records),
	'a failure reason with a quote, a backslash, a tab and UTF-8 comes back intact');
ok((grep { $_->{msg} =~ /bad \x{fffd}\x{fffd} byte/ } @records),
	'bytes that are not UTF-8 become U+FFFD');

$node->stop;
done_testing();
