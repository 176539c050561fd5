
# Copyright (c) 2026, orderexp developers

# orderexp-relay's SMS sink against a fake SMS provider on loopback
# (test/relay_sms.py, which answers like Twilio's Messages API and checks
# its form fields and basic auth).  Twilio mode: the form's To, From and
# Body (the kind's SMS text with the order's fields), the account's path
# and credentials; the segment count in the verbose log (GSM-7, UCS-2, a
# long text); routes that send the sms channel to the sink and the rest
# elsewhere.  A missing or invalid number (not E.164) and a provider's 400
# make the event dead at its first attempt, with the reason in last_error
# and, for a bad number, no request at all; a 500 or a 401 (a wrong token)
# is retried and delivered once the provider answers, and a provider that
# does not answer at all is retried too.  The template mode sends hostile
# characters (quotes, backslashes, control characters, non-ASCII, an astral
# character, & = + % and spaces) in JSON and in form bodies, and the
# provider reads back exactly the order's text; the token goes into a
# header and never into a body.  Bad options, a token file
# that others can read and a config file that others can read holding an
# API key in a header are refused with exit status 1.  A database of
# orderexp 1.2, whose fail() has no retryable, gets the two-argument call.

use strict;
use warnings;

use Encode qw(encode_utf8);
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

sub write_file
{
	my ($path, $mode, $text) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $path or die "chmod $path: $!";
}

# run_relay(@args): the relay to its end; its exit status, stderr in $tmp/run.err
sub run_relay
{
	my (@args) = @_;
	unlink "$tmp/run.err", "$tmp/run.out";
	my $pid = spawn("$tmp/run.out", "$tmp/run.err", 'orderexp-relay', @args);
	return finish($pid, 30);
}

# the provider's records, in order
sub requests
{
	my ($dir) = @_;
	my @files = sort { ($a =~ /(\d+)\.json$/)[0] <=> ($b =~ /(\d+)\.json$/)[0] }
	  glob("$dir/req-*.json");
	return map { decode_json(slurp_file($_)) } @files;
}

# --- the node: orders with a phone and a customer name, events go by SMS -------

my $node = new_orderexp_node('sms', { extra => [ '--encoding=UTF8', '--locale=C' ] });
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE ROLE relay LOGIN IN ROLE orderexp_relay;
CREATE TABLE orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	phone		text,
	customer	text);
SELECT orderexp.set_close_policy('orders', interval '1 hour',
	payload_columns => '{phone,customer}', channels => '{sms,audit}');
ALTER SYSTEM SET orderexp.max_attempts = 5;
SELECT pg_reload_conf();
});
my $conn = $node->connstr('postgres') . ' user=relay';

