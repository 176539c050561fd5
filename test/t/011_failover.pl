
# Copyright (c) 2026, orderexp developers

# Failover in the middle of a backlog.  A primary with a streaming standby;
# both preload orderexp.  The primary's worker is closing a backlog of 20,000
# due orders (slowed down, so that it takes a few seconds) when the primary
# is stopped in immediate mode, like a crash; the standby, where no orderexp
# worker ran and whose orders were changed only by replication, is promoted.
# Its worker starts, closes the rest of the backlog and, later, the orders
# that come due after the switch.  Nothing is closed twice across the switch
# and nothing is half done: every closed order has exactly one 'closed' event
# per channel, no other order has one (OrderexpTest::order_invariants).

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

my $primary = new_orderexp_node(
	'primary', { allows_streaming => 1 },
	'orderexp.batch_size' => '500',
	'orderexp.enabled'    => 'off',
	'log_statement'       => 'none');
$primary->safe_psql('postgres', 'CREATE EXTENSION orderexp');
create_orders($primary, 'postgres', 'orders',
	q{interval '15 minutes', channels => '{email,sms}'});
$primary->safe_psql(
	'postgres', q{
-- every batch takes at least 50 ms: the backlog takes seconds to drain
CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_catalog.pg_sleep(0.05); RETURN NULL; END$$;
CREATE TRIGGER slow_down AFTER UPDATE ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION slow_down();
-- 20,000 overdue orders (every tenth paid), and 20 due 20 s from now
INSERT INTO orders (id, created_at)
SELECT i, now() - interval '1 hour' FROM generate_series(1, 20000) i;
UPDATE orders SET status = 'paid' WHERE id % 10 = 0;
INSERT INTO orders (id, created_at)
SELECT i, now() - interval '15 minutes' + interval '20 seconds' FROM generate_series(20001, 20020) i;
});

$primary->backup('bkp');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bkp', has_streaming => 1);
$standby->append_conf('postgresql.conf', "orderexp.enabled = 'on'\n");
$standby->start;
$primary->wait_for_catchup($standby);

# the primary's worker starts on the backlog
set_guc($primary, 'orderexp.enabled', 'on');
my $start = time();
my $closed = 0;
while (time() - $start < 60)
{
	$closed = $primary->safe_psql('postgres',
		q{SELECT count(*) FROM orders WHERE status = 'closed'});
	last if $closed >= 3000;
	usleep(20_000);
}
cmp_ok($closed, '>=', 3000, 'the primary is in the middle of the backlog');
usleep(300_000);    # let some of it reach the standby
is($standby->safe_psql('postgres', $orderexp_procs),
	'0', 'no orderexp process runs on the standby');
my $replicated = $standby->safe_psql('postgres',
	q{SELECT count(*) FROM orders WHERE status = 'closed'});
cmp_ok($replicated, '>', 0, "the standby has $replicated closes by replication");
is(order_invariants($standby, 'postgres', 'orders', 2),
	$NO_VIOLATIONS,
	'what the standby has is whole: each replicated close with its events');

# crash of the primary mid-batch; the standby takes over
$primary->stop('immediate');
$standby->promote;
ok(defined wait_for($standby, 'postgres', $orderexp_procs, '2', 30),
	'after promotion the launcher and a worker start');
ok( defined wait_for(
		$standby, 'postgres',
		q{SELECT count(*) FROM orders WHERE id <= 20000 AND status = 'unpaid'},
		'0', 90),
	'the promoted node closes the rest of the backlog');
ok( defined wait_for(
		$standby, 'postgres',
		q{SELECT count(*) FROM orders WHERE id > 20000 AND status = 'closed'},
		'20', 60),
	'and the orders that come due after the switch');
is(order_invariants($standby, 'postgres', 'orders', 2),
	$NO_VIOLATIONS, 'nothing closed twice, nothing half done across the switch');
is( $standby->safe_psql(
		'postgres',
		q{SELECT status, count(*) FROM orders GROUP BY status ORDER BY status}),
	"closed|18020\npaid|2000",
	'every unpaid order is closed, every paid one stays paid');
ok( defined wait_for(
		$standby, 'postgres', 'SELECT count(*) FROM orderexp.timers', '0', 30),
	'no timers are left');

$standby->stop;
done_testing();
