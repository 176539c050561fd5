-- The privilege model of 1.1: the roles orderexp_admin, orderexp_app and
-- orderexp_relay, what PUBLIC keeps, and the gates.  A role that may not
-- UPDATE an orders table gets 42501 from every function that changes
-- orders, and nothing changes; with UPDATE (and orderexp_app) it works, and
-- the events name it.  The checks over "every gate" and "every SECURITY
-- DEFINER function" read the catalog, so they cover functions added later.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(77);

-- run sql as role r; errors come out as they are
CREATE FUNCTION public.pgtap_ox_as(r name, sql text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	v text;
BEGIN
	PERFORM set_config('role', r, true);
	EXECUTE sql INTO v;
	PERFORM set_config('role', 'none', true);
	RETURN v;
END $$;

-- a call of gate fn on table tbl with every other argument NULL
CREATE FUNCTION public.pgtap_ox_gate_call(fn regprocedure, tbl text) RETURNS text
LANGUAGE sql AS $$
	SELECT format('SELECT orderexp.%I(%L::regclass%s)::text', p.proname, tbl,
				  (SELECT string_agg(', NULL::' ||
									 CASE t WHEN 'anyelement'::regtype THEN 'bigint'
											WHEN 'anyarray'::regtype THEN 'bigint[]'
											ELSE format_type(t, NULL) END, '' ORDER BY n)
					 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n)
					WHERE n > 1))
	  FROM pg_proc p WHERE p.oid = fn
$$;

-- the roles exist and cannot log in
SELECT is((SELECT count(*) FROM pg_roles
		    WHERE rolname IN ('orderexp_admin', 'orderexp_app', 'orderexp_relay')
			  AND NOT rolcanlogin AND NOT rolsuper),
		  3::bigint, 'the three roles exist, NOLOGIN');

-- PUBLIC
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
				 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p')
				   AND has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
				 ORDER BY 1),
		  '{}'::text[], 'PUBLIC has no privilege on any table, view or sequence of orderexp');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
				 WHERE p.pronamespace = 'orderexp'::regnamespace
				   AND (p.prosecdef OR p.prosrc IN ('orderexp_gate', 'orderexp_owner_gate',
													'orderexp_extension_token',
													'orderexp_extend_order_by_token'))
				   AND has_function_privilege('public', p.oid, 'EXECUTE')
				 ORDER BY 1),
		  '{}'::text[], 'PUBLIC cannot execute any gate or SECURITY DEFINER function');
SELECT is(ARRAY(SELECT b.oid::regprocedure::text FROM pg_proc b
				  JOIN pg_proc g ON g.pronamespace = b.pronamespace AND b.proname = '_' || g.proname
								AND b.proargtypes = g.proargtypes
				 WHERE b.pronamespace = 'orderexp'::regnamespace
				   AND (has_function_privilege('public', b.oid, 'EXECUTE')
						OR has_function_privilege('orderexp_app', b.oid, 'EXECUTE')
						OR has_function_privilege('orderexp_admin', b.oid, 'EXECUTE')
						OR has_function_privilege('orderexp_relay', b.oid, 'EXECUTE'))
				 ORDER BY 1),
		  '{}'::text[], 'the body behind every gate is the extension owner''s alone');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
				 WHERE p.pronamespace = 'orderexp'::regnamespace AND p.prosecdef
				   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
				 ORDER BY 1),
		  '{}'::text[], 'every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
				 WHERE p.pronamespace = 'orderexp'::regnamespace AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'plpgsql')
				   AND NOT coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) c
											  WHERE c LIKE 'search_path=%'), false)
				 ORDER BY 1),
		  '{}'::text[], 'every PL/pgSQL function of orderexp pins search_path');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
				 WHERE p.pronamespace = 'orderexp'::regnamespace AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'sql')
				   AND NOT coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) c
											  WHERE c LIKE 'search_path=%'), false)
				 ORDER BY 1),
		  '{}'::text[], 'every SQL function of orderexp pins search_path (1.2 missed _normal_p, _wilson and _iso_interval)');
