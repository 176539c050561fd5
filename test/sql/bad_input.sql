--
-- bad_input: a matrix over every public function of orderexp (read from the
-- catalog, so that functions added later are in it too) and every argument:
-- each bad value of the argument's type, with valid values in the other
-- arguments.  Each call runs in a subtransaction that is rolled back
-- afterwards; the result shows its SQLSTATE and message, and a failed call
-- that changed anything (orderexp's catalog, timers, outbox, secret, the
-- user tables' rows and triggers) is flagged "*** CHANGED".  errors.sql
-- holds the hand-written cases; this file is the exhaustive sweep.
--
-- Then DDL on registered tables: renaming the table or a mapped column
-- (followed), dropping a mapped column or changing its type (refused),
-- TRUNCATE and DROP (timers and registration go).
--
\set SHOW_CONTEXT never
CREATE SCHEMA bad;

CREATE TABLE bad.orders (id bigint PRIMARY KEY, status text, created_at timestamptz NOT NULL,
						 cat text, amount integer);
INSERT INTO bad.orders VALUES
	(1, 'unpaid',    now(), NULL, 10),
	(2, 'paid',      now(), NULL, 20),
	(3, 'closed',    now(), NULL, 30),
	(4, 'cancelled', now(), NULL, 40),
	(5, 'unpaid',    now(), 'b',  50);
SELECT orderexp.set_close_policy('bad.orders', '1 hour', remind_before => '10 minutes',
								 extend_by => '5 minutes', max_extensions => 2,
								 category_column => 'cat', payload_columns => '{amount}') > 0 AS registered;
SELECT orderexp.set_close_policy('bad.orders', '2 hours', category => 'b') > 0 AS category_policy;
-- an order cancelled through orderexp, so that the outbox has events
INSERT INTO bad.orders VALUES (8, 'unpaid', now(), NULL, 80);
SELECT orderexp.cancel_order('bad.orders', 8, 'so that there are events');
-- claimed, so that fail() gets past its lease check to its arguments
SELECT count(*) > 0 AS claimed FROM orderexp.claim(100, '1 hour');
CREATE TABLE bad.unreg (id bigint PRIMARY KEY, status text, created_at timestamptz);
CREATE TABLE bad.nopk (id bigint, status text, created_at timestamptz);
CREATE TABLE bad.composite (a int, b int, status text, created_at timestamptz, PRIMARY KEY (a, b));
CREATE VIEW bad.v AS SELECT * FROM bad.orders;
CREATE SEQUENCE bad.seq;
CREATE TABLE bad.gone (id int);
SELECT 'bad.gone'::regclass::oid AS gone_oid \gset
DROP TABLE bad.gone;

-- a valid token of order 1, and damaged copies of it
CREATE TABLE bad.tok AS SELECT orderexp.extension_token('bad.orders', 1) AS t;
SELECT length(t) > 40 AS token_made FROM bad.tok;

-- the valid value of an argument: its default if it has one, else by type
CREATE FUNCTION bad.good(fn regprocedure, pos int, typ regtype, argname text)
RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(pg_get_function_arg_default(fn, pos),
		CASE
			WHEN typ = 'regclass'::regtype THEN '''bad.orders''::regclass'
			WHEN typ = 'anyelement'::regtype THEN '1::bigint'
			WHEN typ = 'anyarray'::regtype THEN 'ARRAY[1]::bigint[]'
			WHEN typ = 'interval'::regtype THEN '''1 hour''::interval'
			WHEN typ = 'integer'::regtype THEN '1'
			WHEN typ = 'bigint'::regtype THEN '(SELECT max(id) FROM orderexp.outbox)'
			WHEN typ = 'bigint[]'::regtype THEN 'ARRAY[(SELECT max(id) FROM orderexp.outbox)]'
			WHEN typ = 'integer[]'::regtype THEN 'ARRAY[1, 1]'
			WHEN typ = 'interval[]'::regtype THEN '''{20 minutes, 40 minutes}''::interval[]'
			WHEN typ = 'timestamp with time zone'::regtype THEN 'now() - interval ''1 day'''
			WHEN typ = 'text'::regtype AND argname = 'order_key' THEN '''1'''
			WHEN typ = 'text'::regtype AND argname = 'order_keys' THEN '''{1}'''
			WHEN typ = 'text'::regtype AND argname = 'token' THEN '(SELECT t FROM bad.tok)'
			WHEN typ = 'text'::regtype AND argname = 'step' THEN '''placed'''
			WHEN typ = 'text'::regtype AND argname = 'template' THEN '''Order {order} of {at}.'''
			WHEN typ = 'text'::regtype AND argname = 'topic' THEN '''complaint'''
			WHEN typ = 'text'::regtype THEN '''x'''
			ELSE format('NULL::%s', typ)
		END)
$$;

-- bad values per argument type: (label, SQL expression)
CREATE TABLE bad.values (typ regtype, n int, label text, expr text,
						 only_arg text,		/* NULL: any argument of the type */
						 PRIMARY KEY (typ, n));
INSERT INTO bad.values (typ, n, label, expr, only_arg) VALUES
	('regclass', 1, 'NULL', 'NULL::regclass', NULL),
	('regclass', 2, 'unregistered table', '''bad.unreg''::regclass', NULL),
	('regclass', 3, 'no primary key', '''bad.nopk''::regclass', NULL),
	('regclass', 4, 'composite primary key', '''bad.composite''::regclass', NULL),
	('regclass', 5, 'a view', '''bad.v''::regclass', NULL),
	('regclass', 6, 'a sequence', '''bad.seq''::regclass', NULL),
	('regclass', 7, 'a catalog', '''pg_catalog.pg_class''::regclass', NULL),
	('regclass', 8, 'a dropped table', :'gone_oid' || '::oid::regclass', NULL),
	('anyelement', 1, 'NULL', 'NULL::bigint', NULL),
	('anyelement', 2, 'unknown key', '999::bigint', NULL),
	('anyelement', 3, 'key of a paid order', '2::bigint', NULL),
	('anyelement', 4, 'key of a closed order', '3::bigint', NULL),
	('anyelement', 5, 'key of a cancelled order', '4::bigint', NULL),
	('anyelement', 6, 'text that is no bigint', '''abc''::text', NULL),
	('anyelement', 7, 'empty text', '''''::text', NULL),
	('anyelement', 8, 'numeric 1.5', '1.5', NULL),
	('anyelement', 9, 'boolean', 'true', NULL),
	('anyelement', 10, 'jsonb', '''{}''::jsonb', NULL),
	('anyelement', 11, 'out of range', '''99999999999999999999''::text', NULL),
	('anyelement', 12, 'SQL in the key', '''1; DROP TABLE bad.orders''::text', NULL),
	('anyarray', 1, 'NULL', 'NULL::bigint[]', NULL),
	('anyarray', 2, 'empty', '''{}''::bigint[]', NULL),
	('anyarray', 3, 'with NULL', 'ARRAY[1, NULL]::bigint[]', NULL),
	('anyarray', 4, 'unknown keys', 'ARRAY[998, 999]::bigint[]', NULL),
	('anyarray', 5, 'paid, closed, cancelled', 'ARRAY[2, 3, 4]::bigint[]', NULL),
	('anyarray', 6, 'text that is no bigint', 'ARRAY[''1'', ''abc'']', NULL),
	('anyarray', 7, 'two dimensions', 'ARRAY[[1, 2], [3, 4]]::bigint[]', NULL),
	('interval', 1, 'NULL', 'NULL::interval', NULL),
	('interval', 2, 'zero', '''0''::interval', NULL),
	('interval', 3, 'negative', '''-1 hour''::interval', NULL),
	('interval', 4, 'negative month', '''1 day -1 mon''::interval', NULL),
	('interval', 5, '101 years', '''101 years''::interval', NULL),
	('interval', 6, 'huge', '''178000000 years''::interval', NULL),
	-- positive as compared (a month counts as 30 days), not in every field
	('interval', 7, 'month minus 30 days', '''1 mon -30 days 1 sec''::interval', NULL),
	('interval', 8, 'minus month plus 30 days', '''-1 mon 30 days 1 sec''::interval', NULL),
	('integer', 1, 'NULL', 'NULL::integer', NULL),
	('integer', 2, 'negative', '-1', NULL),
	('integer', 3, 'zero', '0', NULL),
	('integer', 4, 'huge', '2147483647', NULL),
	('bigint', 1, 'NULL', 'NULL::bigint', NULL),
	('bigint', 2, 'negative', '-1::bigint', NULL),
	('bigint[]', 1, 'NULL', 'NULL::bigint[]', NULL),
	('bigint[]', 2, 'with NULL', 'ARRAY[NULL]::bigint[]', NULL),
	('bigint[]', 3, 'unknown ids', 'ARRAY[-1]::bigint[]', NULL),
	('integer[]', 1, 'NULL', 'NULL::integer[]', NULL),
	('integer[]', 2, 'empty', '''{}''::integer[]', NULL),
	('integer[]', 3, 'with NULL', 'ARRAY[1, NULL]::integer[]', NULL),
	('integer[]', 4, 'zero and negative', 'ARRAY[0, -1]::integer[]', NULL),
	('integer[]', 5, 'two dimensions', 'ARRAY[[1, 2], [3, 4]]', NULL),
	('interval[]', 1, 'NULL', 'NULL::interval[]', NULL),
	('interval[]', 2, 'empty', '''{}''::interval[]', NULL),
	('interval[]', 3, 'one variant', 'ARRAY[''1 hour'']::interval[]', NULL),
	('interval[]', 4, 'with NULL', 'ARRAY[''1 hour'', NULL]::interval[]', NULL),
	('interval[]', 5, 'negative', 'ARRAY[''1 hour'', ''-1 hour'']::interval[]', NULL),
	('interval[]', 6, 'within remind_before', 'ARRAY[''5 minutes'', ''1 hour'']::interval[]', NULL),
	('interval[]', 7, 'two dimensions', 'ARRAY[[''1 hour'', ''2 hours''], [''3 hours'', ''4 hours'']]::interval[]', NULL),
	('interval[]', 8, '17 variants', 'array_fill(''1 hour''::interval, ARRAY[17])', NULL),
	('interval[]', 9, 'month minus 30 days', 'ARRAY[''1 hour'', ''1 mon -30 days 1 sec'']::interval[]', NULL),
	('timestamp with time zone', 1, 'NULL', 'NULL::timestamptz', NULL),
	('timestamp with time zone', 2, 'infinity', '''infinity''::timestamptz', NULL),
	('boolean', 1, 'NULL', 'NULL::boolean', NULL),
	('text', 1, 'NULL', 'NULL::text', NULL),
	('text', 2, 'empty', '''''', NULL),
	('text', 3, 'garbage', '''garbage''', NULL),
	('text', 4, 'SQL', '''x''''); DROP TABLE bad.orders; --''', NULL),
	('text', 5, '100000 characters', 'repeat(''A'', 100000)', NULL),
	('text', 6, 'a token with one character changed',
	 '(SELECT overlay(t placing CASE WHEN substr(t, 10, 1) = ''A'' THEN ''B'' ELSE ''A'' END from 10 for 1) FROM bad.tok)',
	 'token'),
	('text', 7, 'a token cut short', '(SELECT left(t, -3) FROM bad.tok)', 'token'),
	('text', 8, 'a token with padding', '(SELECT t || ''='' FROM bad.tok)', 'token'),
	('text', 9, 'a token with four characters replaced', '(SELECT overlay(t placing ''AAAA'' from 5 for 4) FROM bad.tok)',
	 'token'),
	('name', 1, 'NULL', 'NULL::name', NULL),
	('name', 2, 'unknown column', '''nope''::name', NULL),
	('name', 3, 'empty', '''''::name', NULL),
	('name', 4, 'integer column', '''amount''::name', NULL),
	('name', 5, 'SQL', '''x"; DROP TABLE bad.orders; --''::name', NULL),
	('name[]', 1, 'NULL', 'NULL::name[]', NULL),
	('name[]', 2, 'unknown column', '''{nope}''::name[]', NULL),
	('name[]', 3, 'with NULL', '''{amount,NULL}''::name[]', NULL),
	('text[]', 1, 'NULL', 'NULL::text[]', NULL),
	('text[]', 2, 'empty', '''{}''::text[]', NULL),
	('text[]', 3, 'with NULL', '''{email,NULL}''::text[]', NULL),
	('text[]', 4, 'with an empty name', '''{""}''::text[]', NULL),
	('text[]', 5, 'a name repeated', '''{email,sms,email}''::text[]', NULL),
	('text[]', 6, 'a name with a space', '''{"e mail"}''::text[]', NULL),
	('text[]', 7, 'a 64-byte name', 'ARRAY[repeat(''c'', 64)]', NULL);

-- fingerprint of everything a failed call must leave alone
CREATE FUNCTION bad.state() RETURNS text LANGUAGE sql AS $$
	SELECT regress.state('{bad.orders,bad.unreg,bad.nopk,bad.composite}')
		   || (SELECT md5(string_agg(s::text, ';')) FROM orderexp.secret s)
$$;

-- run one call, report its outcome, undo whatever it did
CREATE FUNCTION bad.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	before	text := bad.state();
	st		text;
	msg		text;
	changed	boolean;
BEGIN
	BEGIN
		BEGIN
			EXECUTE sql;
			st := '00000';
			msg := 'ok';
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		END;
		changed := bad.state() IS DISTINCT FROM before;
		RAISE EXCEPTION USING ERRCODE = 'OXUND';	/* undo */
	EXCEPTION WHEN SQLSTATE 'OXUND' THEN
		NULL;
	END;
	/* OIDs and times differ from run to run */
	msg := regexp_replace(msg, '\d{4,}', 'N', 'g');
	msg := regexp_replace(msg, 'N-\d\d-\d\d \d\d:\d\d:[0-9.+]+', '<time>', 'g');
	IF length(msg) > 100 THEN
		msg := left(msg, 100) || '...';
	END IF;
	RETURN st || ' ' || msg || CASE WHEN st <> '00000' AND changed THEN ' *** CHANGED' ELSE '' END;
END;
$$;

-- the functions: public, in schema orderexp, not triggers
CREATE VIEW bad.functions AS
SELECT p.oid::regprocedure AS fn, p.proname, a.pos, a.typ, a.argname
  FROM pg_proc p
 CROSS JOIN LATERAL unnest(p.proargtypes::regtype[], p.proargnames[1:p.pronargs])
				WITH ORDINALITY AS a(typ, argname, pos)
 WHERE p.pronamespace = 'orderexp'::regnamespace AND p.proname !~ '^_'
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
   AND p.prokind = 'f';

-- the call of fn with bad value expr in position pos
CREATE FUNCTION bad.call(fn regprocedure, pos int, expr text) RETURNS text LANGUAGE sql AS $$
	SELECT format('SELECT orderexp.%I(%s)', p.proname,
				  string_agg(CASE WHEN a.n = pos THEN expr
								  ELSE bad.good(fn, a.n::int, a.typ, a.argname) END,
							 ', ' ORDER BY a.n))
	  FROM pg_proc p
	 CROSS JOIN LATERAL unnest(p.proargtypes::regtype[], p.proargnames[1:p.pronargs])
					WITH ORDINALITY AS a(typ, argname, n)
	 WHERE p.oid = fn
	 GROUP BY p.proname
$$;

-- the valid call itself works, for every function
SELECT f.fn, bad.try(bad.call(f.fn, 0, NULL)) AS valid_call
  FROM (SELECT DISTINCT fn FROM bad.functions) f
 ORDER BY f.fn::text;

-- the matrix
SELECT f.proname || '(' || f.argname || ')' AS argument, v.label AS bad_value,
	   bad.try(bad.call(f.fn, f.pos::int, v.expr)) AS outcome
  FROM bad.functions f
  JOIN bad.values v ON v.typ = f.typ AND coalesce(v.only_arg = f.argname, true)
 ORDER BY f.fn::text, f.pos, v.n;

-- arguments of a type the matrix has no bad values for (should be none)
SELECT f.fn, f.argname, f.typ FROM bad.functions f
 WHERE NOT EXISTS (SELECT 1 FROM bad.values v WHERE v.typ = f.typ);

SELECT count(*) AS calls_tried,
	   count(*) FILTER (WHERE bad.try(bad.call(f.fn, f.pos::int, v.expr)) LIKE '%CHANGED') AS changed_after_error
  FROM bad.functions f JOIN bad.values v ON v.typ = f.typ AND coalesce(v.only_arg = f.argname, true);

--
-- DDL on a registered table
--
DROP VIEW bad.v;
SELECT regress.mark('bad.orders');
-- a mapped column cannot be dropped, nor its type changed
ALTER TABLE bad.orders DROP COLUMN created_at;
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
ALTER TABLE bad.orders DROP COLUMN amount;			-- a payload column
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
ALTER TABLE bad.orders DROP COLUMN cat CASCADE;
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
ALTER TABLE bad.orders DROP COLUMN status CASCADE;	-- the triggers depend on it
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
ALTER TABLE bad.orders ALTER COLUMN id TYPE integer;
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
ALTER TABLE bad.orders ALTER COLUMN status TYPE integer USING 0;
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- other columns come and go freely
ALTER TABLE bad.orders ADD COLUMN note text;
ALTER TABLE bad.orders DROP COLUMN note;
-- (the status column's type cannot change while the timer triggers use it)
ALTER TABLE bad.orders ALTER COLUMN status TYPE varchar(20);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- renames are followed: the table, and each mapped column
ALTER TABLE bad.orders RENAME TO orders2;
ALTER TABLE bad.orders2 RENAME COLUMN id TO order_id;
ALTER TABLE bad.orders2 RENAME COLUMN status TO "State ""quoted""";
ALTER TABLE bad.orders2 RENAME COLUMN created_at TO placed_at;
ALTER TABLE bad.orders2 RENAME COLUMN cat TO category;
ALTER TABLE bad.orders2 RENAME COLUMN amount TO total;
SELECT order_table, key_column, status_column, created_column, category_column, payload_columns
  FROM orderexp.policy_config WHERE category IS NULL;
SELECT tgname, regexp_replace(encode(tgargs, 'escape'), '\d{4,}', 'N') AS tgargs, pg_get_triggerdef(oid) LIKE '%"State ""quoted"""%' AS quoted_in_def
  FROM pg_trigger WHERE tgrelid = 'bad.orders2'::regclass ORDER BY tgname;
-- and everything works under the new names
INSERT INTO bad.orders2 VALUES (6, 'unpaid', now() - interval '3 hours', NULL, 60),
							   (7, 'unpaid', now(), NULL, 70);
SELECT order_key, close_at - placed_at AS after
  FROM orderexp.timers t JOIN bad.orders2 o ON o.order_id::text = t.order_key
 WHERE t.order_table = 'bad.orders2'::regclass AND t.order_key IN ('6', '7') ORDER BY 1;
SELECT * FROM orderexp.run_due();
SELECT order_id, "State ""quoted""" FROM bad.orders2 WHERE order_id IN (6, 7) ORDER BY 1;
SELECT kind, payload->'order' AS "order" FROM orderexp.outbox WHERE order_key = '6' AND order_table = 'bad.orders2'::regclass;
SELECT orderexp.cancel_order('bad.orders2', 7, 'renamed');
SELECT orderexp.extend_order('bad.orders2', 1) > now() AS extended;
SELECT count(*) AS pending FROM orderexp.pending WHERE order_table = 'bad.orders2'::regclass;

-- TRUNCATE takes the timers, DROP the registration too
TRUNCATE bad.orders2;
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = 'bad.orders2'::regclass;
SELECT 'bad.orders2'::regclass::oid AS orders2_oid \gset
DROP TABLE bad.orders2;
SELECT (SELECT count(*) FROM orderexp.tables WHERE order_table = :orders2_oid) AS tables,
	   (SELECT count(*) FROM orderexp.policies WHERE order_table = :orders2_oid) AS policies,
	   (SELECT count(*) FROM orderexp.timers WHERE order_table = :orders2_oid) AS timers;

DROP SCHEMA bad CASCADE;
