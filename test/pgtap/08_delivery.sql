-- Delivery interface: the objects (dead_at, the prune index, claim/ack/fail/
-- requeue with their signatures, the two views), who may use them
-- (orderexp_relay delivers, orderexp_admin requeues dead letters,
-- orderexp_app and PUBLIC neither), and the GUCs orderexp.max_attempts and
-- orderexp.event_retention with their defaults.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(62);

-- objects
SELECT has_column('orderexp', 'outbox', 'dead_at', 'outbox.dead_at');
SELECT col_type_is('orderexp', 'outbox', 'dead_at', 'timestamp with time zone', 'dead_at is timestamptz');
SELECT col_is_null('orderexp', 'outbox', 'dead_at', 'dead_at is NULL for a live row');
SELECT has_index('orderexp', 'outbox', 'outbox_delivered', ARRAY['delivered_at'],
                 'outbox_delivered on (delivered_at)');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
            WHERE indexrelid = 'orderexp.outbox_delivered'::regclass),
          '((delivered_at IS NOT NULL) AND (via IS NULL))',
          'outbox_delivered is partial: a new row has no entry in it, nor a record of a change');

SELECT has_function('orderexp', 'claim', ARRAY['integer', 'interval', 'text[]', 'text[]'], 'claim(int, interval, text[], text[])');
SELECT has_function('orderexp', 'ack', ARRAY['bigint[]'], 'ack(bigint[])');
SELECT has_function('orderexp', 'fail', ARRAY['bigint', 'text', 'boolean'], 'fail(bigint, text, boolean)');
SELECT has_function('orderexp', 'requeue', ARRAY['bigint[]'], 'requeue(bigint[])');
SELECT function_returns('orderexp', 'claim', ARRAY['integer', 'interval', 'text[]', 'text[]'], 'setof orderexp.outbox', 'claim returns setof outbox');
SELECT function_returns('orderexp', 'ack', ARRAY['bigint[]'], 'integer', 'ack returns int');
SELECT function_returns('orderexp', 'fail', ARRAY['bigint', 'text', 'boolean'], 'timestamp with time zone', 'fail returns timestamptz');
SELECT function_returns('orderexp', 'requeue', ARRAY['bigint[]'], 'integer', 'requeue returns int');
SELECT is(pg_get_function_arguments('orderexp.claim(integer, interval, text[], text[])'::regprocedure),
          'max_rows integer DEFAULT 100, lease interval DEFAULT ''00:00:30''::interval, kinds text[] DEFAULT NULL::text[], channels text[] DEFAULT NULL::text[]',
          'claim: argument names and defaults');
SELECT is(pg_get_function_arguments('orderexp.fail(bigint, text, boolean)'::regprocedure),
          'id bigint, error text, retryable boolean DEFAULT true', 'fail: argument names, retryable by default');
SELECT is(pg_get_function_arguments('orderexp.requeue(bigint[])'::regprocedure),
          'ids bigint[] DEFAULT NULL::bigint[]', 'requeue: NULL means every dead row');
SELECT ok(p.prosecdef, p.oid::regprocedure || ' is SECURITY DEFINER')
  FROM pg_proc p
 WHERE p.oid IN ('orderexp.claim(integer, interval, text[], text[])'::regprocedure,
                 'orderexp.ack(bigint[])'::regprocedure, 'orderexp.fail(bigint, text, boolean)'::regprocedure)
 ORDER BY p.proname;
SELECT is(p.proconfig, ARRAY['search_path=pg_catalog, pg_temp'], p.oid::regprocedure || ' pins search_path')
  FROM pg_proc p
 WHERE p.oid IN ('orderexp.claim(integer, interval, text[], text[])'::regprocedure,
                 'orderexp.ack(bigint[])'::regprocedure, 'orderexp.fail(bigint, text, boolean)'::regprocedure,
                 'orderexp._requeue(bigint[])'::regprocedure)
 ORDER BY p.proname;
-- requeue is a role gate: it knows its caller, and requeues that role's tables' rows only
SELECT is(p.prosrc, 'orderexp_role_gate', 'requeue is a role gate')
  FROM pg_proc p WHERE p.oid = 'orderexp.requeue(bigint[])'::regprocedure;
SELECT ok(NOT p.prosecdef, 'requeue is not SECURITY DEFINER: it runs its body through the gate')
  FROM pg_proc p WHERE p.oid = 'orderexp.requeue(bigint[])'::regprocedure;