SELECT ok(NOT has_function_privilege('public', 'orderexp.run_due(integer)', 'EXECUTE'),
		  'PUBLIC may not call run_due (1.3: it runs the tables'' owners'' code as them)');
SELECT ok(has_function_privilege('orderexp_admin', 'orderexp.run_due(integer)', 'EXECUTE'),
		  'orderexp_admin may call run_due');
SELECT ok(has_function_privilege('public', 'orderexp._actor()', 'EXECUTE'), 'and _actor');

-- the application role
SELECT ok(has_function_privilege('orderexp_app', f, 'EXECUTE'), 'orderexp_app may call ' || f)
  FROM unnest(ARRAY['orderexp.cancel_order(regclass, anyelement, text)',
					'orderexp.cancel_orders(regclass, anyarray, text)',
					'orderexp.extend_order(regclass, anyelement, interval)',
					'orderexp.extension_token(regclass, anyelement)',
					'orderexp.extend_order_by_token(text)']) AS f;
SELECT ok(NOT has_function_privilege('orderexp_app', f, 'EXECUTE'), 'orderexp_app may not call ' || f)
  FROM unnest(ARRAY['orderexp.drop_close_policy(regclass, text)', 'orderexp.rotate_secret()',
					'orderexp._token_make(regclass, text, timestamptz, integer, bigint)']) AS f;
SELECT ok(has_function_privilege('orderexp_app', f, 'EXECUTE'), 'orderexp_app may call ' || f)
  FROM unnest(ARRAY['orderexp.explain_order(regclass, anyelement, text)',
					'orderexp.record_feedback(regclass, anyelement, text, text)']) AS f;
SELECT ok(NOT has_function_privilege('orderexp_app', 'orderexp.set_explanation_template(text, text, text)', 'EXECUTE'),
		  'orderexp_app may not change the explanation templates');
SELECT ok(NOT has_function_privilege('orderexp_app',
		  'orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name, name, name, text, text, text, name[], text[], boolean, name, text[], interval)',
		  'EXECUTE'), 'orderexp_app may not call set_close_policy');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
				 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p')
				   AND has_table_privilege('orderexp_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
				 ORDER BY 1),
		  '{}'::text[], 'orderexp_app has no privilege on orderexp''s tables');

-- the administrator
SELECT ok(NOT has_function_privilege('orderexp_admin', 'orderexp.rotate_secret()', 'EXECUTE'),
		  'orderexp_admin may not rotate the secret: it signs every table''s links');
SELECT ok(has_function_privilege('orderexp_admin', f, 'EXECUTE'), 'orderexp_admin may call ' || f)
  FROM unnest(ARRAY['orderexp.drop_close_policy(regclass, text)',
					'orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name, name, name, text, text, text, name[], text[], boolean, name, text[], interval)']) AS f;
SELECT ok(NOT has_function_privilege('orderexp_admin', 'orderexp.cancel_order(regclass, anyelement, text)', 'EXECUTE'),
		  'orderexp_admin may not cancel orders');
SELECT ok(has_function_privilege('orderexp_admin', 'orderexp.set_explanation_template(text, text, text)', 'EXECUTE'),
		  'orderexp_admin may change the explanation templates');
SELECT ok(has_table_privilege('orderexp_admin', v, 'SELECT'), 'orderexp_admin may read ' || v)
  FROM unnest(ARRAY['orderexp.pending', 'orderexp.policy_config', 'orderexp.unreachable']) AS v;
SELECT ok(NOT has_function_privilege(r, 'orderexp._fallback(bigint, text, boolean)', 'EXECUTE'),
		  r || ' may not write a fallback reminder itself (claim and fail do)')
  FROM unnest(ARRAY['public', 'orderexp_admin', 'orderexp_app', 'orderexp_relay']) AS r;
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
				 WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'p', 'S')
				   AND has_table_privilege('orderexp_admin', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
				 ORDER BY 1),
		  '{}'::text[], 'orderexp_admin has no privilege on orderexp''s tables themselves');

