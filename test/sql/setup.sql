--
-- setup: install orderexp and check that its objects exist in schema orderexp.
-- Also creates schema "regress" with helpers shared by the later test files.
--
CREATE EXTENSION orderexp;

SELECT e.extname, e.extversion, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'orderexp';

-- Each check below lists the objects the Core design promises, so that
-- objects added later (other issues) do not disturb it.

-- every member of the extension lives in schema orderexp (the event trigger
-- has no schema)
SELECT count(*) > 20 AS has_members,
       count(*) FILTER (WHERE (pg_identify_object(d.classid, d.objid, d.objsubid)).schema IS DISTINCT FROM 'orderexp'
                          AND d.classid <> 'pg_event_trigger'::regclass) AS outside_schema_orderexp
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orderexp')
   AND d.deptype = 'e';

-- the relations, and that they are members of the extension
SELECT e.name, c.relkind,
       EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
                  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orderexp')) AS member
  FROM (VALUES ('tables'), ('policies'), ('policies_id_seq'), ('timers'), ('outbox'),
               ('outbox_id_seq'), ('pending'), ('policy_config')) AS e(name)
  LEFT JOIN pg_class c ON c.relname = e.name AND c.relnamespace = 'orderexp'::regnamespace
 ORDER BY e.name COLLATE "C";

-- the documented columns of the catalog tables and views, with their types
SELECT e.rel, e.col, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
  FROM (VALUES
	('tables', 'order_table'), ('tables', 'key_column'), ('tables', 'key_type'),
	('tables', 'status_column'), ('tables', 'created_column'), ('tables', 'category_column'),
	('tables', 'unpaid_value'), ('tables', 'closed_value'), ('tables', 'cancelled_value'),
	('tables', 'payload_columns'), ('tables', 'channels'), ('tables', 'registered_at'),
	('tables', 'last_error'), ('tables', 'last_error_at'),
	('policies', 'id'), ('policies', 'order_table'), ('policies', 'category'),
	('policies', 'close_after'), ('policies', 'remind_before'), ('policies', 'extend_by'),
	('policies', 'max_extensions'), ('policies', 'created_at'), ('policies', 'updated_at'),
	('timers', 'order_table'), ('timers', 'order_key'), ('timers', 'policy_id'),
	('timers', 'close_at'), ('timers', 'remind_at'), ('timers', 'extensions'),
	('outbox', 'id'), ('outbox', 'kind'), ('outbox', 'order_table'), ('outbox', 'order_key'),
	('outbox', 'channel'), ('outbox', 'payload'), ('outbox', 'created_at'),
	('outbox', 'attempts'), ('outbox', 'next_attempt_at'), ('outbox', 'leased_until'),
	('outbox', 'delivered_at'), ('outbox', 'last_error'),
	('pending', 'order_table'), ('pending', 'order_key'), ('pending', 'category'),
	('pending', 'policy_id'), ('pending', 'close_at'), ('pending', 'remind_at'),
	('pending', 'extensions'), ('pending', 'time_left'),
	('policy_config', 'policy_id'), ('policy_config', 'order_table'), ('policy_config', 'category'),
	('policy_config', 'close_after'), ('policy_config', 'remind_before'),
	('policy_config', 'extend_by'), ('policy_config', 'max_extensions'),
	('policy_config', 'key_column'), ('policy_config', 'key_type'),
	('policy_config', 'status_column'), ('policy_config', 'created_column'),
	('policy_config', 'category_column'), ('policy_config', 'unpaid_value'),
	('policy_config', 'closed_value'), ('policy_config', 'cancelled_value'),
	('policy_config', 'payload_columns'), ('policy_config', 'channels'),
	('policy_config', 'updated_at'), ('policy_config', 'last_error'),
	('policy_config', 'last_error_at')) AS e(rel, col)
  LEFT JOIN pg_class c ON c.relname = e.rel AND c.relnamespace = 'orderexp'::regnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = e.col AND NOT a.attisdropped
 ORDER BY e.rel COLLATE "C", a.attnum;

-- index definitions
SELECT e.name, pg_get_indexdef(c.oid) AS definition
  FROM (VALUES ('tables_pkey'), ('policies_pkey'), ('policies_table_default'),
               ('policies_table_category'), ('timers_pkey'), ('timers_due'),
               ('outbox_0_pkey'), ('outbox_undelivered'), ('outbox_1_undelivered')) AS e(name)
  LEFT JOIN pg_class c ON c.relname = e.name AND c.relnamespace = 'orderexp'::regnamespace
 ORDER BY e.name COLLATE "C";

-- the functions of the SQL interface: arguments with their defaults, result,
-- security definer, volatility, strictness
SELECT e.name, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result, p.prosecdef, p.provolatile, p.proisstrict
  FROM (VALUES ('set_close_policy'), ('drop_close_policy'), ('cancel_order'),
               ('cancel_orders'), ('extend_order'), ('run_due'), ('timer_trigger')) AS e(name)
  LEFT JOIN pg_proc p ON p.proname = e.name AND p.pronamespace = 'orderexp'::regnamespace
 ORDER BY e.name COLLATE "C";

-- the event trigger that forgets dropped tables
SELECT evtname, evtevent, evtfoid::regproc, evtenabled
  FROM pg_event_trigger WHERE evtname = 'orderexp_sql_drop';

-- configuration tables dumped by pg_dump
SELECT e.name, e.name::regclass = ANY (x.extconfig) AS dumped
  FROM (VALUES ('orderexp.tables'), ('orderexp.policies'), ('orderexp.policies_id_seq'),
               ('orderexp.timers'), ('orderexp.outbox'), ('orderexp.outbox_id_seq')) AS e(name),
       pg_extension x
 WHERE x.extname = 'orderexp'
 ORDER BY e.name COLLATE "C";

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
  FROM pg_settings
 WHERE name IN ('orderexp.databases', 'orderexp.naptime', 'orderexp.batch_size', 'orderexp.enabled')
 ORDER BY name;

-- PUBLIC has no privileges on any table, view or sequence in schema orderexp,
-- but USAGE on the schema, so that the guarded functions can be reached; the
-- trigger functions are kept from PUBLIC (the other functions run with their
-- caller's rights, who needs privileges on orderexp's tables anyway, or check
-- the caller's privilege on the orders table before acting as the owner)
SELECT count(*) > 0 AS has_relations,
       coalesce(string_agg(c.relname, ', ' ORDER BY c.relname COLLATE "C")
                FILTER (WHERE CASE WHEN c.relkind = 'S'
                                   THEN has_sequence_privilege('public', c.oid, 'USAGE, SELECT, UPDATE')
                                   ELSE has_table_privilege('public', c.oid,
                                            'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                              END), '(none)') AS public_has_privileges_on
  FROM pg_class c
 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p', 'm');
SELECT has_schema_privilege('public', 'orderexp', 'USAGE') AS public_schema_usage;
SELECT count(*) >= 3 AS has_trigger_functions,
       coalesce(string_agg(p.proname, ', ' ORDER BY p.proname COLLATE "C")
                FILTER (WHERE has_function_privilege('public', p.oid, 'EXECUTE')), '(none)')
           AS public_can_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'orderexp'::regnamespace
   AND p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype);

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
		(SELECT string_agg(x::text, ';' ORDER BY x.id) FROM orderexp.feedback x),
		(SELECT string_agg(x::text, ';' ORDER BY x.step, x.lang) FROM orderexp.explanation_templates x),
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
