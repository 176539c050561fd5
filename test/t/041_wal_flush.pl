
# Copyright (c) 2026, orderexp developers

# A sweep has the WAL writer write what its rounds wrote while it goes on,
# as an asynchronous commit would: the worker's commit then no longer waits
# for the flush of a whole transaction's WAL, and a long run_due() neither
# writes nor syncs its WAL segments itself (bench/results.md).  The commit
# stays synchronous.
#
# With wal_writer_delay at 10 s the WAL writer wakes only when somebody asks
# it to.  A run_due() in a transaction left open closes 300 orders; the WAL
# its rounds wrote is written out within a few seconds, before its
# transaction commits.  Without the request it would wait in the WAL
# buffers (4 MB here, a tenth of them used) for ten seconds.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use Test::More;

my $node = new_orderexp_node(
	'wal_flush',
	'orderexp.enabled' => 'off',
	'wal_writer_delay' => '10s',
	'autovacuum' => 'off');
$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
create_orders($node, 'postgres', 'orders', q{interval '1 hour'});
$node->safe_psql('postgres',
	q{INSERT INTO orders (id, created_at)
	  SELECT g, now() - interval '2 hours' FROM generate_series(1, 300) g});
# nothing of the set-up left to write
$node->safe_psql('postgres', 'CHECKPOINT');

my $session = $node->background_psql('postgres');
$session->query_safe('BEGIN');
my $start = $session->query_safe('SELECT pg_current_wal_insert_lsn()');
is($session->query_safe('SELECT closed FROM orderexp.run_due()'),
	'300', 'run_due() closes the 300 orders');
# all but the last 64 kB of its WAL: what run_due() writes after its last
# round (pruning, the stream's bookkeeping) is not asked for, and the WAL
# writer writes full pages only
my ($bytes, $lsn) = split /\|/, $session->query_safe(
	qq{SELECT l - '$start'::pg_lsn, l - 65536 FROM pg_current_wal_insert_lsn() l});
cmp_ok($bytes, '>', 4 * 65536, 'the closes wrote more than four times that');
ok( defined wait_for(
		$node, 'postgres', "SELECT pg_current_wal_lsn() >= '$lsn'::pg_lsn", 't', 5),
	'its WAL is written out before its transaction commits, with wal_writer_delay at 10 s');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM orders WHERE status = 'closed'}),
	'0', '... and the closes are not visible yet');

$session->query_safe('COMMIT');
$session->quit;
is( $node->safe_psql('postgres', q{SELECT count(*) FROM orders WHERE status = 'closed'}),
	'300', 'after the commit the orders are closed');

$node->stop;
done_testing();