-- the relay never writes timers, registrations, policies or the secret
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
				 WHERE c.oid IN ('orderexp.timers'::regclass, 'orderexp.tables'::regclass,
								 'orderexp.policies'::regclass, 'orderexp.secret'::regclass)
				   AND has_table_privilege('orderexp_relay', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
				 ORDER BY 1),
		  '{}'::text[], 'orderexp_relay has no privilege on timers, tables, policies, secret');
SELECT ok(NOT has_function_privilege('orderexp_relay', 'orderexp.cancel_order(regclass, anyelement, text)', 'EXECUTE'),
		  'orderexp_relay may not cancel orders');

-- a shop with three application roles
CREATE SCHEMA pgtap_roles;
CREATE TABLE pgtap_roles.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	owner_name	name NOT NULL DEFAULT current_user
);
SELECT orderexp.set_close_policy('pgtap_roles.orders', '1 hour', extend_by => '10 minutes',
								 max_extensions => 2);
INSERT INTO pgtap_roles.orders (id) SELECT g FROM generate_series(1, 10) g;
-- the same under row-level security: each role sees its own orders only
CREATE TABLE pgtap_roles.guarded (LIKE pgtap_roles.orders INCLUDING ALL);
SELECT orderexp.set_close_policy('pgtap_roles.guarded', '1 hour');
INSERT INTO pgtap_roles.guarded (id) SELECT g FROM generate_series(1, 3) g;
ALTER TABLE pgtap_roles.guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON pgtap_roles.guarded USING (owner_name = current_user);
CREATE ROLE pgtap_ox_reader NOLOGIN IN ROLE orderexp_app, orderexp_admin;	-- SELECT only
CREATE ROLE pgtap_ox_clerk NOLOGIN IN ROLE orderexp_app;					-- SELECT, UPDATE
CREATE ROLE pgtap_ox_rls NOLOGIN IN ROLE orderexp_app;						-- UPDATE under RLS
GRANT USAGE ON SCHEMA pgtap_roles TO pgtap_ox_reader, pgtap_ox_clerk, pgtap_ox_rls;
GRANT SELECT ON pgtap_roles.orders TO pgtap_ox_reader, pgtap_ox_clerk;
GRANT UPDATE ON pgtap_roles.orders TO pgtap_ox_clerk;
GRANT SELECT, UPDATE ON pgtap_roles.guarded TO pgtap_ox_rls;
SELECT public.pgtap_ox_as('pgtap_ox_clerk', 'SELECT orderexp.extension_token(''pgtap_roles.orders'', 9)') AS tok9 \gset

CREATE TEMP TABLE before AS
SELECT (SELECT array_agg(o::text ORDER BY o.id) FROM pgtap_roles.orders o)
	   || (SELECT array_agg(o::text ORDER BY o.id) FROM pgtap_roles.guarded o) AS orders,
	   (SELECT array_agg(t::text ORDER BY t.order_key) FROM orderexp.timers t) AS timers,
	   (SELECT count(*) FROM orderexp.outbox) AS outbox;

-- every gate refuses a role without UPDATE on the table, before anything else
SELECT throws_ok(format('SELECT public.pgtap_ox_as(''pgtap_ox_reader'', %L)',
						public.pgtap_ox_gate_call(p.oid, 'pgtap_roles.orders')),
				 '42501', NULL, 'without UPDATE: ' || p.proname || ' refused')
  FROM pg_proc p
 WHERE p.pronamespace = 'orderexp'::regnamespace AND p.prosrc IN ('orderexp_gate', 'orderexp_owner_gate')
 ORDER BY p.proname;
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'SELECT orderexp.extension_token(''pgtap_roles.orders'', 1)')$$,
				 '42501', NULL, 'without UPDATE: extension_token refused');
SELECT throws_ok(format('SELECT public.pgtap_ox_as(''pgtap_ox_reader'', %L)',
						format('SELECT orderexp.extend_order_by_token(%L)', :'tok9')),
				 '42501', NULL, 'without UPDATE: extend_order_by_token refused');
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'SELECT orderexp._cancel_order(''pgtap_roles.orders'', 1::bigint, NULL)')$$,
				 '42501', NULL, 'nor can it call a body directly');
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'UPDATE orderexp.timers SET close_at = now()')$$,
				 '42501', NULL, 'nor move deadlines by hand');
