
# Copyright (c) 2026, orderexp developers

# orderexp-relay's Standard Webhooks headers, checked with an independent
# implementation: the standardwebhooks npm package (test/node/, installed by
# scripts/lib.sh) verifies what test/relay_http.py received.  A delivery
# signed with a whsec_ secret verifies; while a secret is rotated, the
# header carries two signatures and a receiver with either secret
# verifies, one with neither does not; a request replayed more than five
# minutes later, or with a forged timestamp, is refused by the library.
# webhook-id is msg_ + the database's system identifier and oid + the
# event id, the same on a retry; a secret that is not whsec_ is used as
# its bytes (the library's "raw" format), and X-Orderexp-Signature stays.
# A malformed or too short whsec_ secret, or a previous secret without a
# current one, is refused with exit status 1; commands of the exec sink
# do not see the new secret variables.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use FindBin;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use lib $FindBin::RealBin;
use OrderexpTest;
use RelayTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $tmp    = PostgreSQL::Test::Utils::tempdir();
my $nodedir = "$FindBin::RealBin/../node";

ok(-f "$nodedir/node_modules/standardwebhooks/package.json",
	'the standardwebhooks package is installed in test/node (scripts/lib.sh: ox_install_node_modules)')
  or die "npm install --prefix $nodedir first";

sub write_file
{
	my ($path, $mode, $text) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $path or die "chmod $path: $!";
}

sub run_relay
{
	my (@args) = @_;
	unlink "$tmp/run.err";
	my $pid = spawn("$tmp/run.out", "$tmp/run.err", 'orderexp-relay', @args);
	return finish($pid, 30);
}

sub requests
{
	my ($dir) = @_;
	my @files = sort { ($a =~ /(\d+)\.json$/)[0] <=> ($b =~ /(\d+)\.json$/)[0] }
	  glob("$dir/req-*.json");
	return @files;
}

# verify($request_file, $secret, @options): the library's verdict, "ok ..."
# or "refused: ..."
sub verify
{
	my ($file, $secret, @opt) = @_;
	my $out = `node '$nodedir/whsig_verify.js' '$file' '$secret' @opt 2>&1`;
	chomp $out;
	return $out;
}

# whsec_ and base64 of $n random bytes
sub new_secret
{
	my ($n) = @_;
	return 'whsec_' . encode_base64(join('', map { chr(int(rand(256))) } 1 .. $n), '');
}

my $node = new_orderexp_node('whsig');
$node->safe_psql('postgres',
	q{CREATE EXTENSION orderexp; CREATE ROLE relay LOGIN IN ROLE orderexp_relay;});
