--
-- errors: every error path of the SQL interface, with its SQLSTATE, and
-- proof that a failed call changed nothing.
--
-- After each failing statement, ":'SQLSTATE'" (psql's code of the last
-- statement, 00000 on success) is printed together with
-- regress.unchanged(): orderexp's catalog, timers and outbox, the user
-- tables' rows and their triggers are what regress.mark() remembered.
--
\set SHOW_CONTEXT never
CREATE SCHEMA err;

-- a registered table with one order of each status
CREATE TABLE err.orders (id bigint PRIMARY KEY, status text, created_at timestamptz NOT NULL, cat text);
INSERT INTO err.orders VALUES
	(1, 'unpaid',    now(), 'a'),
	(2, 'paid',      now(), 'a'),
	(3, 'closed',    now(), 'a'),
	(4, 'cancelled', now(), 'a'),
	(5, NULL,        now(), 'a'),
	(6, 'unpaid',    now(), 'b');		-- category b has no policy: not tracked
SELECT orderexp.set_close_policy('err.orders', '1 hour', category => 'a',
                                 category_column => 'cat') IS NOT NULL AS registered;
-- not registered
CREATE TABLE err.unreg (id bigint PRIMARY KEY, status text, created_at timestamptz);
INSERT INTO err.unreg VALUES (1, 'unpaid', now());
-- unsuitable tables
CREATE TABLE err.nopk (id bigint, status text, created_at timestamptz);
CREATE TABLE err.composite (a int, b int, status text, created_at timestamptz, PRIMARY KEY (a, b));
CREATE TABLE err.numkey (id numeric PRIMARY KEY, status text, created_at timestamptz);
CREATE TABLE err.intstatus (id bigint PRIMARY KEY, status integer, created_at timestamptz);
CREATE TABLE err.datecreated (id bigint PRIMARY KEY, status text, created_at date);
CREATE TABLE err.nostatus (id bigint PRIMARY KEY, state text, created_at timestamptz);
CREATE TABLE err.nocreated (id bigint PRIMARY KEY, status text, created timestamptz);
CREATE TABLE err.notunique (id bigint PRIMARY KEY, ref text, status text, created_at timestamptz);
CREATE TYPE err.mood AS ENUM ('open', 'done', 'dropped');
CREATE TABLE err.enumstatus (id bigint PRIMARY KEY, status err.mood, created_at timestamptz);
CREATE TABLE err.shortstatus (id bigint PRIMARY KEY, status varchar(6), created_at timestamptz);
CREATE VIEW err.v AS SELECT * FROM err.orders;
CREATE SEQUENCE err.seq;
CREATE TEMP TABLE tmp_orders (id bigint PRIMARY KEY, status text, created_at timestamptz);

SELECT regress.mark('err.orders', 'err.unreg', 'err.nopk', 'err.enumstatus');
SELECT regress.unchanged();

--
-- set_close_policy: NULL arguments (22004)
--
SELECT orderexp.set_close_policy(NULL, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', NULL);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', max_extensions => NULL);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', reschedule => NULL);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- set_close_policy: the table (42P01, 42809, 42P16)
--
SELECT orderexp.set_close_policy('err.no_such_table', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.v', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.seq', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('tmp_orders', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.nopk', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.composite', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.notunique', '1 hour', key_column => 'ref');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- set_close_policy: missing columns (42703) and wrong column types (42804)
--
SELECT orderexp.set_close_policy('err.nopk', '1 hour', key_column => 'nope');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.nostatus', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.nocreated', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', category_column => 'nope');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', payload_columns => '{status,nope}');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.numkey', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.intstatus', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.datecreated', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- set_close_policy: invalid parameter values (22023)
--
SELECT orderexp.set_close_policy('err.unreg', '0');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '-1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '101 years');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', remind_before => '0');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', remind_before => '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', extend_by => '-5 minutes');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', extend_by => '101 years');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', extend_by => '1 hour', max_extensions => -1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', max_extensions => 2);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- status words: duplicates, empty, not valid for an enum
SELECT orderexp.set_close_policy('err.unreg', '1 hour', closed_value => 'unpaid');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', closed_value => 'gone', cancelled_value => 'gone');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', unpaid_value => '');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.enumstatus', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.enumstatus', '1 hour', unpaid_value => 'open',
                                 closed_value => 'done', cancelled_value => 'withdrawn');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- a category without a category column
