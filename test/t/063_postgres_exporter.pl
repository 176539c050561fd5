
# Copyright (c) 2026, orderexp developers

# contrib/postgres_exporter.yml with Debian's prometheus-postgres-exporter:
# the exporter, as a role that is only a member of pg_monitor, scrapes a
# node where orderexp closed orders, keeps others pending, has an event
# dead and one delivered; the metrics read over HTTP show the backlog, the
# oldest deadline, the lateness of the closes, the deliveries, the dead
# letters and the worker, without an order key anywhere, and no query of
# the file failed.  The pg_monitor views are refused to a role outside
# pg_monitor, and the operator views stay closed to pg_monitor.

use strict;
use warnings;

use FindBin;
use HTTP::Tiny;
use IPC::Run;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $queries  = "$FindBin::RealBin/../../contrib/postgres_exporter.yml";
ok(-x $exporter, 'prometheus-postgres-exporter is installed (scripts/lib.sh)')
  or BAIL_OUT('apt-get install prometheus-postgres-exporter');

my $node = new_orderexp_node('exporter');
$node->safe_psql('postgres', q{
	CREATE EXTENSION orderexp;
	CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
	CREATE ROLE nosy LOGIN;
	CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
								created_at timestamptz NOT NULL DEFAULT now(), email text);
	SELECT orderexp.set_close_policy('public.orders', '1 minute', payload_columns => '{email}');
	INSERT INTO public.orders (id, created_at, email)
		SELECT g, now() - interval '90 seconds', 'secret' || g || '@example.com'
		  FROM generate_series(1, 5) g;
	INSERT INTO public.orders (id, email) VALUES (6, 'x@example.com'), (7, 'y@example.com');
});
# the worker closes the five past their deadline
ok(defined wait_for($node, 'postgres',
		"SELECT count(*) FROM public.orders WHERE status = 'closed'", '5', 30),
	'the worker closed the five orders past their deadline');
# one event delivered, one dead
$node->safe_psql('postgres', q{
	SELECT orderexp.ack(ARRAY[min(id)]) FROM orderexp.claim(1);
	SELECT orderexp.fail(min(id), 'mailbox gone', false) FROM orderexp.claim(1);
});

# the views: pg_monitor's, and nobody else's
is($node->psql('postgres', 'SELECT count(*) FROM orderexp.monitor_backlog', extra_params => [ '-U', 'nosy' ]),
	3, 'a role outside pg_monitor cannot read monitor_backlog');
is($node->psql('postgres', 'SELECT count(*) FROM orderexp.dead_letters', extra_params => [ '-U', 'monitor' ]),
	3, 'pg_monitor cannot read dead_letters (payloads)');
is($node->safe_psql('postgres', 'SELECT pending, overdue FROM orderexp.monitor_backlog',
		extra_params => [ '-U', 'monitor' ]),
	'2|0', 'pg_monitor reads the backlog of a table it does not own');

# the exporter on a free port, as monitor
my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($out, $err) = ('', '');
local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d user=monitor dbname=postgres sslmode=disable',
	$node->host, $node->port);
my $h = IPC::Run::start(
	[ $exporter, "--web.listen-address=127.0.0.1:$port", "--extend.query-path=$queries",
	  '--disable-settings-metrics', '--log.level=warn' ],
	'<', \undef, '>', \$out, '2>', \$err);

my $http = HTTP::Tiny->new(timeout => 10);
my $metrics = '';
for (1 .. 100)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	if ($res->{success} && $res->{content} =~ /^orderexp_worker_tables/m)
	{
		$metrics = $res->{content};
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($metrics ne '', 'the exporter serves metrics over HTTP') or diag("exporter stderr:\n$err");

# one sample: its value, the labels matched by a regex
sub sample
{
	my ($name, $labels) = @_;
	$labels //= qr/.*/;
	for my $line (split /\n/, $metrics)
	{
		next if $line =~ /^#/;
		if ($line =~ /^\Q$name\E(?:\{([^}]*)\})? (\S+)$/)
		{
			my ($l, $v) = ($1 // '', $2);
			return $v if $l =~ $labels;
		}
	}
	return undef;
}

my $tbl = qr/order_table="public\.orders"/;
is(sample('orderexp_backlog_pending', $tbl), 2, 'backlog: two orders pending');
is(sample('orderexp_backlog_overdue', $tbl), 0, 'backlog: none overdue');
my $oldest = sample('orderexp_backlog_oldest_deadline_epoch', $tbl) // 0;
cmp_ok(abs($oldest - (time + 60)), '<', 30, 'backlog: the oldest deadline is a minute from now');
is(sample('orderexp_closes_closed_last_hour', $tbl), 5, 'closes: five in the last hour');
my $late = sample('orderexp_closes_lateness_max_seconds', $tbl);
ok(defined $late && $late >= 25 && $late < 60,
	'closes: lateness, the orders were 30 s past their deadline when registered')
  or diag("lateness $late");
my $kind = qr/channel="email".*kind="closed"|kind="closed".*channel="email"/;
is(sample('orderexp_delivery_dead', $kind), 1, 'delivery: one dead letter');
is(sample('orderexp_delivery_delivered_last_hour', $kind), 1, 'delivery: one delivered in the last hour');
is(sample('orderexp_delivery_pending', $kind), 3, 'delivery: three waiting for a relay');
is(sample('orderexp_delivery_made_last_hour', $kind), 5, 'delivery: five made in the last hour');
ok(defined sample('orderexp_delivery_on_time_share'), 'delivery: on_time_share is exported');
is(sample('orderexp_worker_workers'), 1, 'worker: one in database postgres');
is(sample('orderexp_worker_dead_letters'), 1, 'worker: one dead letter');
is(sample('orderexp_worker_tables_failing'), 0, 'worker: no table failing');
unlike($metrics, qr/order_key|example\.com/, 'no order key and no payload in the metrics');
is(sample('pg_exporter_last_scrape_error'), 0, 'no query of the file failed')
  or diag("exporter stderr:\n$err");

$h->kill_kill;
$node->stop;
done_testing();
