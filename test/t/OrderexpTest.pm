
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
  log_lines order_invariants);

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

# order_invariants($node, $dbname, $table, $channels): a query over every
# order of $table (key column id) and every event of the outbox, returning
# name=count for each kind of violation, all of which must be 0:
#   closed_events     a closed order without exactly one 'closed' event per
#                     channel (never closed twice, never without its events)
#   stray_closed      a 'closed' event for an order that is not closed
#   cancelled_events  a cancelled order without exactly one 'cancelled'
#                     event per channel
#   stray_cancelled   a 'cancelled' event for an order that is not cancelled
#   closed_early      a 'closed' event written before the deadline it names
#   unknown_orders    events of orders that do not exist
#   untracked         an unpaid order without a timer
#   stale_timers      a timer of an order that is closed or cancelled
sub order_invariants
{
	my ($node, $dbname, $table, $channels) = @_;
	return $node->safe_psql(
		$dbname, qq{
WITH ev AS (
	SELECT e.order_key,
		   count(*) FILTER (WHERE e.kind = 'closed') AS closed,
		   count(DISTINCT e.channel) FILTER (WHERE e.kind = 'closed') AS closed_channels,
		   count(*) FILTER (WHERE e.kind = 'cancelled') AS cancelled,
		   bool_or(e.kind = 'closed' AND (e.payload->>'close_at')::timestamptz > e.created_at)
			 AS early
	  FROM orderexp.outbox e
	 WHERE e.order_table = '$table'::regclass
	 GROUP BY e.order_key),
o AS (
	SELECT o.id::text AS order_key, o.status,
		   EXISTS (SELECT 1 FROM orderexp.timers t
					WHERE t.order_table = '$table'::regclass AND t.order_key = o.id::text) AS tracked
	  FROM $table o)
SELECT concat_ws(' ',
	'closed_events=' || count(*) FILTER (WHERE o.status = 'closed'
		AND (coalesce(ev.closed, 0) <> $channels OR coalesce(ev.closed_channels, 0) <> $channels)),
	'stray_closed=' || count(*) FILTER (WHERE o.status <> 'closed' AND coalesce(ev.closed, 0) > 0),
	'cancelled_events=' || count(*) FILTER (WHERE o.status = 'cancelled'
		AND coalesce(ev.cancelled, 0) <> $channels),
	'stray_cancelled=' || count(*) FILTER (WHERE o.status <> 'cancelled' AND coalesce(ev.cancelled, 0) > 0),
	'closed_early=' || count(*) FILTER (WHERE ev.early),
	'unknown_orders=' || (SELECT count(*) FROM ev WHERE NOT EXISTS
							(SELECT 1 FROM o x WHERE x.order_key = ev.order_key)),
	'untracked=' || count(*) FILTER (WHERE o.status = 'unpaid' AND NOT o.tracked),
	'stale_timers=' || count(*) FILTER (WHERE o.status IN ('closed', 'cancelled') AND o.tracked))
  FROM o LEFT JOIN ev ON ev.order_key = o.order_key});
}

# the string order_invariants() returns when nothing is violated
our $NO_VIOLATIONS =
  'closed_events=0 stray_closed=0 cancelled_events=0 stray_cancelled=0 '
  . 'closed_early=0 unknown_orders=0 untracked=0 stale_timers=0';
push @EXPORT, '$NO_VIOLATIONS';

1;