SELECT has_view('orderexp', 'dead_letters', 'view dead_letters');
SELECT has_view('orderexp', 'delivery_stats', 'view delivery_stats');
SELECT columns_are('orderexp', 'delivery_stats',
                   ARRAY['kind', 'channel', 'pending', 'leased', 'retrying', 'delivered', 'dead', 'oldest_undelivered',
                         'obsolete'],
                   'delivery_stats columns');
SELECT columns_are('orderexp', 'dead_letters',
                   ARRAY['id', 'kind', 'order_table', 'order_key', 'channel', 'payload', 'created_at',
                         'attempts', 'last_error', 'dead_at'],
                   'dead_letters columns');

-- privileges: functions
SELECT ok(has_function_privilege('orderexp_relay', f, 'EXECUTE'), 'orderexp_relay may execute ' || f)
  FROM unnest(ARRAY['orderexp.claim(integer, interval, text[], text[])', 'orderexp.ack(bigint[])',
                    'orderexp.fail(bigint, text, boolean)']) AS f
 ORDER BY f;
SELECT ok(NOT has_function_privilege('orderexp_relay', 'orderexp.requeue(bigint[])', 'EXECUTE'),
          'orderexp_relay may not requeue');
SELECT ok(has_function_privilege('orderexp_admin', 'orderexp.requeue(bigint[])', 'EXECUTE'),
          'orderexp_admin may requeue');
SELECT ok(NOT has_function_privilege('orderexp_admin', 'orderexp.claim(integer, interval, text[], text[])', 'EXECUTE'),
          'orderexp_admin may not claim');
SELECT ok(NOT has_function_privilege(r, f, 'EXECUTE'), r || ' may not execute ' || f)
  FROM unnest(ARRAY['orderexp_app', 'public']) AS r,
       unnest(ARRAY['orderexp.claim(integer, interval, text[], text[])', 'orderexp.ack(bigint[])',
                    'orderexp.fail(bigint, text, boolean)', 'orderexp.requeue(bigint[])']) AS f
 ORDER BY r, f;

-- privileges: tables and views
SELECT ok(has_table_privilege('orderexp_relay', t, 'SELECT'), 'orderexp_relay may read ' || t)
  FROM unnest(ARRAY['orderexp.outbox', 'orderexp.dead_letters', 'orderexp.delivery_stats']) AS t
 ORDER BY t;
SELECT ok(NOT has_table_privilege('orderexp_relay', 'orderexp.outbox', 'INSERT, UPDATE, DELETE, TRUNCATE'),
          'orderexp_relay changes the outbox only through claim, ack and fail');
SELECT ok(has_table_privilege('orderexp_admin', t, 'SELECT'), 'orderexp_admin may read ' || t)
  FROM unnest(ARRAY['orderexp.dead_letters', 'orderexp.delivery_stats']) AS t
 ORDER BY t;
SELECT ok(NOT has_table_privilege(r, t, 'SELECT'), r || ' may not read ' || t)
  FROM unnest(ARRAY['orderexp_app', 'public']) AS r,
       unnest(ARRAY['orderexp.dead_letters', 'orderexp.delivery_stats']) AS t
 ORDER BY r, t;

-- the GUCs
SELECT is(current_setting('orderexp.max_attempts'), '10', 'orderexp.max_attempts is 10');
SELECT is(current_setting('orderexp.event_retention'), '7d', 'orderexp.event_retention is 7d');
SELECT results_eq($$SELECT name, boot_val, unit, min_val, max_val, context FROM pg_settings
                     WHERE name IN ('orderexp.max_attempts', 'orderexp.event_retention') ORDER BY name$$,
                  $$VALUES ('orderexp.event_retention'::text, '604800'::text, 's'::text, '0'::text, '2147483647'::text, 'superuser'::text),
                           ('orderexp.max_attempts', '10', NULL, '1', '1000', 'superuser')$$,
                  'defaults, units, ranges; superuser-only');
SELECT is(orderexp._max_attempts(), 10, '_max_attempts() reads the GUC');
SELECT is(orderexp._event_retention(), interval '7 days', '_event_retention() reads the GUC as an interval');
SELECT throws_ok($q$DO $x$ BEGIN SET LOCAL ROLE orderexp_relay; SET orderexp.max_attempts = 1000; END $x$ $q$,
                 '42501', NULL, 'a relay cannot change max_attempts');
SELECT throws_ok($q$DO $x$ BEGIN SET LOCAL ROLE orderexp_app; SET orderexp.event_retention = 0; END $x$ $q$,
                 '42501', NULL, 'an application cannot change event_retention');
SELECT lives_ok($$SET LOCAL orderexp.max_attempts = 3$$, 'a superuser can');
SELECT is(orderexp._max_attempts(), 3, '... and the functions see it');

SELECT * FROM finish();
ROLLBACK;
