
# Copyright (c) 2026, orderexp developers

# Durability across pg_dump / pg_restore, and the upgrade from 1.0.
#
# Dump: a database with a registered table, policies, timers (one extended),
# outbox rows and an extension token is dumped (custom format) and restored
# into a fresh database.  orderexp's tables, sequences and secret come back
# as they were, the worker there closes the orders that come due, and the
# token made before the dump still works.
#
# Upgrade: CREATE EXTENSION orderexp VERSION '1.0' with the same kind of
# data, then ALTER EXTENSION orderexp UPDATE; every object of the extension
# (read from the catalog: functions, tables, columns, indexes, constraints,
# triggers, views, sequences, event triggers, ACLs, initial privileges,
# comments, the list of tables pg_dump dumps) must be identical to a fresh
# CREATE EXTENSION in another database, and the upgraded data keeps working:
# the worker closes, and the 1.0 token still extends.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Utils;
use Test::More;

# paused until the restored state has been compared
my $node = new_orderexp_node('dump',
	'orderexp.databases' => 'src,dst,old,fresh',
	'orderexp.enabled'   => 'off');
for my $db (qw(src old fresh))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}

# orders 1-10 unpaid: 1-3 due in 15 s, the others in an hour; 4 paid;
# 5 cancelled; 6 extended; a token for 7, saved in a table of the user
sub fill
{
	my ($db) = @_;
	create_orders($node, $db, 'orders',
		q{interval '1 hour', remind_before => '10 minutes', extend_by => '5 minutes',
		  max_extensions => 2, channels => '{email,sms}'});
	$node->safe_psql(
		$db, q{
INSERT INTO orders (id, created_at)
SELECT i, CASE WHEN i <= 3 THEN now() - interval '1 hour' + interval '15 seconds' ELSE now() END
  FROM generate_series(1, 10) i;
UPDATE orders SET status = 'paid' WHERE id = 4;
SELECT orderexp.cancel_order('orders', 5, 'test');
SELECT orderexp.extend_order('orders', 6);
CREATE TABLE saved_tokens AS SELECT 7 AS id, orderexp.extension_token('orders', 7) AS token;
CREATE TABLE porders (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
					  created_at timestamptz NOT NULL DEFAULT now()) PARTITION BY RANGE (id);
CREATE TABLE porders_1 PARTITION OF porders FOR VALUES FROM (0) TO (100);
CREATE TABLE porders_2 PARTITION OF porders FOR VALUES FROM (100) TO (200);
SELECT orderexp.set_close_policy('porders', '1 hour');
INSERT INTO porders (id) VALUES (1), (101);
});
}

# everything orderexp keeps in a database, as text
my $state_sql = q{
SELECT 'tables', string_agg(t::text, ';' ORDER BY t.order_table::text) FROM orderexp.tables t
UNION ALL
SELECT 'policies', string_agg(p::text, ';' ORDER BY p.id) FROM orderexp.policies p
UNION ALL
SELECT 'timers', string_agg(t::text, ';' ORDER BY t.order_key) FROM orderexp.timers t
UNION ALL
SELECT 'outbox', string_agg(o::text, ';' ORDER BY o.id) FROM orderexp.outbox o
UNION ALL
SELECT 'secret', md5(string_agg(s::text, ';')) FROM orderexp.secret s
UNION ALL
SELECT 'token_tables', string_agg(x::text, ';') FROM orderexp.token_tables x
UNION ALL
SELECT 'sequences', concat_ws(',',
	(SELECT last_value FROM orderexp.outbox_id_seq),
	(SELECT last_value FROM orderexp.policies_id_seq),
	(SELECT last_value FROM orderexp.timer_generation))
UNION ALL
SELECT 'feedback', string_agg(f::text, ';' ORDER BY f.id) FROM orderexp.feedback f
UNION ALL
SELECT 'explanation_templates', string_agg(x::text, ';' ORDER BY x.step, x.lang)
  FROM orderexp.explanation_templates x
UNION ALL
SELECT 'orders', string_agg(o::text, ';' ORDER BY o.id) FROM orders o
UNION ALL
SELECT 'porders', string_agg(o::text, ';' ORDER BY o.id) FROM porders o
ORDER BY 1};

