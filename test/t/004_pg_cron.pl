
# Copyright (c) 2026, orderexp developers

# The pg_cron path, for installations that cannot preload orderexp: with only
# pg_cron in shared_preload_libraries, a cron job calling orderexp.run_due()
# closes expired orders.  And standbys: run_due() on a hot standby is a quiet
# no-op returning (0,0), and no orderexp launcher or worker runs on a standby
# even where orderexp is preloaded; after promotion they start.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $orderexp_procs = q{SELECT count(*) FROM pg_stat_activity
  WHERE backend_type IN ('orderexp launcher', 'orderexp worker')};

# orderexp and an orders table in $node: 10 expired orders, 3 of them paid
sub setup_orders
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
	create_orders($node, 'postgres', 'orders', q{interval '15 minutes'});
	$node->safe_psql(
		'postgres', q{
INSERT INTO orders (id, created_at)
SELECT i, now() - interval '1 hour' FROM generate_series(1, 10) i;
UPDATE orders SET status = 'paid' WHERE id <= 3;
});
}

# --- pg_cron, orderexp not preloaded ---------------------------------------------

my $cron = PostgreSQL::Test::Cluster->new('cron');
$cron->init;
$cron->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
});
$cron->start;

$cron->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
setup_orders($cron);
is($cron->safe_psql('postgres', $orderexp_procs),
	'0', 'orderexp not preloaded: no launcher, no worker');
is( $cron->safe_psql('postgres',
		q{SELECT count(*) FROM orders WHERE status = 'unpaid'}),
	'7', '7 expired unpaid orders wait');

$cron->safe_psql('postgres',
	q{SELECT cron.schedule('orderexp-sweep', '* * * * *', 'SELECT orderexp.run_due()')});
my $cron_start = time();

# While the minute comes round, the standby part below runs.

# --- standby: run_due() is a no-op, no worker ---------------------------------------

my $primary = new_orderexp_node('primary', { allows_streaming => 1 },
	'orderexp.enabled' => 'off');
setup_orders($primary);
ok(defined wait_for($primary, 'postgres', $orderexp_procs, '2', 15),
	'primary: launcher and worker run (paused with orderexp.enabled = off)');

$primary->backup('bkp');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bkp', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
is( $standby->safe_psql('postgres',
		q{SELECT count(*) FROM orderexp.timers WHERE close_at <= now()}),
	'10', 'the standby sees the 10 due timers (the 3 paid orders keep theirs until a sweep)');

my ($ret, $stdout, $stderr) = $standby->psql('postgres',
	'SELECT reminded, closed FROM orderexp.run_due()');
is($ret, 0, 'run_due() on the standby succeeds') or diag $stderr;
is($stdout, '0|0', 'run_due() on the standby returns (0,0)');
is($stderr, '', 'without any message');
($ret, $stdout, $stderr) = $standby->psql('postgres',
	'SELECT reminded, closed FROM orderexp.run_due(5)');
is("$ret $stdout", '0 0|0', 'run_due(max_rows) on the standby returns (0,0) too');

usleep(2_000_000);    # the launcher of a primary would have started by now
is($standby->safe_psql('postgres', $orderexp_procs),
	'0', 'no orderexp launcher or worker on the standby');
unlike(
	slurp_file($standby->logfile),
	qr/orderexp (launcher|worker) started/,
	'the standby log shows no orderexp process starting');
is( $standby->safe_psql('postgres',
		q{SELECT count(*) FROM orders WHERE status = 'unpaid'}),
	'7', 'the orders on the standby are untouched');

# promotion: recovery has finished, the launcher and the worker start
$standby->promote;
ok(defined wait_for($standby, 'postgres', $orderexp_procs, '2', 15),
	'after promotion the launcher and a worker start');
set_guc($standby, 'orderexp.enabled', 'on');
ok( defined wait_for(
		$standby, 'postgres',
		q{SELECT count(*) FROM orders WHERE status = 'closed'},
		'7', 15),
	'and, enabled, the worker closes the expired orders');

$standby->stop;
$primary->stop;

# --- back to pg_cron: the job runs at the start of the next minute ----------------

my $took = wait_for(
	$cron, 'postgres',
	q{SELECT count(*) FROM cron.job_run_details
	   WHERE status = 'succeeded' AND command = 'SELECT orderexp.run_due()'},
	'1', 90 - (time() - $cron_start));
ok(defined $took, 'the cron job ran and succeeded');
note sprintf('the cron job ran %.0fs after it was scheduled', time() - $cron_start);
is( $cron->safe_psql('postgres',
		q{SELECT string_agg(status || ':' || n, ',' ORDER BY status)
		    FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) s}),
	'closed:7,paid:3',
	'the cron job closed the 7 expired unpaid orders, and no paid one');
is( $cron->safe_psql('postgres',
		q{SELECT count(*) FROM orderexp.outbox o JOIN orders x ON x.id::text = o.order_key
		   WHERE o.kind = 'closed' AND x.status = 'closed'}),
	'7', 'one closed event per closed order');
is( $cron->safe_psql('postgres',
		q{SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed'}),
	'7', 'and no other closed event');
is($cron->safe_psql('postgres', 'SELECT count(*) FROM orderexp.timers'),
	'0', 'no timers left');
is($cron->safe_psql('postgres', $orderexp_procs),
	'0', 'still no orderexp process: the cron job did it all');
unlike(
	slurp_file($cron->logfile),
	qr/(ERROR|FATAL|PANIC):.*orderexp/,
	'no orderexp errors in the log');

$cron->stop;
done_testing();
