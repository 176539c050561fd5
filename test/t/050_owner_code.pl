
# Copyright (c) 2026, orderexp developers

# A table owner's code runs as the table owner, never as the extension
# owner: the escalation routes of the worker and of run_due(), tried as an
# attacker with an ordinary account would.
#
# The owner of a registered table puts its own code everywhere the close
# and the reminder of an order evaluate it: a BEFORE UPDATE trigger, a CHECK
# constraint, a stored generated column, an index expression (an IMMUTABLE
# wrapper of a VOLATILE function), a cast of a payload column's enum to json
# and a cast of the category column's enum to text.  Each piece tries
# ALTER ROLE ... SUPERUSER and writes down the role it ran as.  Then:
#
#   worker   (database postgres) owner_a, a member of orderexp_admin,
#            registers the table itself; the worker reminds and closes.
#   run_due  (database cron, no worker) a superuser registers owner_c's
#            table, owner_c adds its trigger afterwards, and a superuser
#            calls run_due() as pg_cron's job would; owner_c itself may no
#            longer call run_due().
#   1.2      (database old) the same table in a database still at 1.2 under
#            this library: the one-statement batch of 1.2 runs the code as
#            the extension owner, and owner_old does become superuser.  This
#            is the control that shows the test can see the escalation; after
#            ALTER EXTENSION UPDATE the same database is safe.
#
#   gates    (database cron) app_b, an application role with UPDATE on
#            owner_c's table, cancels, extends and reopens orders: the
#            table's code runs as app_b, as for app_b's own UPDATE.
#   register a superuser registers owner_c's table with an order in it:
#            the scan of existing rows runs as owner_c; so does reading the
#            pending view.
#
# Each time the order is still closed (or reminded, cancelled, ...) with its
# event, and every piece of code ran as the table's owner or the caller,
# never as the extension owner.
#
#   settings (databases cron and postgres) owner_s's trigger sets its
#            search_path to its own schema, where an operator = (text, text)
#            of its own waits for code that runs as the extension owner
#            after the trigger (a gate's body, the sweep's next statement,
#            the session that called run_due()), and work_mem to 77kB; a
#            plain SET outlives the function that ran it.  Neither setting
#            may outlive the statement orderexp ran as the owner or the
#            caller: the gates, run_due() and the worker go on with their
#            own settings, the operator never runs.  And a key of a type of
#            owner_s's own, whose cast to text is owner_s's function: the
#            gates convert it as their caller, never as the extension owner.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderexpTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_orderexp_node('owner_code');
$node->safe_psql('postgres', 'CREATE EXTENSION orderexp');
for my $db (qw(cron old))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
$node->safe_psql('cron', 'CREATE EXTENSION orderexp');
$node->safe_psql('old', q{CREATE EXTENSION orderexp VERSION '1.2'});
$node->safe_psql(
	'postgres', q{
CREATE ROLE owner_a LOGIN IN ROLE orderexp_admin;
CREATE ROLE owner_c LOGIN;
CREATE ROLE owner_old LOGIN IN ROLE orderexp_admin;
CREATE ROLE cron_admin LOGIN IN ROLE orderexp_admin;
CREATE ROLE app_b LOGIN IN ROLE orderexp_app;
});

