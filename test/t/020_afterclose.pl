
# Copyright (c) 2026, orderexp developers

# After the close, with the background worker in real time: an experiment
# on the timeout gives new orders the deadline of their variant; the worker
# closes the unpaid ones at those deadlines and records, for every order,
# an audit row (closes) and an outcome with its variant (one row per
# payment; the closes counted per batch and variant); support can explain
# a closure with history() and reopen it;
# scripts/report.sh renders valid PNG charts from the result, and also
# from a database with no outcomes at all.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;
use File::Temp qw(tempdir);

my $report = "$FindBin::RealBin/../../scripts/report.sh";
ok(-f $report, 'scripts/report.sh is there');

my $node = new_orderexp_node('afterclose');
$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
create_orders($node, 'postgres', 'orders', q{interval '1 hour'});

# variants of 2 and 4 seconds, weights 1:3
my $exp = $node->safe_psql('postgres',
	q{SELECT orderexp.start_experiment('orders', '{2 seconds, 4 seconds}', '{1,3}')});
$node->safe_psql('postgres',
	q{INSERT INTO orders (id) SELECT g FROM generate_series(1, 200) g});
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM orderexp.timers t JOIN orders o ON o.id = t.order_key::integer
 WHERE t.variant = orderexp.assign_variant(t.order_key, '{1,3}', $exp)
   AND t.close_at - o.created_at = (ARRAY[interval '2 seconds', '4 seconds'])[t.variant]}),
	'200',
	'every new order has the deadline of its assigned variant');

# the first 60 pay at once; the worker closes the other 140 at their deadlines
$node->safe_psql('postgres',
	q{UPDATE orders SET status = 'paid' WHERE id <= 60});
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM orders WHERE status = 'closed'}, '140', 30),
	'the worker closes the unpaid orders at their variants\' deadlines');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(outcome || ':' || n, ',' ORDER BY outcome)
  FROM (SELECT o.outcome, sum(o.order_count) AS n FROM orderexp.outcomes o
         WHERE o.order_key IS NULL
            OR o.variant = orderexp.assign_variant(o.order_key, '{1,3}', $exp)
         GROUP BY o.outcome) s}),
	'closed:140,paid:60',
	'an outcome for every order: 60 paid, one each with its variant, 140 closed, counted');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*)
  FROM (SELECT orderexp.assign_variant(o.id::text, '{1,3}', $exp) AS v, count(*) AS n
          FROM orders o WHERE o.status = 'closed' GROUP BY 1) c
  FULL JOIN (SELECT x.variant AS v, sum(x.order_count) AS n FROM orderexp.outcomes x
              WHERE x.order_key IS NULL GROUP BY 1) x USING (v)
 WHERE c.n IS DISTINCT FROM x.n}),
	'0',
	'the worker\'s closes are counted per variant: as many as the variant\'s closed orders');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orderexp.audit
 WHERE action = 'closed' AND via = 'timeout' AND actor IS NULL AND variant IS NOT NULL
   AND deadline <= at}),
	'140',
	'one audit row per close, with the variant and the deadline that passed');
is( $node->safe_psql(
		'postgres', q{SELECT sum(orders) || '/' || sum(paid)
  FROM orderexp.experiment_stats}),
	'200/60',
	'experiment_stats counts every order of the experiment');

# support: why was order 100 closed, and reopen it
is( $node->safe_psql(
		'postgres',
		q{SELECT action || '/' || via FROM orderexp.history('orders', 100)}),
	'closed/timeout',
	'history explains the closure');
$node->safe_psql('postgres',
	q{SELECT orderexp.reopen_order('orders', 100, '1 hour', 'ticket 1')});
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(action || '/' || via, ' ' ORDER BY id) FROM orderexp.history('orders', 100)}),
	'closed/timeout reopened/operator',
	'and the reopen');
is($node->safe_psql('postgres', q{SELECT status FROM orders WHERE id = 100}),
	'unpaid', 'the reopened order is unpaid again');

# the report, as the postgres OS user would run it
my $out = tempdir(CLEANUP => 1);
my $conn = $node->connstr('postgres');
my $psql = $node->installed_command('psql');
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'bash', $report, $conn, $out ],
	'>', \$stdout, '2>', \$stderr, init => sub { $ENV{PSQL} = $psql });
ok($ok, 'report.sh succeeds') or diag($stderr);
for my $png (qw(conversion.png time_to_pay.png))
{
	ok(is_png("$out/$png"), "$png is a valid PNG image");
}
my @conv = read_lines("$out/conversion.dat");
is(scalar @conv, 2, 'conversion.dat: one line per variant');
like($conv[0], qr/^exp \d+ v1 .*\t0\.\d+\t0\.\d+\t0\.\d+\t\d+$/, 'with its rate and interval');

# a database with no outcomes: the charts say so, and are still images
$node->safe_psql('postgres', 'CREATE DATABASE empty');
$node->safe_psql('empty', 'CREATE EXTENSION orderexp');
my $out2 = tempdir(CLEANUP => 1);
$ok = IPC::Run::run([ 'bash', $report, $node->connstr('empty'), $out2 ],
	'>', \$stdout, '2>', \$stderr, init => sub { $ENV{PSQL} = $psql });
ok($ok, 'report.sh succeeds on a database without outcomes') or diag($stderr);
ok(is_png("$out2/conversion.png") && is_png("$out2/time_to_pay.png"),
	'and writes valid PNG images');

# a broken connection is an error, not an empty chart
$ok = IPC::Run::run([ 'bash', $report, 'dbname=no_such_database', $out2 ],
	'>', \$stdout, '2>', \$stderr, init => sub { $ENV{PSQL} = $psql });
ok(!$ok, 'report.sh fails when it cannot read the database');

is(log_lines($node, 0, sub { /\b(ERROR|FATAL|PANIC|WARNING):/ && /orderexp/ }),
	'', 'no orderexp errors or warnings in the log');

$node->stop;
done_testing();

# a PNG: the signature, an IHDR chunk first, width and height above zero
sub is_png
{
	my ($file) = @_;
	open(my $fh, '<:raw', $file) or return 0;
	my $n = read($fh, my $head, 24);
	close $fh;
	return 0 unless defined $n && $n == 24;
	my ($sig, $len, $type, $w, $h) = unpack('a8 N a4 N N', $head);
	return $sig eq "\x89PNG\r\n\x1a\n" && $type eq 'IHDR' && $w > 0 && $h > 0;
}

sub read_lines
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return ();
	chomp(my @lines = <$fh>);
	close $fh;
	return @lines;
}