# --- dump and restore -------------------------------------------------------------

$node->safe_psql('src', 'CREATE EXTENSION orderexp');
fill('src');
# 1.3: feedback, and the shop's own templates (dumped; orderexp's defaults are not)
$node->safe_psql(
	'src', q{
SELECT orderexp.record_feedback('orders', 5, 'complaint', 'cancelled by mistake');
SELECT orderexp.set_explanation_template('placed', 'Bestellung {order} vom {at}.', 'de');
SELECT orderexp.set_explanation_template('paid', 'Paid, {at}.');
});
my $src_state = $node->safe_psql('src', $state_sql);

my $dump = $node->basedir . '/src.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
	'pg_dump of a database with orderexp');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok(
	[ 'pg_restore', '--single-transaction', '-d', $node->connstr('dst'), $dump ],
	'pg_restore into a fresh database');

is($node->safe_psql('dst', $state_sql), $src_state,
	'policies, timers, outbox, secret, token ids, sequences, feedback, templates and orders are restored as they were');
is( $node->safe_psql(
		'dst', q{SELECT count(*) FILTER (WHERE lang = 'default') > 10,
		               string_agg(lang, ',' ORDER BY lang) FILTER (WHERE lang <> 'default')
		          FROM orderexp.explanation_templates}),
	't|*,de', 'orderexp\'s default templates once, and the shop\'s own');
is( $node->safe_psql(
		'dst', q{SELECT orderexp.explain_order('orders', 4, 'de') LIKE 'Bestellung 4 vom %'}),
	't', 'and explain_order() uses them');
is( $node->safe_psql(
		'dst', q{
SELECT (SELECT nextval('orderexp.outbox_id_seq') > max(id) FROM orderexp.outbox),
       (SELECT nextval('orderexp.timer_generation') > max(generation) FROM orderexp.timers),
       (SELECT nextval('orderexp.policies_id_seq') > max(id) FROM orderexp.policies)}),
	't|t|t', 'the sequences continue after the restored rows');
set_guc($node, 'orderexp.enabled', 'on');
is( $node->safe_psql(
		'dst', q{SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
		          WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'orderexp_%'}),
	'orderexp_status,orderexp_timer_insert,orderexp_timer_truncate',
	'the row and truncate triggers are restored');

# the worker of the restored database closes what comes due
ok( defined wait_for(
		$node, 'dst',
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM orders WHERE status = 'closed'},
		'1,2,3', 30),
	'the worker closes the restored orders that come due');
is( $node->safe_psql(
		'dst', q{SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed'}),
	'6', 'with one event per channel each');
like(
	$node->safe_psql(
		'dst',
		q{SELECT orderexp.extend_order_by_token(token) > now() FROM saved_tokens WHERE id = 7}),
	qr/^t$/,
	'the token made before the dump extends the order in the restored database');
is( $node->safe_psql(
		'dst',
		q{SELECT extensions, token_extensions FROM orderexp.timers WHERE order_key = '7'}),
	'1|1', 'once');
$node->safe_psql('dst',
	q{INSERT INTO orders (id) VALUES (11); INSERT INTO porders (id) VALUES (2), (102)});
is( $node->safe_psql(
		'dst', q{SELECT string_agg(order_table || ':' || order_key, ',' ORDER BY order_table::text, order_key)
		           FROM orderexp.timers WHERE order_key IN ('11', '2', '102')}),
	'orders:11,porders:102,porders:2',
	'new orders are tracked in the restored database, partitions too');
like(
	$node->safe_psql('dst',
		q{SELECT orderexp.extend_order_by_token(orderexp.extension_token('orders', 11)) > now()}),
	qr/^t$/,
	'and their tokens work');

# --- upgrade from 1.0 ---------------------------------------------------------------

$node->safe_psql('old', q{CREATE EXTENSION orderexp VERSION '1.0'});
fill('old');
$node->safe_psql('old', 'ALTER EXTENSION orderexp UPDATE');
$node->safe_psql('fresh', 'CREATE EXTENSION orderexp');
is($node->safe_psql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'orderexp'}),
	$node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'orderexp'}),
	'the upgraded extension has the default version');

