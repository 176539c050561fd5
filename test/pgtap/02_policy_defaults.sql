-- set_close_policy: the defaults of its arguments and of a new table's
-- mapping (primary key, status, created_at, no category, unpaid / closed /
-- cancelled, no payload columns, {email}); a later call with NULL mapping
-- arguments keeps the mapping.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(30);

SELECT is(pg_get_function_arguments(
	'orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name, name, name, text, text, text, name[], text[], boolean, name, text[], interval)'::regprocedure),
	'orders regclass, close_after interval, remind_before interval DEFAULT NULL::interval, '
	'extend_by interval DEFAULT NULL::interval, max_extensions integer DEFAULT 0, '
	'category text DEFAULT NULL::text, key_column name DEFAULT NULL::name, '
	'status_column name DEFAULT NULL::name, created_column name DEFAULT NULL::name, '
	'category_column name DEFAULT NULL::name, unpaid_value text DEFAULT NULL::text, '
	'closed_value text DEFAULT NULL::text, cancelled_value text DEFAULT NULL::text, '
	'payload_columns name[] DEFAULT NULL::name[], channels text[] DEFAULT NULL::text[], '
	'reschedule boolean DEFAULT false, channels_column name DEFAULT NULL::name, '
	'contact_columns text[] DEFAULT NULL::text[], fallback_before interval DEFAULT NULL::interval',
	'set_close_policy: argument names and defaults');

CREATE SCHEMA pgtap_defaults;
CREATE TABLE pgtap_defaults.orders (
	order_no	bigint PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL,
	note		text
);
INSERT INTO pgtap_defaults.orders VALUES (1, 'unpaid', now() - interval '10 minutes', 'x');

SELECT lives_ok($$SELECT orderexp.set_close_policy('pgtap_defaults.orders', '1 hour')$$,
                'register with orders and close_after only');

SELECT is(key_column, 'order_no'::name, 'key column: the primary key')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(key_type, 'bigint'::regtype, 'key type: the primary key''s')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(status_column, 'status'::name, 'status column: status')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(created_column, 'created_at'::name, 'created-at column: created_at')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(category_column, NULL::name, 'no category column')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(unpaid_value, 'unpaid', 'unpaid value: unpaid')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(closed_value, 'closed', 'closed value: closed')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(cancelled_value, 'cancelled', 'cancelled value: cancelled')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(payload_columns, '{}'::name[], 'no payload columns')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(channels, '{email}'::text[], 'channels: {email}')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(category, NULL, 'the policy is the table''s default (category NULL)')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(close_after, '1 hour'::interval, 'close_after as given')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(remind_before, NULL, 'no reminder')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(extend_by, NULL, 'no extend_by')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(max_extensions, 0, 'max_extensions 0')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(channels_column, NULL::name, 'no channels column: every channel gets a reminder')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(contact_channels, '{}'::text[], 'no contact columns: no column "email" to check')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;
SELECT is(fallback_before, '5 minutes'::interval, 'fallback_before: 5 minutes')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.orders'::regclass;

SELECT bag_eq(
	$$SELECT tgname::text FROM pg_trigger
	   WHERE tgrelid = 'pgtap_defaults.orders'::regclass AND NOT tgisinternal$$,
	ARRAY['orderexp_timer_insert', 'orderexp_timer_truncate', 'orderexp_status'],
	'three triggers on the registered table (one on the status, 1.3)');
SELECT is(close_at, (SELECT created_at + interval '1 hour' FROM pgtap_defaults.orders WHERE order_no = 1),
          'the existing unpaid order got a deadline from its created-at')
  FROM orderexp.timers WHERE order_table = 'pgtap_defaults.orders'::regclass AND order_key = '1';

-- a custom mapping, then a change with NULL mapping arguments keeps it
CREATE TABLE pgtap_defaults.custom (
	ref			text UNIQUE NOT NULL,
	id			integer PRIMARY KEY,
	state		text NOT NULL,
	opened		timestamp NOT NULL,
	kind		text
);
SELECT lives_ok($$SELECT orderexp.set_close_policy('pgtap_defaults.custom', '1 hour',
		key_column => 'ref', status_column => 'state', created_column => 'opened',
		category_column => 'kind', unpaid_value => 'open', closed_value => 'lapsed',
		cancelled_value => 'dropped', payload_columns => '{kind}', channels => '{sms,push}')$$,
	'register with a custom mapping');
SELECT lives_ok($$SELECT orderexp.set_close_policy('pgtap_defaults.custom', '2 hours')$$,
	'change the policy only');
SELECT is(close_after, '2 hours'::interval, 'close_after changed')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.custom'::regclass;
SELECT is(ARRAY[key_column, status_column, created_column, category_column],
          ARRAY['ref', 'state', 'opened', 'kind']::name[], 'column mapping kept')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.custom'::regclass;
SELECT is(key_type, 'text'::regtype, 'key type of the named key column')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.custom'::regclass;
SELECT is(ARRAY[unpaid_value, closed_value, cancelled_value], ARRAY['open', 'lapsed', 'dropped'],
          'status words kept')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.custom'::regclass;
SELECT is(payload_columns, '{kind}'::name[], 'payload columns kept')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.custom'::regclass;
SELECT is(channels, '{sms,push}'::text[], 'channels kept')
  FROM orderexp.policy_config WHERE order_table = 'pgtap_defaults.custom'::regclass;

SELECT * FROM finish();
ROLLBACK;