-- row-level security that applies to the caller is refused too
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_rls', 'SELECT orderexp.cancel_order(''pgtap_roles.guarded'', 2)')$$,
				 '42501', NULL, 'with UPDATE under row-level security: cancel_order refused');
-- registering wants ownership of the table
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'SELECT orderexp.set_close_policy(''pgtap_roles.orders'', ''1 minute'')')$$,
				 '42501', NULL, 'orderexp_admin who does not own the table cannot change its policy');
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'SELECT orderexp.drop_close_policy(''pgtap_roles.orders'')')$$,
				 '42501', NULL, 'nor drop it');
SELECT is((SELECT array_agg(o::text ORDER BY o.id) FROM pgtap_roles.orders o)
		  || (SELECT array_agg(o::text ORDER BY o.id) FROM pgtap_roles.guarded o), (SELECT orders FROM before),
		  'the orders are unchanged');
SELECT is((SELECT array_agg(t::text ORDER BY t.order_key) FROM orderexp.timers t), (SELECT timers FROM before),
		  'the timers are unchanged');
SELECT is((SELECT count(*) FROM orderexp.outbox), (SELECT outbox FROM before), 'no event was written');

-- with UPDATE, the same calls work and the events name the caller
SELECT is(public.pgtap_ox_as('pgtap_ox_clerk', 'SELECT orderexp.cancel_order(''pgtap_roles.orders'', 1, ''clerk'')'),
		  'true', 'the clerk cancels an order');
SELECT is(public.pgtap_ox_as('pgtap_ox_clerk', 'SELECT orderexp.cancel_orders(''pgtap_roles.orders'', ARRAY[2, 3])'),
		  '2', 'and two more');
SELECT ok(public.pgtap_ox_as('pgtap_ox_clerk', 'SELECT orderexp.extend_order(''pgtap_roles.orders'', 4)')::timestamptz > now(),
		  'extends one');
SELECT ok(public.pgtap_ox_as('pgtap_ox_clerk', format('SELECT orderexp.extend_order_by_token(%L)', :'tok9'))::timestamptz > now(),
		  'and extends one with a token');
SELECT bag_eq($$SELECT kind, coalesce(payload->>'cancelled_by', payload->>'extended_by_role')
				  FROM orderexp.outbox WHERE order_table = 'pgtap_roles.orders'::regclass$$,
			  $$VALUES ('cancelled', 'pgtap_ox_clerk'), ('cancelled', 'pgtap_ox_clerk'),
					   ('cancelled', 'pgtap_ox_clerk'), ('extended', 'pgtap_ox_clerk'),
					   ('extended', 'pgtap_ox_clerk')$$,
			  'every event names the clerk, not the extension owner');
SELECT is(public.pgtap_ox_as('pgtap_ox_clerk', 'SELECT orderexp._actor()'), 'pgtap_ox_clerk',
		  '_actor outside a gate is current_user');

-- an administrator does not rotate the secret, and reads the views for the
-- tables it owns only
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'SELECT orderexp.rotate_secret()')$$,
				 '42501', NULL, 'orderexp_admin does not rotate the secret');
SELECT is(public.pgtap_ox_as('pgtap_ox_reader', 'SELECT count(*) FROM orderexp.pending WHERE order_table = ''pgtap_roles.orders''::regclass'),
		  '0', 'orderexp.pending shows an administrator nothing of a table it does not own');
ALTER TABLE pgtap_roles.orders OWNER TO pgtap_ox_reader;
SELECT is(public.pgtap_ox_as('pgtap_ox_reader', 'SELECT count(*) FROM orderexp.pending WHERE order_table = ''pgtap_roles.orders''::regclass'),
		  '7', 'and its own table''s pending orders');
SELECT throws_ok($$SELECT public.pgtap_ox_as('pgtap_ox_reader', 'SELECT count(*) FROM orderexp.secret')$$,
				 '42501', NULL, 'but not the secret');

SELECT * FROM finish();
ROLLBACK;
