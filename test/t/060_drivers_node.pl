
# Copyright (c) 2026, orderexp developers

# Every public function of orderexp called from node-postgres (npm pg 8,
# installed into test/node by scripts/lib.sh), which sends every bound
# parameter untyped: keys (numbers, bigint, uuid and text keys), arrays of
# keys, intervals and timestamps as strings, LISTEN orderexp, claim and
# ack.  The checks are test/node/drivers.js's, one test per line of its
# output.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use DriversTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nodedir = "$FindBin::RealBin/../node";

ok(-f "$nodedir/node_modules/pg/package.json",
	'the pg package is installed in test/node (scripts/lib.sh: ox_install_node_modules)')
  or BAIL_OUT("npm ci --prefix $nodedir first");
my $nodejs = (grep { -x "$_/node" } split /:/, $ENV{PATH})[0];
ok(defined $nodejs, 'node is on PATH') or BAIL_OUT('no node on PATH');

my $node = drivers_node('drivers_node');
my $n = run_driver_script($node, 60, "$nodejs/node", "$nodedir/drivers.js");
cmp_ok($n, '>=', 60, 'the script made all its checks');

$node->stop;
done_testing();