# the owner's schema, with code everywhere an update and a read evaluate it
sub owner_schema
{
	my ($db, $schema, $owner) = @_;
	$node->safe_psql($db, "CREATE SCHEMA $schema AUTHORIZATION $owner");
	$node->safe_psql(
		$db, qq{
GRANT USAGE ON SCHEMA $schema TO PUBLIC;
SET ROLE $owner;
CREATE TABLE $schema.seen (what text, who name);
GRANT INSERT ON $schema.seen TO PUBLIC;
CREATE TYPE $schema.cat AS ENUM ('book', 'toy');
CREATE TYPE $schema.mood AS ENUM ('glad', 'sad');
CREATE FUNCTION $schema.evil(what text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS \$\$
BEGIN
	BEGIN
		EXECUTE 'ALTER ROLE $owner SUPERUSER';
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	INSERT INTO $schema.seen VALUES (what, current_user);
	RETURN true;
END
\$\$;
-- only for the close's new row: the insert of an order runs it as the
-- inserting owner, which would hide what the close does
CREATE FUNCTION $schema.evil_imm(what text, v text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS \$\$
BEGIN
	IF v IS DISTINCT FROM 'unpaid' THEN
		PERFORM $schema.evil(what);
	END IF;
	RETURN v;
END
\$\$;
CREATE FUNCTION $schema.mood_json($schema.mood) RETURNS json
LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM $schema.evil('payload cast');
	RETURN to_json(\$1::text);
END
\$\$;
CREATE CAST ($schema.mood AS json) WITH FUNCTION $schema.mood_json($schema.mood);
CREATE FUNCTION $schema.cat_text($schema.cat) RETURNS text
LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM $schema.evil('category cast');
	RETURN textin(enum_out(\$1));
END
\$\$;
CREATE CAST ($schema.cat AS text) WITH FUNCTION $schema.cat_text($schema.cat);
CREATE TABLE $schema.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid'
				CHECK (status = 'closed' IS NOT TRUE OR $schema.evil('check')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	category	$schema.cat NOT NULL DEFAULT 'book',
	mood		$schema.mood NOT NULL DEFAULT 'glad',
	shadow		text GENERATED ALWAYS AS ($schema.evil_imm('generated', status)) STORED);
CREATE INDEX ON $schema.orders ($schema.evil_imm('index', status));
});
}

sub owner_trigger
{
	my ($db, $schema, $owner) = @_;
	$node->safe_psql(
		$db, qq{
SET ROLE $owner;
CREATE FUNCTION $schema.on_update() RETURNS trigger
LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM $schema.evil('trigger');
	RETURN NEW;
END
\$\$;
CREATE TRIGGER attack BEFORE UPDATE ON $schema.orders
	FOR EACH ROW EXECUTE FUNCTION $schema.on_update();
});
}

# orders 1 (due: closes) and 2 (its reminder is due, its deadline is not)
sub add_orders
{
	my ($db, $schema, $owner) = @_;
	$node->safe_psql(
		$db, qq{
SET ROLE $owner;
INSERT INTO $schema.orders (id, created_at) VALUES
	(1, now() - interval '2 hours'), (2, now() - interval '45 minutes');
});
}

my $policy = q{interval '1 hour', remind_before => '30 minutes',
	category_column => 'category', payload_columns => '{mood}'};

# what ran as whom: "what=who" lines, and whether the owner is superuser
sub seen
{
	my ($db, $schema) = @_;
	return $node->safe_psql($db,
		"SELECT string_agg(DISTINCT what || '=' || who, ',' ORDER BY what || '=' || who) FROM $schema.seen"
	);
}

sub is_superuser
{
	my ($role) = @_;
	return $node->safe_psql('postgres',
		"SELECT rolsuper FROM pg_roles WHERE rolname = '$role'");
}

# every piece of the owner's code, as "what=who" in seen()'s order
my @pieces =
  sort('category cast', 'check', 'generated', 'index', 'payload cast', 'trigger');

sub all_as
{
	my ($who) = @_;
	return join(',', map { "$_=$who" } @pieces);
}

# --- worker: owner_a registers its own table ------------------------------------

owner_schema('postgres', 'shop_a', 'owner_a');
owner_trigger('postgres', 'shop_a', 'owner_a');
$node->safe_psql('postgres',
	"SET ROLE owner_a; SELECT orderexp.set_close_policy('shop_a.orders', $policy)");
$node->safe_psql('postgres', 'TRUNCATE shop_a.seen');
add_orders('postgres', 'shop_a', 'owner_a');

ok( defined wait_for(
		$node, 'postgres',
		q{SELECT (SELECT status FROM shop_a.orders WHERE id = 1)
			  || ' ' || (SELECT count(*) FROM orderexp.outbox
						  WHERE order_table = 'shop_a.orders'::regclass AND kind = 'reminder'
							AND order_key = '2')},
		'closed 1', 30),
	'worker: the due order is closed and the other one reminded');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM orderexp.outbox
		   WHERE order_table = 'shop_a.orders'::regclass AND kind = 'closed' AND order_key = '1'}),
	'1',
	'worker: the close wrote its event');
