
# Copyright (c) 2026, orderexp developers

# orderexp-relay keeps its secrets: a secret file that its group or others
# can access is refused (exit 1, naming the file), and so is such a config
# file when it holds a password, while one without is only warned about; an
# SMTP login is never sent to a server that offers no STARTTLS (the event
# fails with a reason that says so, and the server sees no AUTH) unless
# --smtp-insecure (or its config file setting) says so, with a warning at
# start, and mail without a login goes as before; an --exec command sees
# the event's variables but no PG* variable and no secret variable of the
# relay.  The SMTP server is test/relay_smtp.py in its "auth" mode: it
# offers AUTH without TLS and records every login it is given.

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

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $tmp    = PostgreSQL::Test::Utils::tempdir();

# write_file($path, $mode, $text)
sub write_file
{
	my ($path, $mode, $text) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $path or die "chmod $path: $!";
}

# run_relay(@args): run the relay to its end; its exit status, its stderr in
# $tmp/run.err
sub run_relay
{
	my (@args) = @_;
	unlink "$tmp/run.err";
	my $pid = spawn("$tmp/run.out", "$tmp/run.err", 'orderexp-relay', @args);
	return finish($pid, 30);
}

my $node = new_orderexp_node('secrets');
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orderexp;
CREATE ROLE relay LOGIN IN ROLE orderexp_relay;
CREATE TABLE orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	email		text);
SELECT orderexp.set_close_policy('orders', interval '1 hour',
	payload_columns => '{email}', channels => '{email}');
ALTER SYSTEM SET orderexp.max_attempts = 10;
SELECT pg_reload_conf();
});
create_orders($node, 'postgres', 'jobs', q{interval '1 hour', channels => '{sms}'});
my $conn = $node->connstr('postgres') . ' user=relay';

# --- secret files and config files: permissions --------------------------------

my $secret = "$tmp/webhook-secret";
write_file($secret, 0644, "s3cret-key\n");
is(run_relay('-d', $conn, '--stdout', '--webhook-secret-file', $secret, '--once'),
	1, 'a webhook secret file readable by others: exit 1');
like(slurp_file("$tmp/run.err"),
	qr/secret file "\Q$secret\E" has group or world access; permissions should be u=rw \(0600\) or less/,
	'naming the file and the permissions it should have');
my $password = "$tmp/smtp-password";
write_file($password, 0640, "mail-pw\n");
is( run_relay(
		'-d', $conn, '--smtp', 'smtp://127.0.0.1:9', '--smtp-from', 'shop@example.com',
		'--smtp-user', 'shop', '--smtp-password-file', $password, '--once'),
	1, 'an SMTP password file readable by its group: exit 1');
like(slurp_file("$tmp/run.err"), qr/secret file "\Q$password\E" has group or world access/,
	'naming the file');
chmod 0600, $secret, $password;
is(run_relay('-d', $conn, '--stdout', '--webhook-secret-file', $secret, '--once'),
	0, 'the same file at 0600: the relay runs');

my $conf = "$tmp/relay.conf";
write_file($conf, 0644, "stdout\ndbname $conn password=db-pw\nonce\n");
is(run_relay('-c', $conf), 1, 'a config file with a password, readable by others: exit 1');
like(slurp_file("$tmp/run.err"),
	qr/config file "\Q$conf\E" has group or world access and holds a password \(line 2\)/,
	'naming the file and the line');
write_file($conf, 0644, "stdout\nwebhook https://hook:pw\@127.0.0.1:9/\nroute *:stdout\nonce\n");
is(run_relay('-d', $conn, '-c', $conf), 1, 'or a password in a URL: exit 1');
write_file($conf, 0600, "stdout\ndbname $conn password=db-pw\nonce\n");
is(run_relay('-c', $conf), 0, 'the same file at 0600: the relay runs');
unlike(slurp_file("$tmp/run.err"), qr/warning/, 'without a warning');
write_file($conf, 0644, "stdout\ndbname $conn\nonce\n");
is(run_relay('-c', $conf), 0, 'a config file without a password, readable by others: the relay runs');
like(slurp_file("$tmp/run.err"), qr/warning: config file "\Q$conf\E" has group or world access/,
	'with a warning');

# --- SMTP login without STARTTLS ------------------------------------------------------

my $dir = "$tmp/smtp";
mkdir $dir;
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $smtp = spawn("$tmp/smtp.log", "$tmp/smtp.log", $python,
	"$FindBin::RealBin/../relay_smtp.py", $port, $dir, 'auth');
ok(wait_until(sub { -e "$dir/ready" }, 15), 'SMTP server (no STARTTLS, AUTH offered) listens')
  or diag slurp_file("$tmp/smtp.log");

my @mail = (
	'-d', $conn, '--smtp-from', 'shop@example.com', '--route', 'channel=email:smtp',
	'--timeout', '5', '--once');
my $state = q{SELECT string_agg(order_key || ':' || attempts || ':'
                                || CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
                                        ELSE coalesce(last_error, 'waiting') END, ' | ' ORDER BY order_key)
                FROM orderexp.outbox_state WHERE order_table = 'orders'::regclass};
