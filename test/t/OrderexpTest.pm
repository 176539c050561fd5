
# Copyright (c) 2026, orderexp developers

# Helpers shared by the orderexp TAP tests (test/t/*.pl): a node with orderexp
# preloaded, an orders table under a close policy, polling a query until it
# returns what a test expects, changing a setting with a reload, and reading
# the server log.  A test loads it with
#
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use OrderexpTest;
#
# This file is not a test: PROVE_TESTS names test/t/*.pl only.

package OrderexpTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT =
  qw(new_orderexp_node create_orders wait_for set_guc workers_in launcher_pid
  log_lines);

# new_orderexp_node($name, [\%init_options,] %extra_conf): a new node, with
# orderexp in shared_preload_libraries, a worker for database postgres and a
# naptime of 100 ms; %extra_conf adds settings or overrides these, and
# %init_options goes to init() (e.g. allows_streaming => 1).  Started.
sub new_orderexp_node
{
	my ($name, @args) = @_;
	my %init_options = ref $args[0] eq 'HASH' ? %{ shift @args } : ();
	my %conf = (
		'shared_preload_libraries' => 'orderexp',
		'orderexp.naptime' => '100',
		'orderexp.databases' => 'postgres',
		@args);

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init_options);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = '$conf{$_}'\n" } sort keys %conf));
	$node->start;
	return $node;
}

# create_orders($node, $dbname, $table, $policy, %opt): in $dbname, where
# orderexp is installed, a table $table (id integer PRIMARY KEY, status text
# DEFAULT 'unpaid', created_at timestamptz DEFAULT now(), and with amount => 1
# amount numeric DEFAULT 10) under orderexp.set_close_policy('$table', $policy);
# $policy is SQL, the policy's arguments after the table.
sub create_orders
{
	my ($node, $dbname, $table, $policy, %opt) = @_;
	my $amount = $opt{amount} ? ', amount numeric NOT NULL DEFAULT 10' : '';
	$node->safe_psql(
		$dbname, qq{
CREATE TABLE $table (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now()$amount);
SELECT orderexp.set_close_policy('$table', $policy);
});
}

# wait_for($node, $dbname, $query, $expected, $timeout): poll $query in
# $dbname until it returns $expected, for at most $timeout seconds; an error
# (the server restarting, say) counts as "not yet".  Returns the seconds it
# took, or undef on timeout, with the last output as a diagnostic.
sub wait_for
{
	croak 'wait_for($node, $dbname, $query, $expected, $timeout)' unless @_ == 5;
	my ($node, $dbname, $query, $expected, $timeout) = @_;
	my $start = time();
	my $last  = '';
	while (time() - $start < $timeout)
	{
		my ($ret, $stdout, $stderr) =
		  $node->psql($dbname, $query, on_error_stop => 1);
		$last = $stdout;
		return time() - $start if $ret == 0 && $stdout eq $expected;
		usleep(50_000);
	}
	diag "timed out after ${timeout}s waiting for <$expected> from: $query\n"
	  . "last output: <$last>";
	return undef;
}

# set_guc($node, $name, $value): ALTER SYSTEM SET $name = '$value' and reload
# the configuration.
sub set_guc
{
	my ($node, $name, $value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET $name = '$value'; SELECT pg_reload_conf();");
}

# workers_in($dbname): a query counting the orderexp workers connected to
# $dbname.
sub workers_in
{
	my ($dbname) = @_;
	return qq{SELECT count(*) FROM pg_stat_activity
	           WHERE backend_type = 'orderexp worker' AND datname = '$dbname'};
}

# launcher_pid($node): the pid of the orderexp launcher ('' when none runs).
sub launcher_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'orderexp launcher'});
}

# log_lines($node, $offset, $filter): the lines of $node's log from byte
# $offset on (the whole log when undef) for which $filter, a code ref seeing
# the line in $_, is true, joined by newlines; '' when there are none.
sub log_lines
{
	my ($node, $offset, $filter) = @_;
	my @lines = split /\n/, slurp_file($node->logfile, $offset // 0);
	return join("\n", grep { $filter->() } @lines);
}

1;
