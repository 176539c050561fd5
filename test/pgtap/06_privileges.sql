-- Privileges: PUBLIC has no privileges on orderexp's tables, views and
-- sequences.  An application role with only INSERT/SELECT/UPDATE on its own
-- orders table can place, pay and re-open orders, and their timers are
-- written (the timer trigger runs as the extension owner), while orderexp's
-- tables stay closed to it.  With TRUNCATE on its table it can truncate it,
-- the owner of a registered table can drop it, and as a member of
-- orderexp_app it can cancel and extend orders.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(31);

-- PUBLIC
SELECT ok(NOT has_table_privilege('public', 'orderexp.' || t,
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'PUBLIC has no privilege on orderexp.' || t)
  FROM unnest(ARRAY['tables', 'policies', 'timers', 'outbox', 'pending', 'policy_config']) AS t
 ORDER BY t;
SELECT ok(NOT has_sequence_privilege('public', 'orderexp.' || s, 'USAGE, SELECT, UPDATE'),
          'PUBLIC has no privilege on orderexp.' || s)
  FROM unnest(ARRAY['outbox_id_seq', 'policies_id_seq']) AS s
 ORDER BY s;
SELECT ok(NOT has_function_privilege('public', 'orderexp.timer_trigger()', 'EXECUTE'),
          'PUBLIC cannot execute the timer trigger function');
SELECT ok(NOT has_function_privilege('public', 'orderexp.delete_trigger()', 'EXECUTE'),
          'PUBLIC cannot execute the trigger function on DELETE');
SELECT ok(has_schema_privilege('public', 'orderexp', 'USAGE'),
          'PUBLIC has USAGE on schema orderexp (what is inside is guarded one by one)');

-- an application role and its shop
CREATE ROLE pgtap_ox_app NOLOGIN;
CREATE SCHEMA pgtap_shop;
CREATE TABLE pgtap_shop.orders (
	id			bigserial PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	amount		numeric
);
GRANT USAGE ON SCHEMA pgtap_shop TO pgtap_ox_app;
GRANT INSERT, SELECT, UPDATE ON pgtap_shop.orders TO pgtap_ox_app;
GRANT USAGE ON SEQUENCE pgtap_shop.orders_id_seq TO pgtap_ox_app;
SELECT orderexp.set_close_policy('pgtap_shop.orders', '1 hour', extend_by => '10 minutes');

-- run a statement as the application role (a SECURITY DEFINER function it owns)
CREATE FUNCTION public.pgtap_ox_as_app(sql text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	IF current_user <> 'pgtap_ox_app' THEN
		RAISE EXCEPTION 'not running as the application role';
	END IF;
	EXECUTE sql;
END $$;
ALTER FUNCTION public.pgtap_ox_as_app(text) OWNER TO pgtap_ox_app;

SELECT lives_ok($$SELECT public.pgtap_ox_as_app('INSERT INTO pgtap_shop.orders (amount) VALUES (10), (20), (30)')$$,
                'the application role inserts orders');
SELECT is((SELECT count(*) FROM orderexp.timers WHERE order_table = 'pgtap_shop.orders'::regclass),
          3::bigint, 'their timers were created');
SELECT is((SELECT t.close_at FROM orderexp.timers t WHERE t.order_table = 'pgtap_shop.orders'::regclass AND t.order_key = '1'),
          (SELECT o.created_at + interval '1 hour' FROM pgtap_shop.orders o WHERE o.id = 1),
          'with the policy''s deadline');
SELECT lives_ok($$SELECT public.pgtap_ox_as_app('UPDATE pgtap_shop.orders SET status = ''paid'' WHERE id = 1')$$,
                'the application role pays an order');
SELECT lives_ok($$SELECT public.pgtap_ox_as_app('UPDATE pgtap_shop.orders SET status = ''unpaid'', created_at = now() WHERE id = 1')$$,
                'and sets it back to unpaid');
SELECT is((SELECT count(*) FROM orderexp.timers WHERE order_table = 'pgtap_shop.orders'::regclass AND order_key = '1'),
          1::bigint, 'the re-opened order is tracked');
SELECT throws_ok($$SELECT public.pgtap_ox_as_app('SELECT count(*) FROM orderexp.timers')$$, '42501', NULL,
                 'the application role cannot read orderexp.timers');
SELECT throws_ok($$SELECT public.pgtap_ox_as_app('DELETE FROM orderexp.timers')$$, '42501', NULL,
                 'the application role cannot delete timers');
SELECT throws_ok($$SELECT public.pgtap_ox_as_app('SELECT count(*) FROM orderexp.outbox')$$, '42501', NULL,
                 'the application role cannot read the outbox');
SELECT throws_ok($$SELECT public.pgtap_ox_as_app('SELECT orderexp.cancel_order(''pgtap_shop.orders'', 2)')$$,
                 '42501', NULL, 'cancel_order is not for every role');
SELECT throws_ok($$SELECT public.pgtap_ox_as_app('SELECT * FROM orderexp.run_due()')$$,
                 '42501', NULL, 'run_due is orderexp_admin''s, not an application role''s (1.3)');
SELECT is((SELECT array_agg(status ORDER BY id) FROM pgtap_shop.orders),
          ARRAY['unpaid', 'unpaid', 'unpaid'], 'the orders are unchanged');

-- TRUNCATE by a role that may truncate the table removes its timers
GRANT TRUNCATE ON pgtap_shop.orders TO pgtap_ox_app;
SELECT lives_ok($$SELECT public.pgtap_ox_as_app('TRUNCATE pgtap_shop.orders')$$,
                'the application role truncates its orders table');
SELECT is((SELECT count(*) FROM orderexp.timers WHERE order_table = 'pgtap_shop.orders'::regclass),
          0::bigint, 'and the timers are gone');

-- the owner of a registered table can drop it, and orderexp forgets it
CREATE TABLE pgtap_shop.owned (id int PRIMARY KEY, status text, created_at timestamptz);
ALTER TABLE pgtap_shop.owned OWNER TO pgtap_ox_app;
SELECT orderexp.set_close_policy('pgtap_shop.owned', '1 hour');
SELECT public.pgtap_ox_as_app('INSERT INTO pgtap_shop.owned VALUES (1, ''unpaid'', now())');
SELECT 'pgtap_shop.owned'::regclass::oid AS owned_oid \gset
SELECT lives_ok($$SELECT public.pgtap_ox_as_app('DROP TABLE pgtap_shop.owned')$$,
                'the owner drops its registered table');
SELECT is((SELECT count(*) FROM orderexp.tables WHERE order_table = :owned_oid)
          + (SELECT count(*) FROM orderexp.timers WHERE order_table = :owned_oid),
          0::bigint, 'its registration and timers are gone');

-- as a member of orderexp_app, the application role cancels and extends
GRANT orderexp_app TO pgtap_ox_app;
SELECT public.pgtap_ox_as_app('INSERT INTO pgtap_shop.orders (id, amount) VALUES (11, 1), (12, 2)');
SELECT lives_ok($$SELECT public.pgtap_ox_as_app('SELECT orderexp.cancel_order(''pgtap_shop.orders'', 11, ''app'')')$$,
                'the application role cancels an order');
SELECT lives_ok($$SELECT public.pgtap_ox_as_app('SELECT orderexp.extend_order(''pgtap_shop.orders'', 12)')$$,
                'the application role extends an order');
SELECT results_eq($$SELECT id, status FROM pgtap_shop.orders WHERE id IN (11, 12) ORDER BY id$$,
                  $$VALUES (11::bigint, 'cancelled'), (12, 'unpaid')$$, 'statuses after cancel and extend');
SELECT bag_eq($$SELECT kind, payload->>'cancelled_by' AS cancelled_by, payload->>'extended_by_role' AS extended_by
                  FROM orderexp.outbox
                 WHERE order_table = 'pgtap_shop.orders'::regclass$$,
              $$VALUES ('cancelled', 'pgtap_ox_app', NULL), ('extended', NULL, 'pgtap_ox_app')$$,
              'the events name the application role');

SELECT * FROM finish();
ROLLBACK;
