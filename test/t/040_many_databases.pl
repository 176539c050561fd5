
# Copyright (c) 2026, orderexp developers

# Many databases on one server: one worker per database listed in
# orderexp.databases, each in a background worker slot of its own.  With
# more databases than free slots the launcher says so once (WARNING with the
# sizing rule as hint), serves the others, and starts the missing worker as
# soon as a slot frees up, all without a restart.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Utils;
use Test::More;

# Slots: max_worker_processes = 8 holds the orderexp launcher, PostgreSQL's
# logical replication launcher and 6 per-database workers.  Parallel query
# would compete for the same slots; it is switched off here so that the
# count is exact.
my $ndb = 7;
my @dbs = map { "shop$_" } 1 .. $ndb;
my $node = new_orderexp_node(
	'many_db',
	'max_worker_processes' => '8',
	'max_parallel_workers' => '0',
	'max_parallel_workers_per_gather' => '0',
	'orderexp.databases' => 'postgres');
my $postmaster_pid = $node->{_pid};

foreach my $db (@dbs)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION orderexp');
	create_orders($node, $db, 'orders', q{interval '15 minutes'});
}

# all workers of @$list, as "db:count" pairs
my $workers_query = q{SELECT string_agg(datname || ':' || n, ' ' ORDER BY datname)
	FROM (SELECT datname, count(*) AS n FROM pg_stat_activity
	       WHERE backend_type = 'orderexp worker' GROUP BY datname) w};

# --- six databases: six workers, each closing its own orders -------------

my $offset = -s $node->logfile;
set_guc($node, 'orderexp.databases', join(', ', @dbs[0 .. 5]));
my $six = join(' ', map { "$_:1" } @dbs[0 .. 5]);
ok(defined wait_for($node, 'postgres', $workers_query, $six, 20),
	'six listed databases get one worker each');
foreach my $db (@dbs[0 .. 5])
{
	$node->safe_psql($db,
		q{INSERT INTO orders (id, created_at)
		  SELECT i, now() - interval '1 hour' FROM generate_series(1, 50) i});
}
foreach my $db (@dbs[0 .. 5])
{
	ok( defined wait_for(
			$node, $db,
			q{SELECT count(*) FILTER (WHERE status = 'closed') || '/' || count(*) FROM orders},
			'50/50', 20),
		"$db: its worker closes its 50 expired orders");
}
is( log_lines($node, $offset, sub { /could not start a worker/ }), '',
	'no slot shortage while there are enough slots');

# --- a seventh database: no slot left ------------------------------------

$offset = -s $node->logfile;
set_guc($node, 'orderexp.databases', join(', ', @dbs));
ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orderexp worker'},
		'6', 5),
	'with seven databases and six free slots, six workers run');
# give the launcher a few rounds: it must warn once, not every second
sleep(4);
my $warnings = log_lines($node, $offset,
	sub { /WARNING:  orderexp could not start a worker for database "shop7"/ });
is(scalar(() = $warnings =~ /could not start/g), 1,
	'the launcher warns once about the database it has no slot for');
like(
	slurp_file($node->logfile, $offset),
	qr/HINT:  Raise max_worker_processes: orderexp needs one slot for its launcher and one per database/,
	'with the sizing rule as a hint');
$node->safe_psql('shop7',
	q{INSERT INTO orders (id, created_at)
	  SELECT i, now() - interval '1 hour' FROM generate_series(1, 50) i});
is($node->safe_psql('shop7', q{SELECT count(*) FROM orders WHERE status = 'closed'}),
	'0', 'the seventh database is not swept meanwhile');
foreach my $db (@dbs[0 .. 5])
{
	$node->safe_psql($db,
		q{INSERT INTO orders (id, created_at) VALUES (51, now() - interval '1 hour')});
}
ok( defined wait_for(
		$node, 'shop1', q{SELECT status FROM orders WHERE id = 51}, 'closed', 10)
	  && defined wait_for(
		$node, 'shop6', q{SELECT status FROM orders WHERE id = 51}, 'closed', 10),
	'the six others keep closing orders');

# --- a slot frees up: the waiting database gets its worker ----------------

set_guc($node, 'orderexp.databases', join(', ', @dbs[1 .. 6]));
ok(defined wait_for($node, 'postgres', $workers_query,
		join(' ', map { "$_:1" } @dbs[1 .. 6]), 20),
	'after shop1 leaves the list, shop7 takes its slot');
ok( defined wait_for(
		$node, 'shop7',
		q{SELECT count(*) FILTER (WHERE status = 'closed') FROM orders}, '50', 20),
	'and its 50 expired orders are closed');

# --- all along ------------------------------------------------------------

is( log_lines(
		$node, 0,
		sub {
			return 0
			  if /FATAL:  terminating background worker "orderexp worker" due to administrator command/;
			return /\b(ERROR|FATAL|PANIC):/
			  || /terminated by signal|exited with exit code [^01]/;
		}),
	'',
	'no errors and no crash in the log');
is($node->{_pid}, $postmaster_pid, 'no restart was needed');
$node->stop;
done_testing();