SELECT orderexp.set_close_policy('err.unreg', '1 hour', category => 'books');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- channels: empty, with NULL, with an empty name
SELECT orderexp.set_close_policy('err.unreg', '1 hour', channels => '{}');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', channels => '{email,NULL}');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.unreg', '1 hour', channels => '{""}');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- a failed change of a registered table leaves its registration as it was
SELECT orderexp.set_close_policy('err.orders', '2 hours', category => 'a', status_column => 'nope');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.orders', '2 hours', category => 'a', channels => '{}');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_close_policy('err.orders', '2 hours', category => 'a', unpaid_value => 'paid', closed_value => 'paid');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT category, close_after, status_column, channels FROM orderexp.policy_config
 WHERE order_table = 'err.orders'::regclass;

--
-- drop_close_policy
--
SELECT orderexp.drop_close_policy(NULL);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.drop_close_policy('err.unreg');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.drop_close_policy('err.orders', 'no such category');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- operations on a table that is not registered (55000)
--
SELECT orderexp.cancel_order('err.unreg', 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_orders('err.unreg', ARRAY[1]);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.unreg', 1, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_order('err.no_such_table', 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- NULL arguments of the operations (22004)
--
SELECT orderexp.cancel_order(NULL, 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_order('err.orders', NULL::bigint);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_orders('err.orders', NULL::bigint[]);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_orders('err.orders', ARRAY[1, NULL]::bigint[]);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', NULL::bigint, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- unknown orders (P0002)
--
SELECT orderexp.cancel_order('err.orders', 999);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', 999, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- orders that are not unpaid (55000, the detail names the status)
--
SELECT orderexp.cancel_order('err.orders', 2, 'paid');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_order('err.orders', 3, 'closed');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_order('err.orders', 5, 'null status');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', 2, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', 4, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- unpaid, but no policy applies to its category: not tracked
SELECT orderexp.extend_order('err.orders', 6, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- keys that are not valid for the key type (22P02)
--
SELECT orderexp.cancel_order('err.orders', 'abc'::text);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.cancel_orders('err.orders', ARRAY['1', 'abc']);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', '1.5'::text, '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- extend_order: bad intervals, and no interval at all (22023)
--
SELECT orderexp.extend_order('err.orders', 1, '0');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', 1, '-1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', 1, '101 years');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order('err.orders', 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- run_due: max_rows must be positive (22023); batch_size is not a session setting
--
SELECT * FROM orderexp.run_due(0);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT * FROM orderexp.run_due(-5);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SET orderexp.batch_size = 10;
SELECT :'SQLSTATE' AS sqlstate, current_setting('orderexp.batch_size') AS batch_size;
SET orderexp.no_such_setting = 1;
SELECT :'SQLSTATE' AS sqlstate;

-- after all that: the orders and orderexp's tables as they were
SELECT id, status FROM err.orders ORDER BY id;
SELECT order_key FROM orderexp.timers WHERE order_table = 'err.orders'::regclass ORDER BY 1;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers,
       (SELECT count(*) FROM orderexp.outbox) AS outbox;
-- and the successful calls still work
SELECT orderexp.extend_order('err.orders', 1, '1 hour') IS NOT NULL AS extended;
SELECT orderexp.cancel_order('err.orders', 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- a status word that does not fit the status column's type: 'cancelled'
-- (the default) in a varchar(6) column
SELECT regress.mark('err.orders', 'err.shortstatus');
SELECT orderexp.set_close_policy('err.shortstatus', '1 hour');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- clean up
--
SET client_min_messages = warning;
DROP SCHEMA err CASCADE;
RESET client_min_messages;
DROP TABLE tmp_orders;
DELETE FROM orderexp.outbox;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers;
