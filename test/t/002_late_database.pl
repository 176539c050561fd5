
# Copyright (c) 2026, orderexp developers

# Databases in orderexp.databases that do not exist yet, or have no orderexp
# installed, are waited for quietly: no errors, no crash loop.  A database
# created later, with the extension installed later, gets a worker without a
# restart.  Adding a database to the list with a reload starts its worker;
# taking it off stops that worker.  Dropping the extension stops the
# database's worker; installing it again brings one back.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# orderexp lines at ERROR or worse, and signs of a crash, in the log from
# byte $offset on; $except: a pattern of lines not to count
sub log_problems
{
	my ($node, $offset, $except) = @_;
	return log_lines(
		$node, $offset,
		sub {
			return 0 if defined $except && /$except/;
			return (/\b(ERROR|FATAL|PANIC):/ && /orderexp|shopdb|extradb|plaindb/)
			  || /terminated by signal|exited with exit code [^01]/
			  || /terminating any other active server processes/
			  || /all server processes terminated; reinitializing/;
		});
}

# install orderexp in $db and register an orders table there
sub setup_orders
{
	my ($node, $db) = @_;
	$node->safe_psql($db, 'CREATE EXTENSION orderexp');
	create_orders($node, $db, 'orders', q{interval '15 minutes'});
}

# an order $id inserted in $db an hour past its deadline is still unpaid
# 3 seconds later ($unpaid_name), and no worker runs in $db ($no_worker_name)
sub check_unswept
{
	my ($node, $db, $id, $unpaid_name, $no_worker_name) = @_;
	$node->safe_psql($db,
		qq{INSERT INTO orders (id, created_at) VALUES ($id, now() - interval '1 hour')});
	usleep(3_000_000);
	is($node->safe_psql($db, qq{SELECT status FROM orders WHERE id = $id}),
		'unpaid', $unpaid_name);
	is($node->safe_psql('postgres', workers_in($db)), '0', $no_worker_name);
}

my $node = new_orderexp_node('late_db',
	'orderexp.databases' => 'postgres, shopdb, plaindb');
my $postmaster_pid = $node->{_pid};

# --- listed databases that do not exist yet --------------------------------

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orderexp launcher'},
		'1', 10),
	'the launcher runs');
my $launcher_pid = launcher_pid($node);

# let the launcher go round a few times over the missing databases
usleep(3_000_000);
is(log_problems($node), '',
	'missing databases: no errors, no crash in the log');
ok(defined wait_for($node, 'postgres', workers_in('postgres'), '0', 5),
	'no worker stays in postgres, which has no orderexp');
is(launcher_pid($node), $launcher_pid, 'the launcher has not been restarted');

# --- the database appears, then the extension --------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE shopdb');
$node->safe_psql('postgres', 'CREATE DATABASE plaindb');
usleep(1_500_000);    # the launcher looks at shopdb before orderexp is there
setup_orders($node, 'shopdb');
$node->safe_psql('shopdb',
	q{INSERT INTO orders (id, created_at) VALUES (1, now() - interval '1 hour'),
	                                           (2, now() + interval '1 hour')});
my $took = wait_for($node, 'shopdb', q{SELECT status FROM orders WHERE id = 1},
	'closed', 15);