# cancel(id => [phone, customer], ...): orders cancelled at once, so that each
# has a cancelled event on the channels sms and audit
sub cancel
{
	my (%orders) = @_;
	for my $id (sort { $a <=> $b } keys %orders)
	{
		my ($phone, $customer) = @{ $orders{$id} };
		my $q = sub { defined $_[0] ? "'" . ($_[0] =~ s/'/''/gr) . "'" : 'NULL' };
		$node->safe_psql('postgres',
			encode_utf8("INSERT INTO orders (id, phone, customer) VALUES ($id, "
				  . $q->($phone) . ', '
				  . $q->($customer) . ');'
				  . "SELECT orderexp.cancel_order('orders', $id, 'test');"));
	}
}

# state of the sms event of order $id: attempts|dead|delivered|last_error
sub sms_event
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT attempts, dead_at IS NOT NULL, delivered_at IS NOT NULL, coalesce(last_error, '')
		   FROM orderexp.outbox_state WHERE channel = 'sms' AND order_key = '$id'");
}

my $account = 'AC0123456789abcdef0123456789abcdef';
my $token = 'tw-token-0123456789';
write_file("$tmp/token", 0600, "$token\n");
write_file("$tmp/wrong-token", 0600, "not-the-token\n");

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dir = "$tmp/provider";
mkdir $dir;
my $provider = spawn("$tmp/provider.log", "$tmp/provider.log", $python,
	"$FindBin::RealBin/../relay_sms.py", $port, $dir, $account, $token);
ok(wait_until(sub { -e "$dir/ready" }, 15), 'the fake SMS provider listens')
  or diag slurp_file("$tmp/provider.log");
my $url = "http://127.0.0.1:$port";

# --- bad options ------------------------------------------------------------------

is(run_relay('-d', $conn, '--sms', 'ftp://127.0.0.1/'), 1, '--sms with an ftp URL: exit 1');
is(run_relay('-d', $conn, '--sms', $url, '--sms-provider', 'twilio', '--once'),
	1, 'twilio without account, token and sender: exit 1');
like(slurp_file("$tmp/run.err"), qr/--sms-provider twilio needs --sms-account, --sms-token-file/,
	'which says what is missing');
write_file("$tmp/open-token", 0644, "$token\n");
is(run_relay('-d', $conn, '--sms', $url, '--sms-token-file', "$tmp/open-token", '--once'),
	1, 'a token file that others can read: exit 1');
like(slurp_file("$tmp/run.err"), qr/secret file ".*open-token" has group or world access/,
	'refused as a secret file');
is(run_relay('-d', $conn, '--sms', $url, '--sms-content-type', 'xml', '--once'),
	1, '--sms-content-type xml: exit 1');
is(run_relay('-d', $conn, '--sms', $url, '--sms-header', 'No Colon', '--once'),
	1, 'an --sms-header without NAME: VALUE: exit 1');
is(run_relay('-d', $conn, '--sms', $url, '--sms-provider', 'twilio', '--sms-account', $account,
		'--sms-token-file', "$tmp/token", '--sms-from', '+15005550006',
		'--sms-body-template', '{}', '--once'),
	1, 'a body template with twilio: exit 1');
is(run_relay('-d', $conn, '--sms', $url, '--sms-header', 'Authorization: Bearer {sms.token}', '--once'),
	1, 'a header with {sms.token} but no token: exit 1');
like(slurp_file("$tmp/run.err"), qr/--sms-header "Authorization" uses \{sms.token\}, which needs --sms-token-file/,
	'which says so');
write_file("$tmp/open.conf", 0644, "sms $url\nsms-header X-Api-Key: abc123\nonce\n");
is(run_relay('-d', $conn, '-c', "$tmp/open.conf"), 1,
	'a config file that others can read with an API key in a header: exit 1');
like(slurp_file("$tmp/run.err"), qr/has group or world access and holds a password \(line 2\)/,
	'naming the line');

# --- twilio ------------------------------------------------------------------------

my @twilio = ('-d', $conn, '--once', '-v', '--sms', $url, '--sms-provider', 'twilio',
	'--sms-account', $account, '--sms-token-file', "$tmp/token", '--sms-from', '+15005550006',
	'--stdout', '--route', 'channel=sms:sms', '--route', '*:stdout');
my $long = 'L' x 200;
cancel(
	1 => [ '+4917012345678', "Zo\x{eb}" ],
	2 => [ '+15551234567', 'Bob' ],
	3 => [ '+15551230003', $long ]);
is(run_relay(@twilio, '--sms-text', 'cancelled=Hi {customer}, order {order_key} was cancelled.'),
	0, 'twilio: the relay delivers and exits 0');
my @req = requests($dir);
is(scalar(@req), 3, 'three requests reached the provider');
is($req[0]{path}, "/2010-04-01/Accounts/$account/Messages.json", 'to the account\'s Messages resource');
is($req[0]{status}, 201, 'which the provider accepted (its credential check passed)');
is($req[0]{headers}{authorization},
	'Basic ' . encode_base64("$account:$token", ''), 'HTTP basic auth with SID and token');
like($req[0]{headers}{'content-type'}, qr{^application/x-www-form-urlencoded}, 'form encoded');
# (the relay sends several at once: they may arrive in any order)
my %to = map { $_->{form}{To}[0] => $_ } @req;
is_deeply($to{'+4917012345678'}{form},
	{ To => ['+4917012345678'], From => ['+15005550006'], Body => ["Hi Zo\x{eb}, order 1 was cancelled."] },
	'To, From and Body, the text of the kind\'s template');
is($to{'+15551234567'}{form}{Body}[0], 'Hi Bob, order 2 was cancelled.', 'the second order\'s number');
is($to{'+15551230003'}{form}{Body}[0], "Hi $long, order 3 was cancelled.", 'the long text whole');
unlike($req[0]{body}, qr/\Q$token\E/, 'the token is not in the body');
is(sms_event(1), '1|f|t|', 'the event is delivered');
my $log = slurp_file("$tmp/run.err");
like($log, qr/event \d+: SMS to \+491\*+78, 1 segment \(UCS-2, 30 UTF-16 units\)/,
	'a non-GSM character: one UCS-2 segment, the number masked in the log');
like($log, qr/SMS to \+155\*+67, 1 segment \(GSM-7, 30 septets\)/, 'GSM-7 text: one segment');
like($log, qr/SMS to \+155\*+03, 2 segments \(GSM-7, 227 septets\)/, '227 septets: two segments');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM orderexp.outbox_state WHERE channel = 'audit' AND delivered_at IS NOT NULL"),
	3, 'the other channel went to the other route');