create_orders($node, 'postgres', 'orders', q{interval '1 hour', channels => '{webhook}'});
my $conn = $node->connstr('postgres') . ' user=relay';
my $origin = $node->safe_psql('postgres',
	"SELECT s.system_identifier || '_' || d.oid FROM pg_control_system() s, pg_database d
	  WHERE d.datname = current_database()");
my $next_order = 1;

# cancel($n): $n new orders cancelled, one webhook event each; their event ids
sub cancel
{
	my ($n) = @_;
	my $from = $next_order;
	$next_order += $n;
	$node->safe_psql('postgres',
		"INSERT INTO orders (id) SELECT generate_series($from, $from + $n - 1);
		 SELECT orderexp.cancel_order('orders', i, 'test') FROM generate_series($from, $from + $n - 1) i");
	return split /\n/, $node->safe_psql('postgres',
		"SELECT id FROM orderexp.outbox_state WHERE order_key::int >= $from ORDER BY id");
}

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dir = "$tmp/http";
mkdir $dir;
my $http = spawn("$tmp/http.log", "$tmp/http.log", $python,
	"$FindBin::RealBin/../relay_http.py", $port, $dir);
ok(wait_until(sub { -e "$dir/ready" }, 15), 'the webhook receiver listens')
  or diag slurp_file("$tmp/http.log");
my @webhook = ('-d', $conn, '--once', '--webhook', "http://127.0.0.1:$port/hook");

# --- bad secrets ---------------------------------------------------------------------

write_file("$tmp/bad", 0600, "whsec_not*base64\n");
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/bad"), 1, 'a whsec_ secret that is not base64: exit 1');
like(slurp_file("$tmp/run.err"), qr/invalid webhook secret: whsec_ must be followed by base64/, 'which says so');
write_file("$tmp/short", 0600, new_secret(16) . "\n");
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/short"), 1, 'a 16-byte whsec_ key: exit 1');
like(slurp_file("$tmp/run.err"), qr/a whsec_ key must have 24 to 64 bytes, this one has 16/, 'which says so');
my $current = new_secret(32);
my $previous = new_secret(24);
write_file("$tmp/current", 0600, "$current\n");
write_file("$tmp/previous", 0600, "$previous\n");
is(run_relay(@webhook, '--webhook-previous-secret-file', "$tmp/previous"), 1,
	'a previous secret without a current one: exit 1');
write_file("$tmp/open", 0644, "$previous\n");
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/current", '--webhook-previous-secret-file', "$tmp/open"),
	1, 'a previous secret file that others can read: exit 1');

# --- one secret -----------------------------------------------------------------------

my @ids = cancel(2);
my $t0 = time();
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/current"), 0, 'delivered with a whsec_ secret');
# the two go out at once (a window of deliveries), so they may arrive in
# either order: taken in the order of their events
my @req = sort {
	(decode_json(slurp_file($a))->{headers}{'webhook-id'} =~ /_(\d+)$/)[0]
	  <=> (decode_json(slurp_file($b))->{headers}{'webhook-id'} =~ /_(\d+)$/)[0]
} requests($dir);
is(scalar(@req), 2, 'two requests');
my $r = decode_json(slurp_file($req[0]));
is($r->{headers}{'webhook-id'}, "msg_${origin}_$ids[0]", 'webhook-id: msg_SYSID_DBOID_EVENTID');
ok(abs($r->{headers}{'webhook-timestamp'} - $t0) <= 5, 'webhook-timestamp: now, in Unix seconds');
like($r->{headers}{'webhook-signature'}, qr{^v1,[A-Za-z0-9+/]{43}=$}, 'one v1 signature');
is(verify($req[0], $current), "ok msg_${origin}_$ids[0] event $ids[0]", 'the library verifies it');
is(verify($req[1], $current), "ok msg_${origin}_$ids[1] event $ids[1]", 'and the second');
is(verify($req[0], $previous), 'refused: No matching signature found', 'another secret does not verify');
is($r->{headers}{'x-orderexp-signature'}, 'sha256=' . hmac_sha256_hex($r->{body}, $current),
	'X-Orderexp-Signature stays, HMAC of the body under the secret as written');

# replayed later, or with a forged timestamp
is(verify($req[0], $current, '--later=301'), 'refused: Message timestamp too old',
	'the same request 5 minutes and 1 s later is refused as too old');
is(verify($req[0], $current, '--later=240'), "ok msg_${origin}_$ids[0] event $ids[0]",
	'4 minutes later it still verifies');
my $forged = { %$r, headers => { %{ $r->{headers} } } };
$forged->{headers}{'webhook-timestamp'} = time();
$forged->{headers}{'webhook-timestamp'}-- if $forged->{headers}{'webhook-timestamp'} == $r->{headers}{'webhook-timestamp'};
write_file("$tmp/forged.json", 0600, encode_json($forged));
is(verify("$tmp/forged.json", $current), 'refused: No matching signature found',
	'a fresh timestamp forged onto an old request is refused (the signature covers it)');
$forged->{headers}{'webhook-timestamp'} = time() - 3600;
write_file("$tmp/forged.json", 0600, encode_json($forged));
is(verify("$tmp/forged.json", $current), 'refused: Message timestamp too old',
	'an hour-old timestamp is refused');

# --- rotation: two secrets ---------------------------------------------------------------

@ids = cancel(1);
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/current", '--webhook-previous-secret-file', "$tmp/previous"),
	0, 'delivered with a current and a previous secret');