# Every member object of the extension with its definition, one line each.
# Names, not OIDs; the data of the config tables is not part of it.
my $objects_sql = q{
WITH members AS (
	SELECT d.classid, d.objid
	  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'orderexp' AND d.deptype = 'e'),
lines AS (
	-- functions: definition, ACL, comment
	SELECT 'function ' || p.oid::regprocedure::text || E'\n' ||
		   CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prokind::text END ||
		   E'\nacl ' || coalesce(p.proacl::text, '-') ||
		   E'\ncomment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-') AS line
	  FROM members m JOIN pg_proc p ON p.oid = m.objid WHERE m.classid = 'pg_proc'::regclass
	UNION ALL
	-- relations: kind, options, ACL, comment, columns
	SELECT 'relation ' || c.oid::regclass::text || ' kind ' || c.relkind::text ||
		   ' persistence ' || c.relpersistence::text || ' rls ' || c.relrowsecurity::text ||
		   E'\nacl ' || coalesce(c.relacl::text, '-') ||
		   E'\ncomment ' || coalesce(obj_description(c.oid, 'pg_class'), '-') ||
		   coalesce(E'\nview ' || pg_get_viewdef(c.oid), '') ||
		   coalesce((SELECT string_agg(E'\ncolumn ' || a.attnum || ' ' || quote_ident(a.attname) || ' ' ||
									   format_type(a.atttypid, a.atttypmod) ||
									   CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END ||
									   coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '') ||
									   coalesce(' COLLATE ' || co.collname, '') ||
									   coalesce(' comment ' || col_description(c.oid, a.attnum), '') ||
									   coalesce(' acl ' || a.attacl::text, ''),
									   '' ORDER BY a.attnum)
					   FROM pg_attribute a
					   LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
					   LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
											   AND co.collname <> 'default'
					  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') ||
		   coalesce((SELECT E'\nsequence ' || concat_ws(' ', s.seqtypid::regtype, s.seqstart, s.seqincrement,
														s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
					   FROM pg_sequence s WHERE s.seqrelid = c.oid), '')
	  FROM members m JOIN pg_class c ON c.oid = m.objid WHERE m.classid = 'pg_class'::regclass
	UNION ALL
	-- indexes of the member tables
	SELECT 'index ' || pg_get_indexdef(i.indexrelid)
	  FROM members m JOIN pg_index i ON i.indrelid = m.objid WHERE m.classid = 'pg_class'::regclass
	UNION ALL
	-- constraints of the member tables
	SELECT 'constraint ' || co.conrelid::regclass::text || ' ' || co.conname || ' ' ||
		   pg_get_constraintdef(co.oid)
	  FROM members m JOIN pg_constraint co ON co.conrelid = m.objid WHERE m.classid = 'pg_class'::regclass
	UNION ALL
	-- triggers on the member tables
	SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
	  FROM members m JOIN pg_trigger t ON t.tgrelid = m.objid
	 WHERE m.classid = 'pg_class'::regclass AND NOT t.tgisinternal
	UNION ALL
	-- event triggers
	SELECT 'event trigger ' || et.evtname || ' on ' || et.evtevent || ' tags ' ||
		   coalesce(et.evttags::text, '-') || ' function ' || et.evtfoid::regproc::text ||
		   ' enabled ' || et.evtenabled::text
	  FROM members m JOIN pg_event_trigger et ON et.oid = m.objid
	 WHERE m.classid = 'pg_event_trigger'::regclass
	UNION ALL
	-- types other than the tables' row types
	SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text
	  FROM members m JOIN pg_type t ON t.oid = m.objid WHERE m.classid = 'pg_type'::regclass
	UNION ALL
	-- anything else that is a member, by its description
	SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0)
	  FROM members m
	 WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass,
							 'pg_event_trigger'::regclass, 'pg_type'::regclass)
	UNION ALL
	-- the initial privileges pg_dump compares against
	SELECT 'init_privs ' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid) || ' ' ||
		   ip.privtype::text || ' ' || ip.initprivs::text
	  FROM pg_init_privs ip
	  JOIN members m ON m.classid = ip.classoid AND m.objid = ip.objoid
	UNION ALL
	-- what pg_dump dumps of the config tables
	SELECT 'config ' || x.tbl::regclass::text || ' ' || coalesce(x.cond, '-')
	  FROM pg_extension e
	 CROSS JOIN LATERAL unnest(e.extconfig, e.extcondition) AS x(tbl, cond)
	 WHERE e.extname = 'orderexp'
	UNION ALL
	SELECT 'schema orderexp owner ' || (n.nspowner = e.extowner)::text || ' acl ' ||
		   coalesce(n.nspacl::text, '-')
	  FROM pg_namespace n, pg_extension e
	 WHERE n.nspname = 'orderexp' AND e.extname = 'orderexp')