is( $node->safe_psql(
		'postgres',
		q{SELECT payload -> 'order' ->> 'mood' FROM orderexp.outbox
		   WHERE order_table = 'shop_a.orders'::regclass AND kind = 'closed'}),
	'glad',
	'worker: the payload went through the owner\'s cast');
is(seen('postgres', 'shop_a'), all_as('owner_a'),
	'worker: trigger, check, generated column, index expression and casts ran as owner_a');
is(is_superuser('owner_a'), 'f', 'worker: owner_a did not become superuser');
is( $node->safe_psql(
		'postgres',
		q{SELECT coalesce(last_error, 'none') FROM orderexp.tables
		   WHERE order_table = 'shop_a.orders'::regclass}),
	'none',
	'worker: no error recorded for the table');

# --- run_due: owner_c's table, registered by a superuser -------------------------

owner_schema('cron', 'shop_c', 'owner_c');
# an order in the table before it is registered: the registration scans it
$node->safe_psql('cron',
	q{SET ROLE owner_c; INSERT INTO shop_c.orders (id, category) VALUES (10, 'toy')});
$node->safe_psql('cron', "SELECT orderexp.set_close_policy('shop_c.orders', $policy)");
is( $node->safe_psql('cron',
		q{SELECT count(*) FROM orderexp.timers WHERE order_table = 'shop_c.orders'::regclass AND order_key = '10'}),
	'1', 'register: the existing order is tracked');
is(seen('cron', 'shop_c'), 'category cast=owner_c',
	'register: the scan of existing rows ran the category cast as owner_c, not as the superuser who registered');
$node->safe_psql('cron', 'TRUNCATE shop_c.seen');
is( $node->safe_psql('cron',
		q{SELECT category FROM orderexp.pending WHERE order_table = 'shop_c.orders'::regclass AND order_key = '10'}),
	'toy', 'pending: the superuser reads the order with its category');
is(seen('cron', 'shop_c'), 'category cast=owner_c',
	'pending: the category cast ran as owner_c');
owner_trigger('cron', 'shop_c', 'owner_c');
$node->safe_psql('cron', 'TRUNCATE shop_c.seen');
add_orders('cron', 'shop_c', 'owner_c');

my ($ret, $stdout, $stderr) =
  $node->psql('cron', 'SET ROLE owner_c; SELECT orderexp.run_due()');
isnt($ret, 0, 'run_due: a plain table owner may not call run_due()');
like($stderr, qr/permission denied for function run_due/,
	'run_due: ... permission denied');

is($node->safe_psql('cron', 'SELECT reminded, closed FROM orderexp.run_due()'),
	'1|1', 'run_due as the superuser (pg_cron\'s job) reminds one order and closes one');
is(seen('cron', 'shop_c'), all_as('owner_c'),
	'run_due: trigger, check, generated column, index expression and casts ran as owner_c');
is(is_superuser('owner_c'), 'f', 'run_due: owner_c did not become superuser');
is( $node->safe_psql(
		'cron',
		q{SELECT string_agg(kind || ':' || order_key, ',' ORDER BY kind) FROM orderexp.outbox
		   WHERE order_table = 'shop_c.orders'::regclass}),
	'closed:1,reminder:2',
	'run_due: one close and one reminder event');

# --- gates: app_b cancels, extends and reopens owner_c's orders ------------------

$node->safe_psql('cron', q{GRANT SELECT, UPDATE ON shop_c.orders TO app_b});
$node->safe_psql('cron', q{SET ROLE owner_c; INSERT INTO shop_c.orders (id) VALUES (4), (5)});
$node->safe_psql('cron', 'TRUNCATE shop_c.seen');
is( $node->safe_psql(
		'cron', q{SET ROLE app_b; SELECT orderexp.cancel_order('shop_c.orders', 2, 'asked')}),
	't', 'cancel_order by app_b cancels the order');
like(seen('cron', 'shop_c'), qr/^(?!.*=postgres)(?=.*payload cast=app_b)(?=.*trigger=app_b)/,
	'cancel_order: the trigger and the payload cast ran as app_b, nothing as the extension owner');