ok(defined $took, 'an expired order in the late database is closed');
cmp_ok($took // 99, '<', 6, 'within a few seconds');
note sprintf('closed after %.2fs', $took // -1);
is($node->safe_psql('shopdb', q{SELECT status FROM orders WHERE id = 2}),
	'unpaid', 'an order not yet due is left alone');
is( $node->safe_psql('shopdb',
		q{SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed' AND order_key = '1'}),
	'1', 'one closed event');
ok(defined wait_for($node, 'postgres', workers_in('shopdb'), '1', 5),
	'one worker runs in shopdb');
is($node->{_pid}, $postmaster_pid, 'no restart was needed');

# --- a listed database without the extension is left alone ------------------

usleep(2_500_000);
ok(defined wait_for($node, 'postgres', workers_in('plaindb'), '0', 5),
	'no worker stays in plaindb, which has no orderexp');
is( $node->safe_psql('plaindb',
		q{SELECT count(*) FROM pg_namespace WHERE nspname = 'orderexp'}),
	'0', 'nothing is created in plaindb');
unlike(
	slurp_file($node->logfile),
	qr/orderexp worker started for database "(plaindb|postgres)"/,
	'no worker announced itself in the databases without orderexp');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE plaindb');
is($ret, 0, 'a listed database without orderexp can be dropped') or diag $err;

# --- adding a database to the list with a reload -----------------------------

$node->safe_psql('postgres', 'CREATE DATABASE extradb');
setup_orders($node, 'extradb');
check_unswept($node, 'extradb', 1,
	'a database not in orderexp.databases is not swept',
	'and has no worker');

set_guc($node, 'orderexp.databases', 'postgres, shopdb, extradb');
$took = wait_for($node, 'extradb', q{SELECT status FROM orders WHERE id = 1},
	'closed', 15);
ok(defined $took, 'after adding it to the list with a reload its order is closed');
cmp_ok($took // 99, '<', 6, 'within a few seconds');
ok(defined wait_for($node, 'postgres', workers_in('extradb'), '1', 5),
	'a worker runs in extradb');
is($node->safe_psql('postgres', workers_in('shopdb')),
	'1', 'the worker of shopdb is still there, alone');

# --- taking it off the list ----------------------------------------------------

my $log_offset = -s $node->logfile;
set_guc($node, 'orderexp.databases', 'postgres, shopdb');
$took = wait_for($node, 'postgres', workers_in('extradb'), '0', 10);
ok(defined $took, 'after taking it off the list its worker stops');
cmp_ok($took // 99, '<', 5, 'within a few seconds');
# A configuration change is routine: the worker notices the reload and
# leaves on its own with a LOG line ("... stopping: the database is no longer
# in orderexp.databases"); the launcher, woken by the same reload, does not
# terminate it (it used to, and then the log got "FATAL: terminating
# background worker ... due to administrator command" whenever it won the
# race).
is(log_problems($node, $log_offset), '',
	'the worker taken off the list stops without a FATAL in the log');
check_unswept($node, 'extradb', 2,
	'orders of the database taken off the list are no longer closed',
	'and no worker comes back');
is($node->safe_psql('postgres', workers_in('shopdb')),
	'1', 'the worker of shopdb keeps running');
$node->safe_psql('shopdb',
	q{INSERT INTO orders (id, created_at) VALUES (3, now() - interval '1 hour')});
ok( defined wait_for(
		$node, 'shopdb', q{SELECT status FROM orders WHERE id = 3},
		'closed', 10),
	'and keeps closing orders');

($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE extradb');
is($ret, 0, 'the database taken off the list can be dropped') or diag $err;

# --- the extension dropped, and installed again ---------------------------------

# At the start of every tick the worker asks whether orderexp is still
# installed: its catalog cache says so until the drop's invalidations reset
# it, then pg_extension says not, and the worker leaves.  The launcher's
# next workers leave at once; CREATE EXTENSION brings one that stays.
my $shop_worker = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity
	   WHERE backend_type = 'orderexp worker' AND datname = 'shopdb'});
like($shop_worker, qr/^\d+$/, 'shopdb has its worker');
$log_offset = -s $node->logfile;
$node->safe_psql('shopdb', 'DROP EXTENSION orderexp CASCADE');
$took = wait_for($node, 'postgres',
	qq{SELECT count(*) FROM pg_stat_activity WHERE pid = $shop_worker}, '0', 10);
ok(defined $took, 'the worker of shopdb leaves once orderexp is dropped');
cmp_ok($took // 99, '<', 5, 'within a few seconds');
$node->safe_psql('shopdb',
	q{INSERT INTO orders (id, created_at) VALUES (4, now() - interval '1 hour')});
usleep(2_500_000);
is($node->safe_psql('shopdb', q{SELECT status FROM orders WHERE id = 4}),
	'unpaid', 'without orderexp, no order is closed');
$node->safe_psql('shopdb', 'CREATE EXTENSION orderexp');
$node->safe_psql('shopdb',
	q{SELECT orderexp.set_close_policy('orders', interval '15 minutes')});
ok( defined wait_for(
		$node, 'shopdb', q{SELECT status FROM orders WHERE id = 4},
		'closed', 15),
	'installed and registered again, the overdue order is closed');
ok(defined wait_for($node, 'postgres', workers_in('shopdb'), '1', 5),
	'by one worker in shopdb');
is(log_problems($node, $log_offset), '',
	'dropping and installing orderexp again: no errors, no crash in the log');

# --- all along ---------------------------------------------------------------------

is( log_problems(
		$node, 0,
		qr/FATAL:  terminating background worker "orderexp worker" due to administrator command/
	),
	'',
	'no other errors and no crash in the log');
is(launcher_pid($node), $launcher_pid, 'the launcher ran all along');

$node->stop;
done_testing();