SELECT string_agg(line, E'\n' ORDER BY line) FROM lines};

my $upgraded = $node->safe_psql('old', $objects_sql);
my $fresh = $node->safe_psql('fresh', $objects_sql);
my $nobjects = $node->safe_psql('fresh',
	q{SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	   WHERE e.extname = 'orderexp' AND d.deptype = 'e'});
cmp_ok($nobjects, '>', 50, "the fresh extension has $nobjects member objects to compare");
ok($upgraded eq $fresh, 'the upgraded extension is identical to a fresh one')
  or do
{
	# the first lines that differ, for the log
	my @u = split /\n/, $upgraded;
	my @f = split /\n/, $fresh;
	my %inf = map { $_ => 1 } @f;
	my %inu = map { $_ => 1 } @u;
	diag "only after the upgrade: $_" for (grep { !$inf{$_} } @u)[ 0 .. 9 ];
	diag "only when fresh: $_" for (grep { !$inu{$_} } @f)[ 0 .. 9 ];
};

# the upgraded data keeps working
ok( defined wait_for(
		$node, 'old',
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM orders WHERE status = 'closed'},
		'1,2,3', 30),
	'after the upgrade the worker closes the orders that come due');
like(
	$node->safe_psql(
		'old',
		q{SELECT orderexp.extend_order_by_token(token) > now() FROM saved_tokens WHERE id = 7}),
	qr/^t$/,
	'the token made by 1.0 extends its order after the upgrade');
my ($ret, $stdout, $stderr) = $node->psql('old',
	q{SELECT orderexp.extend_order_by_token(token) FROM saved_tokens WHERE id = 7});
like($stderr, qr/already been used/, 'but only once');
is( $node->safe_psql(
		'old', q{
SELECT string_agg(kind || ':' || n, ',' ORDER BY kind)
  FROM (SELECT kind, count(*) AS n FROM orderexp.outbox GROUP BY kind) k}),
	'cancelled:2,closed:6,extended:4,reminder:6',
	'the outbox holds the 1.0 events and those after the upgrade');
like(
	$node->safe_psql('old',
		q{SELECT orderexp.cancel_order('orders', 8, 'after the upgrade')}),
	qr/^t$/,
	'cancel_order works after the upgrade (through its gate)');

unlike(
	slurp_file($node->logfile),
	qr/(PANIC|TRAP|server process .* was terminated)/,
	'no crash in the log');
$node->stop;
done_testing();