$node->safe_psql('cron', 'TRUNCATE shop_c.seen');
is( $node->safe_psql(
		'cron', q{SET ROLE app_b; SELECT orderexp.cancel_orders('shop_c.orders', ARRAY[4], 'asked')}),
	'1', 'cancel_orders by app_b cancels the order');
like(seen('cron', 'shop_c'), qr/^(?!.*=postgres)(?=.*payload cast=app_b)(?=.*trigger=app_b)/,
	'cancel_orders: the trigger and the payload cast ran as app_b');
$node->safe_psql('cron', 'TRUNCATE shop_c.seen');
is( $node->safe_psql(
		'cron', q{SET ROLE app_b; SELECT orderexp.extend_order('shop_c.orders', 5, interval '1 hour') > now()}),
	't', 'extend_order by app_b extends the order');
like(seen('cron', 'shop_c'), qr/^(?!.*=postgres).*payload cast=app_b/,
	'extend_order: the payload cast ran as app_b');
$node->safe_psql('cron', 'TRUNCATE shop_c.seen');
is( $node->safe_psql(
		'cron', q{SET ROLE app_b; SELECT orderexp.reopen_order('shop_c.orders', 1) > now()}),
	't', 'reopen_order by app_b reopens the closed order');
like(seen('cron', 'shop_c'), qr/^(?!.*=postgres).*trigger=app_b/,
	'reopen_order: the trigger ran as app_b');
is( $node->safe_psql(
		'cron',
		q{SELECT string_agg(kind || ':' || order_key, ',' ORDER BY id) FROM orderexp.outbox
		   WHERE order_table = 'shop_c.orders'::regclass AND kind IN ('cancelled', 'extended', 'reopened')}),
	'cancelled:2,cancelled:4,extended:5,reopened:1',
	'gates: each change wrote its event');
is(is_superuser('owner_c') . is_superuser('app_b'), 'ff',
	'gates: neither owner_c nor app_b became superuser');

# run_due() honours row-level security as the gates do: a table whose
# policies apply to the caller is skipped
$node->safe_psql(
	'cron', q{
SET ROLE owner_c;
INSERT INTO shop_c.orders (id, created_at) VALUES (20, now() - interval '2 hours');
ALTER TABLE shop_c.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_toys ON shop_c.orders USING (category = 'toy');
GRANT SELECT, UPDATE ON shop_c.orders TO cron_admin;
});
($ret, $stdout, $stderr) = $node->psql('cron',
	'SET ROLE cron_admin; SELECT closed FROM orderexp.run_due()');
is($stdout, '0', 'run_due under row-level security closes nothing');
like($stderr, qr/skips table shop_c\.orders: row-level security applies to role cron_admin/,
	'... and says why');
is($node->safe_psql('cron', q{SELECT status FROM shop_c.orders WHERE id = 20}),
	'unpaid', '... and the order is left for the worker or an owner');
$node->safe_psql('cron', q{SET ROLE owner_c; ALTER TABLE shop_c.orders DISABLE ROW LEVEL SECURITY});

# a member of orderexp_admin may call it
is( $node->safe_psql(
		'cron', 'SET ROLE cron_admin; SELECT closed FROM orderexp.run_due()'),
	'1',
	'run_due: orderexp_admin may call run_due(), and without the policy it closes the order');

# --- 1.2 under this library: the control ------------------------------------------

owner_schema('old', 'shop_old', 'owner_old');
owner_trigger('old', 'shop_old', 'owner_old');
$node->safe_psql('old',
	"SET ROLE owner_old; SELECT orderexp.set_close_policy('shop_old.orders', $policy)");
$node->safe_psql('old', 'TRUNCATE shop_old.seen');
$node->safe_psql(
	'old', q{
SET ROLE owner_old;
INSERT INTO shop_old.orders (id, created_at) VALUES (1, now() - interval '2 hours');
});
$node->safe_psql('old', 'SELECT orderexp.run_due()');
like(seen('old', 'shop_old'), qr/trigger=postgres/,
	'1.2: the one-statement batch ran the owner\'s trigger as the extension owner');
is(is_superuser('owner_old'), 't',
	'1.2: ... and owner_old became superuser: the test sees the escalation');