@req = requests($dir);
$r = decode_json(slurp_file($req[-1]));
like($r->{headers}{'webhook-signature'}, qr{^v1,\S{44} v1,\S{44}$}, 'two signatures, space separated');
is(verify($req[-1], $current), "ok msg_${origin}_$ids[0] event $ids[0]", 'a receiver with the current secret verifies');
is(verify($req[-1], $previous), "ok msg_${origin}_$ids[0] event $ids[0]", 'so does one with the previous secret');
is(verify($req[-1], new_secret(32)), 'refused: No matching signature found', 'one with neither does not');
{
	local $ENV{ORDEREXP_WEBHOOK_PREVIOUS_SECRET} = $previous;
	@ids = cancel(1);
	is(run_relay(@webhook, '--webhook-secret-file', "$tmp/current"), 0,
		'the previous secret from $ORDEREXP_WEBHOOK_PREVIOUS_SECRET');
	@req = requests($dir);
	is(verify($req[-1], $previous), "ok msg_${origin}_$ids[0] event $ids[0]", 'verifies with it');
}

# --- the id across retries ---------------------------------------------------------------

@ids = cancel(1);
write_file("$dir/status", 0644, "500\n");
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/current"), 5, 'the receiver fails: exit 5');
unlink "$dir/status";
$node->safe_psql('postgres', "UPDATE orderexp.outbox SET next_attempt_at = now() WHERE id = $ids[0]");
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/current"), 0, 'the retry is delivered');
@req = requests($dir);
my ($first, $second) = map { decode_json(slurp_file($_)) } @req[ -2, -1 ];
is($first->{headers}{'webhook-id'}, "msg_${origin}_$ids[0]", 'the failed attempt\'s id');
is($second->{headers}{'webhook-id'}, $first->{headers}{'webhook-id'}, 'the retry has the same webhook-id');
is(verify($req[-1], $current), "ok msg_${origin}_$ids[0] event $ids[0]", 'and verifies');

# --- a secret that is not whsec_, no secret -------------------------------------------------

write_file("$tmp/raw", 0600, "s3cret-key-of-old\n");
@ids = cancel(1);
is(run_relay(@webhook, '--webhook-secret-file', "$tmp/raw"), 0, 'delivered with a plain secret');
@req = requests($dir);
is(verify($req[-1], 's3cret-key-of-old', '--raw'), "ok msg_${origin}_$ids[0] event $ids[0]",
	'it is the key as written (the library\'s raw format)');
@ids = cancel(1);
is(run_relay(@webhook), 0, 'delivered without a secret');
@req = requests($dir);
$r = decode_json(slurp_file($req[-1]));
is($r->{headers}{'webhook-id'}, "msg_${origin}_$ids[0]", 'webhook-id still');
ok(defined $r->{headers}{'webhook-timestamp'} && !defined $r->{headers}{'webhook-signature'},
	'and webhook-timestamp, no signature');

# --- the exec sink does not see the new secrets ------------------------------------------------

{
	local $ENV{ORDEREXP_WEBHOOK_PREVIOUS_SECRET} = $previous;
	local $ENV{ORDEREXP_SMS_TOKEN} = 'sms-token-in-env';
	cancel(1);
	is(run_relay('-d', $conn, '--once', '--exec', "env > '$tmp/env.out'"), 0, 'a command writes its environment');
	my $env = slurp_file("$tmp/env.out");
	ok($env =~ /ORDEREXP_EVENT_ID=/ && $env !~ /ORDEREXP_WEBHOOK_PREVIOUS_SECRET|ORDEREXP_SMS_TOKEN|sms-token-in-env/,
		'without $ORDEREXP_WEBHOOK_PREVIOUS_SECRET and $ORDEREXP_SMS_TOKEN');
}

kill 'TERM', $http;
finish($http, 10);
$node->stop;
done_testing();