is(() = slurp_file("$tmp/run.out") =~ /"channel":"audit"/g, 3, 'to stdout');

# --- numbers that can never be sent, a provider's 400: dead at once ------------------

cancel(
	4 => [ '12345', 'no plus' ],
	5 => [ undef, 'no phone' ],
	6 => [ '+0123456789', 'leading zero' ],
	7 => [ '+1234567', 'too short' ],
	8 => [ '+1234567890123456', 'too long' ],
	9 => [ '+49 170 1234567', 'spaces' ],
	10 => [ '+15005550001', 'the provider refuses it' ]);
my $before = () = requests($dir);
is(run_relay(@twilio), 5, 'failures: exit 5 (--once left events undelivered)');
for my $id (4, 6, 7, 8, 9)
{
	is(sms_event($id),
		'1|t|f|sms: invalid phone number in field "phone": E.164 expected (+ and 8 to 15 digits)',
		"order $id: an invalid number is dead at its first attempt, with the reason");
}
is(sms_event(5), '1|t|f|sms: no recipient: the event has no field "phone"',
	'order 5: no number, dead at once');
@req = requests($dir);
is(scalar(@req) - $before, 1, 'of these, only the valid number reached the provider');
is($req[-1]{status}, 400, 'which answered 400');
is(sms_event(10),
	"1|t|f|sms: HTTP status 400 (provider said: The 'To' number +15005550001 is not a valid phone number.)",
	'order 10: the provider\'s 400 is permanent, its message in the reason');
like(slurp_file("$tmp/run.err"), qr/summary: .* 7 failed \(7 dead\)/, 'the summary counts them dead');

# --- 500 and a wrong token: retried --------------------------------------------------

write_file("$dir/status", 0644, "500\n");
cancel(11 => [ '+15551230011', 'five hundred' ]);
is(run_relay(@twilio), 5, 'the provider answers 500: exit 5');
is(sms_event(11), '1|f|f|sms: HTTP status 500 (provider said: failing on purpose)',
	'a 500 is retried, not dead');
unlink "$dir/status";
cancel(12 => [ '+15551230012', 'wrong token' ]);
my @wrong = map { $_ eq "$tmp/token" ? "$tmp/wrong-token" : $_ } @twilio;
is(run_relay(@wrong), 5, 'a wrong token: exit 5');
is(sms_event(12), '1|f|f|sms: HTTP status 401 (provider said: Authenticate)',
	'the provider\'s 401 (the relay\'s set-up) is retried');