# the gate route at 1.2: app_b's cancel ran the owner's trigger as the
# extension owner
$node->safe_psql('old', q{ALTER ROLE owner_old NOSUPERUSER});
$node->safe_psql('old', q{GRANT SELECT, UPDATE ON shop_old.orders TO app_b});
$node->safe_psql('old', q{SET ROLE owner_old; INSERT INTO shop_old.orders (id) VALUES (5), (6)});
$node->safe_psql('old', 'TRUNCATE shop_old.seen');
$node->safe_psql('old', q{SET ROLE app_b; SELECT orderexp.cancel_order('shop_old.orders', 5, 'asked')});
like(seen('old', 'shop_old'), qr/trigger=postgres/,
	'1.2: cancel_order by app_b ran the owner\'s trigger as the extension owner');
$node->safe_psql('old', q{ALTER ROLE owner_old NOSUPERUSER});

$node->safe_psql('old', q{ALTER EXTENSION orderexp UPDATE});
$node->safe_psql('old', 'TRUNCATE shop_old.seen');
$node->safe_psql(
	'old', q{
SET ROLE owner_old;
INSERT INTO shop_old.orders (id, created_at) VALUES (3, now() - interval '2 hours');
});
is($node->safe_psql('old', 'SELECT closed FROM orderexp.run_due()'),
	'1', 'updated: run_due closes the next due order');
like(seen('old', 'shop_old'), qr/^(?!.*=postgres).*trigger=owner_old/,
	'updated: the owner\'s code runs as owner_old');
$node->safe_psql('old', 'TRUNCATE shop_old.seen');
$node->safe_psql('old', q{SET ROLE app_b; SELECT orderexp.cancel_order('shop_old.orders', 6, 'asked')});
like(seen('old', 'shop_old'), qr/^(?!.*=postgres).*trigger=app_b/,
	'updated: cancel_order by app_b runs the owner\'s trigger as app_b');
is(is_superuser('owner_old'), 'f', 'updated: owner_old stays an ordinary role');

# --- settings: the owner's code leaves no settings behind ---------------------------

$node->safe_psql('postgres', q{CREATE ROLE owner_s LOGIN IN ROLE orderexp_app});