my $due_now = q{UPDATE orderexp.outbox SET next_attempt_at = now()
                 WHERE delivered_at IS NULL AND dead_at IS NULL};

$node->safe_psql('postgres', q{
INSERT INTO orders (id, email) VALUES (1, 'c1@example.com');
SELECT orderexp.cancel_order('orders', 1);});
is( run_relay(
		@mail, '--smtp', "smtp://127.0.0.1:$port", '--smtp-user', 'shop',
		'--smtp-password-file', $password),
	5, 'a login and a server without STARTTLS: not delivered, --once exits 5');
like($node->safe_psql('postgres', $state),
	qr/^1:1:smtp: STARTTLS not supported, and the login goes over TLS only \(see --smtp-insecure\)$/,
	'the reason says STARTTLS is missing, and the event will be retried');
$node->safe_psql('postgres', $due_now);
is(run_relay(@mail, '--smtp', "smtp://shop:url-pw\@127.0.0.1:$port"),
	5, 'a login in the URL: not delivered either');
like($node->safe_psql('postgres', $state), qr/^1:2:smtp: STARTTLS not supported/, 'for the same reason');
is(scalar(() = glob("$dir/auth-*.json")), 0, 'the server saw no login');
is(scalar(() = glob("$dir/msg-*.json")), 0, 'and no mail');

$node->safe_psql('postgres', $due_now);
is( run_relay(
		@mail, '--smtp', "smtp://127.0.0.1:$port", '--smtp-user', 'shop',
		'--smtp-password-file', $password, '--smtp-insecure'),
	0, '--smtp-insecure: delivered without TLS');
like(slurp_file("$tmp/run.err"), qr/warning: --smtp-insecure: SMTP credentials may be sent without TLS/,
	'with a warning at start');
is($node->safe_psql('postgres', $state), '1:3:delivered', 'the event is delivered');
is_deeply([ map { decode_json(slurp_file($_)) } glob("$dir/auth-*.json") ],
	[ { mechanism => 'PLAIN', login => 'shop', password => 'mail-pw' } ],
	'after logging in');

$node->safe_psql('postgres', q{
INSERT INTO orders (id, email) VALUES (2, 'c2@example.com'), (3, 'c3@example.com');
SELECT orderexp.cancel_order('orders', 2);});
is(run_relay(@mail, '--smtp', "smtp://127.0.0.1:$port"), 0, 'no login: delivered as before');
write_file($conf, 0600, "smtp-insecure\nsmtp-user shop\nsmtp-password-file $password\n");
$node->safe_psql('postgres', q{SELECT orderexp.cancel_order('orders', 3);});
is(run_relay(@mail, '--smtp', "smtp://127.0.0.1:$port", '-c', $conf),
	0, 'smtp-insecure in a config file: delivered without TLS');
is($node->safe_psql('postgres', $state), '1:3:delivered | 2:1:delivered | 3:1:delivered',
	'all three events delivered');
is(scalar(() = glob("$dir/auth-*.json")), 2, 'two logins: none for the mail without one');
is(scalar(() = glob("$dir/msg-*.json")), 3, 'three mails');

kill 'TERM', $smtp;
finish($smtp, 10) // kill 'KILL', $smtp;

# --- the environment of --exec commands -------------------------------------------------

$node->safe_psql('postgres', q{
INSERT INTO jobs (id) VALUES (1);
SELECT orderexp.cancel_order('jobs', 1);});
my $envfile = "$tmp/env.txt";
{
	local $ENV{PGPASSWORD}              = 'pg-pw-in-env';
	local $ENV{PGPASSFILE}              = "$tmp/no-pgpass";
	local $ENV{ORDEREXP_WEBHOOK_SECRET} = 'webhook-secret-in-env';
	local $ENV{ORDEREXP_SMTP_PASSWORD}  = 'smtp-pw-in-env';
	local $ENV{OX_UNRELATED}            = 'kept';
	is( run_relay(
			'-d', $conn, '--exec', "env > $envfile", '--route', 'channel=sms:exec',
			'--smtp-user', 'shop', '--once'),
		0, 'a command writing its environment, the relay with PGPASSWORD and secrets in its own');
}
my $env = slurp_file($envfile);
my $id = $node->safe_psql('postgres',
	q{SELECT id FROM orderexp.outbox_state WHERE order_table = 'jobs'::regclass});
like($env, qr/^ORDEREXP_EVENT_ID=$id$/m, 'the command sees ORDEREXP_EVENT_ID');
like($env, qr/^ORDEREXP_KIND=cancelled$/m,  'and ORDEREXP_KIND');
like($env, qr/^ORDEREXP_CHANNEL=sms$/m,     'and ORDEREXP_CHANNEL');
like($env, qr/^OX_UNRELATED=kept$/m,        'and the other variables of the relay');
is(join(',', $env =~ /^(PG\w*)=/mg), '', 'but no PG* variable (PGPASSWORD, PGPASSFILE, PGHOST...)');
unlike($env, qr/ORDEREXP_WEBHOOK_SECRET|ORDEREXP_SMTP_PASSWORD|-in-env/,
	'and none of the relay\'s secret variables');

$node->stop;
done_testing();