ok( $node->safe_psql('postgres',
		"SELECT bool_and(next_attempt_at > now()) FROM orderexp.outbox_state
		  WHERE channel = 'sms' AND order_key IN ('11', '12')") eq 't',
	'both are due again later');
$node->safe_psql('postgres',
	"UPDATE orderexp.outbox SET next_attempt_at = now() WHERE channel = 'sms' AND order_key IN ('11', '12')");
is(run_relay(@twilio), 0, 'once the provider and the token are right: exit 0');
is(sms_event(11), '2|f|t|sms: HTTP status 500 (provider said: failing on purpose)',
	'the 500 event is delivered at its second attempt');
is(sms_event(12), '2|f|t|sms: HTTP status 401 (provider said: Authenticate)',
	'and so is the 401 one');

# --- the template provider: hostile characters in JSON and form bodies -------------

my $hostile = "Zo\x{eb} \"q\" back\\slash\nnew\ttab\x01ctl & = + % \x{1F600} end";
my $hostile_sql = "E'Zo\\u00eb \"q\" back\\\\slash\\nnew\\ttab\\x01ctl & = + % \\U0001F600 end'";
$node->safe_psql('postgres',
	"INSERT INTO orders (id, phone, customer) VALUES (13, '+4917012345613', $hostile_sql), "
	  . "(14, '+4917012345614', $hostile_sql);"
	  . "SELECT orderexp.cancel_order('orders', 13, 'test');");
is($node->safe_psql('postgres', "SELECT customer = $hostile_sql FROM orders WHERE id = 13"),
	't', 'the hostile name is stored as written');
$before = () = requests($dir);
is( run_relay(
		'-d', $conn, '--once', '--sms', "$url/api/send", '--route', 'channel=sms:sms',
		'--sms-content-type', 'json', '--sms-from', 'Shop & Co',
		'--sms-token-file', "$tmp/token",
		'--sms-header', 'X-Api-Key: {sms.token}', '--sms-header', 'X-Client: orderexp',
		'--sms-text', 'cancelled=Hi {customer}!',
		'--sms-body-template',
		'{"to":"{sms.to}","sender":"{sms.from}","message":"{sms.text}","name":"{customer}","t":"{sms.token}"}'),
	0, 'template, JSON: exit 0');
@req = requests($dir);
is(scalar(@req) - $before, 1, 'one request');
my $r = $req[-1];
is($r->{path}, '/api/send', 'to the URL as given');
is($r->{method}, 'POST', 'POST');
is($r->{headers}{'content-type'}, 'application/json', 'Content-Type: application/json');
is($r->{headers}{'x-api-key'}, $token, 'the token in the header that asks for it');
is($r->{headers}{'x-client'}, 'orderexp', 'the other header as written');
ok($r->{body} !~ /[^\x20-\x7e]/, 'the body is printable ASCII');
my $json = eval { decode_json($r->{body}) };
ok($json, 'the body is valid JSON') or diag $r->{body};
is($json->{name}, $hostile, 'the hostile name arrives exactly');
is($json->{message}, "Hi $hostile!", 'so does the text');
is($json->{to}, '+4917012345613', 'the number');
is($json->{sender}, 'Shop & Co', 'the sender');
is($json->{t}, '', 'no token in a body');
is(sms_event(13), '1|f|t|', 'delivered');

$node->safe_psql('postgres', "SELECT orderexp.cancel_order('orders', 14, 'test')");
is( run_relay(
		'-d', $conn, '--once', '--sms', "$url/api/form", '--route', 'channel=sms:sms',
		'--sms-content-type', 'form', '--sms-method', 'PUT', '--sms-from', 'Shop & Co',
		'--sms-text', 'cancelled=Hi {customer}!',
		'--sms-body-template', 'to={sms.to}&from={sms.from}&text={sms.text}&name={customer}'),
	0, 'template, form: exit 0');
$r = (requests($dir))[-1];
is($r->{method}, 'PUT', '--sms-method PUT');
is($r->{headers}{'content-type'}, 'application/x-www-form-urlencoded', 'form encoded');
ok(defined $r->{form}, 'a well-formed form body (strict parsing)') or diag $r->{body};
is_deeply($r->{form},
	{ to => ['+4917012345614'], from => ['Shop & Co'], text => ["Hi $hostile!"], name => [$hostile] },
	'every field arrives exactly, & = + % and all');
like($r->{body}, qr/^to=%2B4917012345614&from=Shop\+%26\+Co&/, 'spaces as +, + and & as %2B and %26');
is(sms_event(14), '1|f|t|', 'delivered');

# --- nobody listens: retried ------------------------------------------------------------

cancel(15 => [ '+15551230015', 'nobody listens' ]);
my $closed = PostgreSQL::Test::Cluster::get_free_port();
is(run_relay('-d', $conn, '--once', '--sms', "http://127.0.0.1:$closed/api", '--route', 'channel=sms:sms'),
	5, 'a provider that does not answer: exit 5');
like(sms_event(15), qr/^1\|f\|f\|sms: .*(?:connect|refused)/i, 'retried, libcurl\'s reason in last_error');

# --- a database before 1.3: fail() without retryable ----------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql(
	'old', q{
CREATE EXTENSION orderexp VERSION '1.2';
CREATE TABLE orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	phone		text);
SELECT orderexp.set_close_policy('orders', interval '1 hour',
	payload_columns => '{phone}', channels => '{sms}');
INSERT INTO orders (id, phone) VALUES (1, 'not a number');
SELECT orderexp.cancel_order('orders', 1, 'test');
GRANT orderexp_relay TO relay;
});
is(run_relay('-d', $node->connstr('old') . ' user=relay', @twilio[ 2 .. $#twilio ]), 5,
	'orderexp 1.2: an invalid number fails');
is( $node->safe_psql('old',
		"SELECT attempts, dead_at IS NOT NULL, last_error FROM orderexp.outbox WHERE order_key = '1'"),
	'1|f|sms: invalid phone number in field "phone": E.164 expected (+ and 8 to 15 digits)',
	'through the two-argument fail(): retried, not dead (1.2 has no retryable)');

kill 'TERM', $provider;
finish($provider, 10);
$node->stop;
done_testing();
