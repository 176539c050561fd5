-- The SQLSTATEs of the error paths, and that a failed call leaves the
-- registration, the timers, the outbox and the orders alone.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(36);

CREATE SCHEMA pgtap_err;
CREATE TABLE pgtap_err.orders (id bigint PRIMARY KEY, status text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE pgtap_err.unreg (id bigint PRIMARY KEY, status text, created_at timestamptz);
CREATE TABLE pgtap_err.nopk (id bigint, status text, created_at timestamptz);
CREATE TABLE pgtap_err.pair (a int, b int, status text, created_at timestamptz, PRIMARY KEY (a, b));
CREATE TABLE pgtap_err.badkey (id numeric PRIMARY KEY, status text, created_at timestamptz);
CREATE TABLE pgtap_err.badcreated (id int PRIMARY KEY, status text, created_at date);
CREATE TYPE pgtap_err.st AS ENUM ('open', 'shut', 'void');
CREATE TABLE pgtap_err.enumtab (id int PRIMARY KEY, status pgtap_err.st, created_at timestamptz);
CREATE TABLE pgtap_err.short (id int PRIMARY KEY, status varchar(6), created_at timestamptz);
CREATE VIEW pgtap_err.v AS SELECT 1 AS id;
CREATE SEQUENCE pgtap_err.s;
CREATE TEMP TABLE pgtap_tmp (id int PRIMARY KEY, status text, created_at timestamptz);
SELECT orderexp.set_close_policy('pgtap_err.orders', '1 hour');
INSERT INTO pgtap_err.orders (id, status) VALUES (1, 'unpaid'), (2, 'paid');

CREATE TEMP TABLE before AS
SELECT (SELECT array_agg(t::text ORDER BY t::text) FROM orderexp.tables t) AS tables,
       (SELECT array_agg(p::text ORDER BY p::text) FROM orderexp.policies p) AS policies,
       (SELECT array_agg(t::text ORDER BY t::text) FROM orderexp.timers t) AS timers,
       (SELECT count(*) FROM orderexp.outbox) AS outbox,
       (SELECT array_agg(o::text ORDER BY o::text) FROM pgtap_err.orders o) AS orders;

-- set_close_policy
SELECT throws_ok($$SELECT orderexp.set_close_policy(NULL, '1 hour')$$, '22004', NULL, 'NULL table');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', NULL)$$, '22004', NULL, 'NULL close_after');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.nope', '1 hour')$$, '42P01', NULL, 'unknown table');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.v', '1 hour')$$, '42809', NULL, 'a view');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.s', '1 hour')$$, '42809', NULL, 'a sequence');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_tmp', '1 hour')$$, '42809', NULL, 'a temporary table');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.nopk', '1 hour')$$, '42P16', NULL, 'no primary key');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.pair', '1 hour')$$, '42P16', NULL, 'composite primary key');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', status_column => 'nope')$$,
                 '42703', NULL, 'missing status column');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.badkey', '1 hour')$$, '42804', NULL, 'numeric key');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.badcreated', '1 hour')$$, '42804', NULL, 'date created-at');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '0')$$, '22023', NULL, 'close_after 0');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', remind_before => '2 hours')$$,
                 '22023', NULL, 'remind_before not shorter than close_after');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', extend_by => '0')$$,
                 '22023', NULL, 'extend_by 0');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', max_extensions => -1)$$,
                 '22023', NULL, 'negative max_extensions');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', max_extensions => 1)$$,
                 '22023', NULL, 'max_extensions without extend_by');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', cancelled_value => 'closed')$$,
                 '22023', NULL, 'duplicate status words');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.enumtab', '1 hour', unpaid_value => 'open',
                                                    closed_value => 'shut', cancelled_value => 'gone')$$,
                 '22023', NULL, 'status word not in the enum');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', category => 'x')$$,
                 '22023', NULL, 'category without category column');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.unreg', '1 hour', channels => '{}')$$,
                 '22023', NULL, 'empty channels');
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.orders', '1 hour', channels => '{}')$$,
                 '22023', NULL, 'empty channels on a registered table');

-- operations
SELECT throws_ok($$SELECT orderexp.cancel_order('pgtap_err.unreg', 1)$$, '55000',
                 'table pgtap_err.unreg is not registered with orderexp', 'cancel on an unregistered table');
SELECT throws_ok($$SELECT orderexp.extend_order('pgtap_err.unreg', 1, '1 hour')$$, '55000', NULL,
                 'extend on an unregistered table');
SELECT throws_ok($$SELECT orderexp.drop_close_policy('pgtap_err.unreg')$$, '55000', NULL,
                 'drop_close_policy on an unregistered table');
SELECT throws_ok($$SELECT orderexp.drop_close_policy('pgtap_err.orders', 'nope')$$, 'P0002', NULL,
                 'drop_close_policy of a category without a policy');
SELECT throws_ok($$SELECT orderexp.cancel_order('pgtap_err.orders', 42)$$, 'P0002',
                 'order 42 not found in table pgtap_err.orders', 'unknown order');
SELECT throws_ok($$SELECT orderexp.cancel_order('pgtap_err.orders', 2)$$, '55000',
                 'order 2 in table pgtap_err.orders is not unpaid', 'cancel a paid order');
SELECT throws_ok($$SELECT orderexp.cancel_order('pgtap_err.orders', 'x'::text)$$, '22P02', NULL,
                 'text key for a bigint key column');
SELECT throws_ok($$SELECT orderexp.cancel_orders('pgtap_err.orders', ARRAY[1, NULL]::int[])$$, '22004', NULL,
                 'NULL key in cancel_orders');
SELECT throws_ok($$SELECT orderexp.extend_order('pgtap_err.orders', 1, '-1 hour')$$, '22023', NULL,
                 'negative extension');
SELECT throws_ok($$SELECT orderexp.extend_order('pgtap_err.orders', 1)$$, '22023',
                 'no extension interval given', 'no extend_by in the policy');
SELECT throws_ok($$SELECT * FROM orderexp.run_due(-1)$$, '22023', NULL, 'run_due(-1)');

-- the detail of "not unpaid" names the status
CREATE FUNCTION pg_temp.detail_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN d;
END $$;
SELECT is(pg_temp.detail_of($$SELECT orderexp.extend_order('pgtap_err.orders', 2, '1 hour')$$),
          'Its status is ''paid''.', 'errdetail names the status');

-- nothing changed
SELECT is((SELECT array_agg(t::text ORDER BY t::text) FROM orderexp.tables t)
          || (SELECT array_agg(p::text ORDER BY p::text) FROM orderexp.policies p)
          || (SELECT array_agg(t::text ORDER BY t::text) FROM orderexp.timers t)
          || (SELECT array_agg(o::text ORDER BY o::text) FROM pgtap_err.orders o),
          (SELECT tables || policies || timers || orders FROM before),
          'registration, policies, timers and orders unchanged');
SELECT is((SELECT count(*) FROM orderexp.outbox), (SELECT outbox FROM before), 'no event written');

-- last, since it fails by registering the table: a status word that does
-- not fit the column's type ('cancelled' in varchar(6))
SELECT throws_ok($$SELECT orderexp.set_close_policy('pgtap_err.short', '1 hour')$$,
                 '22023', NULL, 'status word too long for a varchar(6) status column');

SELECT * FROM finish();
ROLLBACK;