# owner_s's schema in a database: the operator, the steering trigger (it
# writes down the work_mem it found, then sets its own), a key type whose
# cast to text is owner_s's function
sub steering_schema
{
	my ($db) = @_;
	$node->safe_psql($db, 'CREATE SCHEMA shop_s AUTHORIZATION owner_s');
	$node->safe_psql(
		$db, q{
GRANT USAGE ON SCHEMA shop_s TO PUBLIC;
SET ROLE owner_s;
CREATE TABLE shop_s.seen (what text, who name);
GRANT INSERT ON shop_s.seen TO PUBLIC;
CREATE FUNCTION shop_s.grab(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE 'ALTER ROLE owner_s SUPERUSER';
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	INSERT INTO shop_s.seen VALUES (what, current_user);
END
$$;
CREATE FUNCTION shop_s.eq(a text, b text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM shop_s.grab('operator');
	RETURN a OPERATOR(pg_catalog.=) b;
END
$$;
CREATE OPERATOR shop_s.= (LEFTARG = text, RIGHTARG = text, FUNCTION = shop_s.eq);
CREATE FUNCTION shop_s.steer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO shop_s.seen VALUES ('work_mem ' || pg_catalog.current_setting('work_mem'), current_user);
	PERFORM pg_catalog.set_config('search_path', 'shop_s, pg_catalog', false);
	PERFORM pg_catalog.set_config('work_mem', '77kB', false);
	RETURN NEW;
END
$$;
CREATE TYPE shop_s.k AS (id integer);
CREATE FUNCTION shop_s.k_text(shop_s.k) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM shop_s.grab('cast');
	RETURN ($1).id::text;
END
$$;
CREATE CAST (shop_s.k AS text) WITH FUNCTION shop_s.k_text(shop_s.k);
CREATE TABLE shop_s.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now());
CREATE TRIGGER steer AFTER UPDATE ON shop_s.orders
	FOR EACH ROW EXECUTE FUNCTION shop_s.steer();
GRANT SELECT, UPDATE ON shop_s.orders TO app_b;
});
	$node->safe_psql($db, q{SELECT orderexp.set_close_policy('shop_s.orders', interval '1 hour')});
}

steering_schema('cron');
# 1 and 2 for the gates; 3 due, for run_due()
$node->safe_psql('cron',
	q{SET ROLE owner_s; INSERT INTO shop_s.orders (id, created_at) VALUES
		(1, now()), (2, now()), (3, now() - interval '2 hours')});

# the owner cancels its own order: the gate's body, as the extension owner,
# deletes the timer and writes the event after the trigger ran
is( $node->safe_psql(
		'cron', q{
SET ROLE owner_s;
SELECT orderexp.cancel_order('shop_s.orders', 1, 'asked');
SHOW search_path;
SHOW work_mem;}),
	"t\n\"\$user\", public\n4MB",
	'settings: cancel_order cancels, and the caller\'s search_path and work_mem are its own afterwards');
is( $node->safe_psql('cron', q{SELECT count(*) FROM orderexp.outbox
		WHERE order_table = 'shop_s.orders'::regclass AND kind = 'cancelled' AND order_key = '1'}),
	'1', 'settings: the cancel wrote its event');

# app_b cancels and reads the history with a key of owner_s's type
is( $node->safe_psql(
		'cron', q{
SET ROLE app_b;
SELECT orderexp.cancel_order('shop_s.orders', ROW(2)::shop_s.k, 'asked');
SELECT count(*) FROM orderexp.history('shop_s.orders', ROW(2)::shop_s.k);
SELECT orderexp.history_json('shop_s.orders', ROW(2)::shop_s.k) -> 0 ->> 'action';
SELECT orderexp.cancel_orders('shop_s.orders', ARRAY[ROW(2)::shop_s.k], 'again');}),
	"t\n1\ncancelled\n0",
	'settings: a key of the owner\'s type cancels the order and finds its history');
is( $node->safe_psql('cron',
		q{SELECT string_agg(DISTINCT what || '=' || who, ',' ORDER BY what || '=' || who) FROM shop_s.seen
		   WHERE what IN ('operator', 'cast')}),
	'cast=app_b', 'settings: the key\'s cast ran as app_b, the caller, and the operator never');

# a superuser's run_due(), as pg_cron's job calls it, then more statements
# in the same session
$node->safe_psql('cron', q{TRUNCATE shop_s.seen});
is( $node->safe_psql(
		'cron', q{
SELECT closed FROM orderexp.run_due();
SHOW search_path;
SHOW work_mem;}),
	"1\n\"\$user\", public\n4MB",
	'settings: run_due() closes the order, and its caller\'s settings are its own afterwards');
is(seen('cron', 'shop_s'), 'work_mem 4MB=owner_s',
	'settings: the trigger ran as owner_s and found work_mem as run_due()\'s caller had it');

# the worker: one close, then (once it is done) another one; the second
# trigger finds the worker's own work_mem, not the first one's
steering_schema('postgres');
for my $id (1, 2)
{
	$node->safe_psql('postgres',
		"SET ROLE owner_s; INSERT INTO shop_s.orders (id, created_at) VALUES ($id, now() - interval '2 hours')");
	ok( defined wait_for(
			$node, 'postgres', "SELECT status FROM shop_s.orders WHERE id = $id",
			'closed', 30),
		"settings: the worker closes order $id");
}
is( $node->safe_psql('postgres',
		q{SELECT string_agg(what || '=' || who, ',' ORDER BY what) FROM shop_s.seen}),
	'work_mem 4MB=owner_s,work_mem 4MB=owner_s',
	'settings: each close\'s trigger found the worker\'s own work_mem');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM orderexp.outbox
		   WHERE order_table = 'shop_s.orders'::regclass AND kind = 'closed'}),
	'2', 'settings: the worker wrote both closes\' events');

# the operator never ran, after run_due() or in the worker
for my $db (qw(cron postgres))
{
	is($node->safe_psql($db, q{SELECT count(*) FROM shop_s.seen WHERE what = 'operator'}),
		'0', "settings ($db): the owner's operator never ran");
}
is(is_superuser('owner_s'), 'f', 'settings: owner_s did not become superuser');

$node->stop;
done_testing();
