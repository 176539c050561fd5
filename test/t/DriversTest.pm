
# Copyright (c) 2026, orderexp developers

# Shared by the driver tests (060_drivers_node.pl, 061_drivers_python.pl): a
# node with orderexp, a database "drivers" with the tables the scripts use
# (keys bigint, uuid and text; registered by the scripts themselves, with
# bound parameters), and running a script against it, each line "ok WHAT"
# or "not ok WHAT: WHY" of its output one test.
#
# This file is not a test: PROVE_TESTS names test/t/*.pl only.

package DriversTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use OrderexpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(drivers_node run_driver_script);

# drivers_node($name): a started node with database "drivers" ready
sub drivers_node
{
	my ($name) = @_;
	my $node = new_orderexp_node($name);
	$node->safe_psql('postgres', 'CREATE DATABASE drivers');
	$node->safe_psql('drivers', q{
		CREATE EXTENSION orderexp;
		CREATE SCHEMA drv;
		CREATE TABLE drv.big (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
							  created_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE drv.big2 (LIKE drv.big INCLUDING ALL);
		CREATE TABLE drv.uu (id uuid PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
							 created_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE drv.uu2 (LIKE drv.uu INCLUDING ALL);
		CREATE TABLE drv.txt (id text PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
							  created_at timestamptz NOT NULL DEFAULT now());
	});
	return $node;
}

# run_driver_script($node, $timeout, @cmd): run @cmd with the connection to
# database "drivers" in PG* variables; one test per line of its output, and
# one that it exited 0 after its last line "done 0 failed"
sub run_driver_script
{
	my ($node, $timeout, @cmd) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGHOST}     = $node->host;
	local $ENV{PGPORT}     = $node->port;
	local $ENV{PGUSER}     = 'postgres';
	local $ENV{PGDATABASE} = 'drivers';
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($timeout));
	};
	my $n = 0;
	for my $line (split /\n/, $out)
	{
		if ($line =~ /^ok (.*)$/)
		{
			pass($1);
			$n++;
		}
		elsif ($line =~ /^not ok (.*)$/)
		{
			fail($1);
			$n++;
		}
	}
	ok($ok && $out =~ /^done 0 failed$/m, "@cmd ran to its end, $n checks")
	  or diag("stdout:\n$out\nstderr:\n$err\n" . ($@ // ''));
	return $n;
}

1;
