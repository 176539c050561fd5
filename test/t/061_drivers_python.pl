
# Copyright (c) 2026, orderexp developers

# Every public function of orderexp called from psycopg 3 (Debian's
# python3-psycopg), which sends ints, lists and timedelta typed but str
# untyped: keys as int, str and uuid.UUID against bigint, uuid and text
# keys, arrays as lists, intervals as timedelta and as strings, LISTEN
# orderexp, claim and ack.  The checks are test/drivers.py's, one test per
# line of its output.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use DriversTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Debian's python3, which sees Debian's python3-psycopg (scripts/lib.sh)
my $python = '/usr/bin/python3';
ok(system($python, '-c', 'import psycopg') == 0,
	'psycopg 3 is installed (python3-psycopg, scripts/lib.sh)')
  or BAIL_OUT('python3-psycopg is not installed');

my $node = drivers_node('drivers_python');
my $n = run_driver_script($node, 60, $python, "$FindBin::RealBin/../drivers.py");
cmp_ok($n, '>=', 90, 'the script made all its checks');

$node->stop;
done_testing();
