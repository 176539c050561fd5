--
-- setup: install orderexp and check that its objects exist in schema orderexp.
-- Also creates schema "regress" with helpers shared by the later test files.
--
CREATE EXTENSION orderexp;

SELECT e.extname, e.extversion, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'orderexp';

-- every member of the extension
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) COLLATE "C" AS member
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orderexp')
   AND d.deptype = 'e'
 ORDER BY 1;

-- relations (tables, views, sequences, indexes) in schema orderexp
SELECT c.relname COLLATE "C" AS relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'orderexp'::regnamespace
 ORDER BY 1;

-- columns of the catalog tables and views
SELECT c.relname COLLATE "C" AS relname, a.attnum, a.attname,
       format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'v')
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY 1, 2;

-- index definitions
SELECT indexrelid::regclass::text COLLATE "C" AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index
 WHERE indrelid IN ('orderexp.tables'::regclass, 'orderexp.policies'::regclass,
                    'orderexp.timers'::regclass, 'orderexp.outbox'::regclass)
 ORDER BY 1;

-- functions: signature, result, security definer, volatility, strictness
SELECT p.oid::regprocedure::text COLLATE "C" AS function,
       pg_get_function_result(p.oid) AS result,
       p.prosecdef, p.provolatile, p.proisstrict
  FROM pg_proc p
 WHERE p.pronamespace = 'orderexp'::regnamespace
 ORDER BY 1;

-- argument names and defaults of the public API
SELECT p.proname COLLATE "C" AS proname, pg_get_function_arguments(p.oid) AS arguments
  FROM pg_proc p
 WHERE p.pronamespace = 'orderexp'::regnamespace AND p.proname !~ '^_'
 ORDER BY 1;

-- the event trigger that forgets dropped tables
SELECT evtname, evtevent, evtfoid::regproc, evtenabled
  FROM pg_event_trigger WHERE evtname LIKE 'orderexp%' ORDER BY 1;

-- configuration tables dumped by pg_dump
SELECT unnest(extconfig)::regclass::text COLLATE "C" AS config_table
  FROM pg_extension WHERE extname = 'orderexp'
 ORDER BY 1;

-- the catalog starts empty, and a sweep with nothing registered does nothing
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers,
       (SELECT count(*) FROM orderexp.outbox) AS outbox,
       (SELECT count(*) FROM orderexp.pending) AS pending,
       (SELECT count(*) FROM orderexp.policy_config) AS policy_config;
SELECT * FROM orderexp.run_due();

-- GUCs, with their built-in defaults
SELECT name, boot_val, unit, context, vartype, min_val, max_val
  FROM pg_settings WHERE name LIKE 'orderexp.%' ORDER BY name;

-- PUBLIC has no privileges on anything in schema orderexp
SELECT c.relname COLLATE "C" AS relname,
       has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS public_has_any
  FROM pg_class c
 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY 1;
SELECT c.relname COLLATE "C" AS sequence,
       has_sequence_privilege('public', c.oid, 'USAGE, SELECT, UPDATE') AS public_has_any
  FROM pg_class c
 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind = 'S'
 ORDER BY 1;
SELECT has_schema_privilege('public', 'orderexp', 'USAGE') AS public_schema_usage;
-- the trigger functions are kept from PUBLIC; the other functions run with
-- their caller's rights, who needs privileges on orderexp's tables anyway
SELECT p.proname COLLATE "C" AS trigger_function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'orderexp'::regnamespace
   AND p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
 ORDER BY 1;

--
-- Helpers for the later files
--
CREATE SCHEMA regress;

-- deadlines of the tracked orders of a registered table, relative to each
-- order's created-at (so that nothing printed depends on now())
CREATE FUNCTION regress.deadlines(tbl regclass)
RETURNS TABLE (order_key text, policy text, after_created interval,
               remind_before interval, extensions integer, row_exists boolean)
LANGUAGE plpgsql AS $$
DECLARE
	cfg orderexp.tables;
BEGIN
	SELECT * INTO STRICT cfg FROM orderexp.tables t WHERE t.order_table = tbl;
	RETURN QUERY EXECUTE format($q$
		SELECT t.order_key,
		       CASE WHEN p.id IS NULL THEN '(no policy)'
		            WHEN p.category IS NULL THEN '(default)'
		            ELSE p.category END,
		       t.close_at - o.%1$I::timestamptz,
		       t.close_at - t.remind_at,
		       t.extensions,
		       o.%2$I IS NOT NULL
		  FROM orderexp.timers t
		  LEFT JOIN orderexp.policies p ON p.id = t.policy_id
		  LEFT JOIN %3$s o ON o.%2$I::text = t.order_key
		 WHERE t.order_table = $1
		 ORDER BY length(t.order_key), t.order_key COLLATE "C"$q$,
		cfg.created_column, cfg.key_column, tbl)
		USING tbl;
END;
$$;

-- events of a table, without the parts that depend on the clock, on serial
-- ids or on the role running the tests (those are checked separately)
CREATE FUNCTION regress.events(tbl regclass)
RETURNS TABLE (kind text, order_key text, channel text, payload jsonb)
LANGUAGE sql AS $$
	SELECT o.kind, o.order_key, o.channel,
	       o.payload - '{close_at,previous_close_at,policy_id,cancelled_by,extended_by_role}'::text[]
	  FROM orderexp.outbox o
	 WHERE o.order_table = tbl
	 ORDER BY length(o.order_key), o.order_key COLLATE "C", o.id
$$;

-- fingerprint of orderexp's catalog and of the given user tables (rows and
-- triggers): used to show that a failed call changed nothing
CREATE FUNCTION regress.state(tbls regclass[])
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
	part text;
	t regclass;
BEGIN
	SELECT concat_ws('#',
		(SELECT string_agg(x::text, ';' ORDER BY x.order_table::oid) FROM orderexp.tables x),
		(SELECT string_agg(x::text, ';' ORDER BY x.id) FROM orderexp.policies x),
		(SELECT string_agg(x::text, ';' ORDER BY x.order_table::oid, x.order_key) FROM orderexp.timers x),
		(SELECT string_agg(x::text, ';' ORDER BY x.id) FROM orderexp.outbox x),
		(SELECT string_agg(g.tgrelid::oid::text || '.' || g.tgname || '.' || g.tgenabled::text, ';'
		                   ORDER BY g.tgrelid::oid, g.tgname)
		   FROM pg_trigger g WHERE g.tgrelid = ANY (tbls) AND NOT g.tgisinternal))
	  INTO s;
	FOREACH t IN ARRAY tbls LOOP
		EXECUTE format('SELECT string_agg(o::text, %L ORDER BY o::text) FROM %s o', ';', t) INTO part;
		s := concat_ws('#', s, part);
	END LOOP;
	RETURN md5(s);
END;
$$;

CREATE TABLE regress.baseline (tbls regclass[] NOT NULL, state text NOT NULL);

-- remember the current state
CREATE FUNCTION regress.mark(VARIADIC tbls regclass[])
RETURNS void
LANGUAGE sql AS $$
	DELETE FROM regress.baseline;
	INSERT INTO regress.baseline VALUES (tbls, regress.state(tbls));
$$;

-- is the state still the one remembered?
CREATE FUNCTION regress.unchanged()
RETURNS boolean
LANGUAGE sql AS $$
	SELECT b.state = regress.state(b.tbls) FROM regress.baseline b
$$;
