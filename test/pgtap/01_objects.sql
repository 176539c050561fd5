-- orderexp's objects: schema, tables and their columns, indexes, functions
-- with their signatures, views.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(108);

SELECT has_schema('orderexp');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'orderexp'),
          'orderexp', 'the extension lives in schema orderexp');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'orderexp'),
          false, 'the extension is not relocatable');

-- tables
SELECT has_table('orderexp', 'tables', 'table orderexp.tables');
SELECT has_table('orderexp', 'policies', 'table orderexp.policies');
SELECT has_table('orderexp', 'timers', 'table orderexp.timers');
SELECT has_table('orderexp', 'outbox', 'table orderexp.outbox');

SELECT col_is_pk('orderexp', 'tables', 'order_table', 'tables: primary key order_table');
SELECT col_type_is('orderexp', 'tables', 'order_table', 'regclass', 'tables.order_table is regclass');
SELECT col_type_is('orderexp', 'tables', 'key_column', 'name', 'tables.key_column is name');
SELECT col_type_is('orderexp', 'tables', 'key_type', 'regtype', 'tables.key_type is regtype');
SELECT col_type_is('orderexp', 'tables', 'status_column', 'name', 'tables.status_column is name');
SELECT col_type_is('orderexp', 'tables', 'created_column', 'name', 'tables.created_column is name');
SELECT col_type_is('orderexp', 'tables', 'category_column', 'name', 'tables.category_column is name');
SELECT col_is_null('orderexp', 'tables', 'category_column', 'tables.category_column is nullable');
SELECT col_type_is('orderexp', 'tables', 'payload_columns', 'name[]', 'tables.payload_columns is name[]');
SELECT col_type_is('orderexp', 'tables', 'channels', 'text[]', 'tables.channels is text[]');
SELECT col_default_is('orderexp', 'tables', 'channels', '{email}'::text[], 'tables.channels defaults to {email}');
SELECT col_type_is('orderexp', 'tables', 'last_error', 'text', 'tables.last_error is text');
SELECT col_type_is('orderexp', 'tables', 'last_error_at', 'timestamp with time zone', 'tables.last_error_at is timestamptz');
SELECT col_type_is('orderexp', 'tables', 'channels_column', 'name', 'tables.channels_column is name');
SELECT col_is_null('orderexp', 'tables', 'channels_column', 'tables.channels_column is nullable');
SELECT col_type_is('orderexp', 'tables', 'contact_channels', 'text[]', 'tables.contact_channels is text[]');
SELECT col_type_is('orderexp', 'tables', 'contact_columns', 'name[]', 'tables.contact_columns is name[]');
SELECT col_type_is('orderexp', 'tables', 'fallback_before', 'interval', 'tables.fallback_before is interval');
SELECT col_default_is('orderexp', 'tables', 'fallback_before', '5 minutes'::interval,
                      'tables.fallback_before defaults to 5 minutes');

SELECT col_is_pk('orderexp', 'policies', 'id', 'policies: primary key id');
SELECT col_type_is('orderexp', 'policies', 'order_table', 'regclass', 'policies.order_table is regclass');
SELECT fk_ok('orderexp', 'policies', 'order_table', 'orderexp', 'tables', 'order_table');
SELECT col_type_is('orderexp', 'policies', 'category', 'text', 'policies.category is text');
SELECT col_type_is('orderexp', 'policies', 'close_after', 'interval', 'policies.close_after is interval');
SELECT col_not_null('orderexp', 'policies', 'close_after', 'policies.close_after is NOT NULL');
SELECT col_type_is('orderexp', 'policies', 'remind_before', 'interval', 'policies.remind_before is interval');
SELECT col_type_is('orderexp', 'policies', 'extend_by', 'interval', 'policies.extend_by is interval');
SELECT col_type_is('orderexp', 'policies', 'max_extensions', 'integer', 'policies.max_extensions is integer');
SELECT col_default_is('orderexp', 'policies', 'max_extensions', 0, 'policies.max_extensions defaults to 0');

SELECT col_is_pk('orderexp', 'timers', ARRAY['order_table', 'order_key'], 'timers: primary key (order_table, order_key)');
SELECT col_type_is('orderexp', 'timers', 'order_key', 'text', 'timers.order_key is text');
SELECT col_type_is('orderexp', 'timers', 'policy_id', 'integer', 'timers.policy_id is integer');
SELECT col_type_is('orderexp', 'timers', 'close_at', 'timestamp with time zone', 'timers.close_at is timestamptz');
SELECT col_not_null('orderexp', 'timers', 'close_at', 'timers.close_at is NOT NULL');
SELECT col_type_is('orderexp', 'timers', 'remind_at', 'timestamp with time zone', 'timers.remind_at is timestamptz');
SELECT col_type_is('orderexp', 'timers', 'extensions', 'integer', 'timers.extensions is integer');
SELECT col_default_is('orderexp', 'timers', 'extensions', 0, 'timers.extensions defaults to 0');

-- 1.3: the outbox is partitioned by part (outbox_0 kept row by row, 1 to 3
-- rotating), a primary key on id per part
SELECT partitions_are('orderexp', 'outbox',
                      ARRAY['orderexp.outbox_0', 'orderexp.outbox_1', 'orderexp.outbox_2', 'orderexp.outbox_3'],
                      'outbox: partitioned into outbox_0 to outbox_3');
SELECT col_is_pk('orderexp', 'outbox_0', 'id', 'outbox_0: primary key id');
SELECT col_is_pk('orderexp', 'outbox_1', 'id', 'outbox_1: primary key id');
SELECT col_is_pk('orderexp', 'outbox_2', 'id', 'outbox_2: primary key id');
SELECT col_is_pk('orderexp', 'outbox_3', 'id', 'outbox_3: primary key id');
SELECT set_has($$SELECT attname::text FROM pg_attribute WHERE attrelid = 'orderexp.outbox'::regclass
                  AND attnum > 0 AND NOT attisdropped$$,
               $$VALUES ('id'), ('kind'), ('order_table'), ('order_key'), ('channel'), ('payload'), ('created_at'), ('attempts'), ('next_attempt_at'), ('leased_until'), ('delivered_at'), ('last_error')$$,
               'outbox has the documented columns');
SELECT col_type_is('orderexp', 'outbox', 'id', 'bigint', 'outbox.id is bigint');
SELECT col_type_is('orderexp', 'outbox', 'order_table', 'regclass', 'outbox.order_table is regclass');
SELECT col_type_is('orderexp', 'outbox', 'payload', 'jsonb', 'outbox.payload is jsonb');
SELECT col_type_is('orderexp', 'outbox', 'attempts', 'integer', 'outbox.attempts is integer');
SELECT col_has_check('orderexp', 'outbox', 'kind', 'outbox.kind is checked');

-- indexes
SELECT has_index('orderexp', 'timers', 'timers_due', ARRAY['order_table', 'close_at', 'order_key'],
                 'timers_due on (order_table, close_at, order_key)');
SELECT has_index('orderexp', 'outbox', 'outbox_undelivered', ARRAY['next_attempt_at'],
                 'outbox_undelivered on (next_attempt_at)');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
            WHERE indexrelid = 'orderexp.outbox_undelivered'::regclass),
          '((delivered_at IS NULL) AND (txid IS NULL))',
          'outbox_undelivered is partial: undelivered rows claimed one by one only (1.3: not those in the stream)');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
            WHERE indexrelid = 'orderexp.outbox_stream'::regclass),
          '((txid IS NOT NULL) AND (delivered_at IS NULL))',
          'outbox_stream indexes the events in the stream of batches');
-- 1.2: no index by order for every event (1.3: outbox_history, for records and reminders only)
SELECT hasnt_index('orderexp', 'outbox', 'outbox_order',
                   'no outbox_order: every event would pay an index entry for it');
SELECT col_type_is('orderexp', 'audit', 'event_ids', 'bigint[]',
                   'audit.event_ids names the events of each change');
SELECT index_is_unique('orderexp', 'policies', 'policies_table_default', 'one default policy per table');
SELECT index_is_unique('orderexp', 'policies', 'policies_table_category', 'one policy per (table, category)');

-- sequences
SELECT has_sequence('orderexp', 'outbox_id_seq', 'sequence orderexp.outbox_id_seq');
SELECT has_sequence('orderexp', 'policies_id_seq', 'sequence orderexp.policies_id_seq');

-- functions with their signatures and results
SELECT has_function('orderexp', 'set_close_policy',
	ARRAY['regclass', 'interval', 'interval', 'interval', 'integer', 'text', 'name', 'name',
	      'name', 'name', 'text', 'text', 'text', 'name[]', 'text[]', 'boolean', 'name', 'text[]',
	      'interval']);
SELECT function_returns('orderexp', 'set_close_policy',
	ARRAY['regclass', 'interval', 'interval', 'interval', 'integer', 'text', 'name', 'name',
	      'name', 'name', 'text', 'text', 'text', 'name[]', 'text[]', 'boolean', 'name', 'text[]',
	      'interval'], 'integer');
SELECT has_function('orderexp', 'drop_close_policy', ARRAY['regclass', 'text']);
SELECT function_returns('orderexp', 'drop_close_policy', ARRAY['regclass', 'text'], 'void');
SELECT has_function('orderexp', 'cancel_order', ARRAY['regclass', 'anyelement', 'text']);
SELECT function_returns('orderexp', 'cancel_order', ARRAY['regclass', 'anyelement', 'text'], 'boolean');
SELECT has_function('orderexp', 'cancel_orders', ARRAY['regclass', 'anyarray', 'text']);
SELECT function_returns('orderexp', 'cancel_orders', ARRAY['regclass', 'anyarray', 'text'], 'integer');
SELECT has_function('orderexp', 'extend_order', ARRAY['regclass', 'anyelement', 'interval']);
SELECT function_returns('orderexp', 'extend_order', ARRAY['regclass', 'anyelement', 'interval'],
                        'timestamp with time zone');
SELECT has_function('orderexp', 'run_due', ARRAY['integer']);
SELECT is(pg_get_function_result('orderexp.run_due(integer)'::regprocedure),
          'record', 'run_due returns a record');
SELECT is(pg_get_function_arguments('orderexp.run_due(integer)'::regprocedure),
          'max_rows integer DEFAULT NULL::integer, OUT reminded bigint, OUT closed bigint',
          'run_due(max_rows int = NULL) -> (reminded bigint, closed bigint)');
SELECT has_function('orderexp', 'timer_trigger', ARRAY[]::text[]);
SELECT function_returns('orderexp', 'timer_trigger', ARRAY[]::text[], 'trigger');
SELECT function_lang_is('orderexp', 'timer_trigger', ARRAY[]::text[], 'c', 'the timer trigger is in C');
SELECT has_function('orderexp', 'delete_trigger', ARRAY[]::text[]);
SELECT function_returns('orderexp', 'delete_trigger', ARRAY[]::text[], 'trigger');
SELECT function_lang_is('orderexp', 'delete_trigger', ARRAY[]::text[], 'c',
						'the trigger on DELETE of a table with plain deadlines is in C');

-- explanations and feedback (1.3)
SELECT has_table('orderexp', 'feedback', 'table orderexp.feedback');
SELECT has_table('orderexp', 'explanation_templates', 'table orderexp.explanation_templates');
SELECT col_is_pk('orderexp', 'explanation_templates', ARRAY['step', 'lang'],
				 'explanation_templates: primary key (step, lang)');
SELECT has_function('orderexp', 'explain_order', ARRAY['regclass', 'anyelement', 'text']);
SELECT function_returns('orderexp', 'explain_order', ARRAY['regclass', 'anyelement', 'text'], 'text');
SELECT has_function('orderexp', 'record_feedback', ARRAY['regclass', 'anyelement', 'text', 'text']);
SELECT function_returns('orderexp', 'record_feedback', ARRAY['regclass', 'anyelement', 'text', 'text'],
						'bigint');
SELECT has_function('orderexp', 'set_explanation_template', ARRAY['text', 'text', 'text']);
SELECT function_returns('orderexp', 'set_explanation_template', ARRAY['text', 'text', 'text'], 'void');
SELECT is(ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = v::regclass
				   AND attnum > 0 AND NOT attisdropped ORDER BY attnum DESC LIMIT 2),
		  ARRAY['feedback_per_100_closed', 'feedback'], v || ' ends with feedback, feedback_per_100_closed')
  FROM unnest(ARRAY['orderexp.policy_stats', 'orderexp.experiment_stats']) AS v;

-- views
SELECT has_view('orderexp', 'pending', 'view orderexp.pending');
SELECT set_has($$SELECT attname::text FROM pg_attribute WHERE attrelid = 'orderexp.pending'::regclass
                  AND attnum > 0 AND NOT attisdropped$$,
               $$VALUES ('order_table'), ('order_key'), ('category'), ('policy_id'), ('close_at'), ('remind_at'), ('extensions'), ('time_left')$$,
               'pending has the documented columns');
SELECT has_view('orderexp', 'policy_config', 'view orderexp.policy_config');
SELECT set_has($$SELECT attname::text FROM pg_attribute WHERE attrelid = 'orderexp.policy_config'::regclass
                  AND attnum > 0 AND NOT attisdropped$$,
               $$VALUES ('policy_id'), ('order_table'), ('category'), ('close_after'), ('remind_before'), ('extend_by'), ('max_extensions'), ('key_column'), ('key_type'), ('status_column'), ('created_column'), ('category_column'), ('unpaid_value'), ('closed_value'), ('cancelled_value'), ('payload_columns'), ('channels'), ('updated_at'), ('last_error'), ('last_error_at'), ('channels_column'), ('contact_channels'), ('contact_columns'), ('fallback_before')$$,
               'policy_config has the documented columns');
SELECT has_view('orderexp', 'unreachable', 'view orderexp.unreachable');
SELECT set_eq($$SELECT attname::text FROM pg_attribute WHERE attrelid = 'orderexp.unreachable'::regclass
                  AND attnum > 0 AND NOT attisdropped$$,
              $$VALUES ('order_table'), ('order_key'), ('channel'), ('contact'), ('why'), ('since')$$,
              'unreachable has the documented columns');
SELECT has_table('orderexp', 'unreachable_contacts', 'table orderexp.unreachable_contacts, behind the view');
SELECT col_is_pk('orderexp', 'unreachable_contacts', ARRAY['order_table', 'order_key', 'channel'],
                 'unreachable_contacts: one row per order and channel');
-- 1.3: the audit trail is the records of changes in the outbox
SELECT is((SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
            WHERE c.conrelid = 'orderexp.outbox'::regclass AND c.conname = 'outbox_kind_check'),
          'CHECK ((kind = ANY (ARRAY[''reminder''::text, ''closed''::text, ''cancelled''::text, ''extended''::text, ''reopened''::text, ''reminder_withheld''::text])))',
          'outbox.kind: a withheld reminder has a record of its own');
SELECT is((SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
            WHERE c.conrelid = 'orderexp.outbox'::regclass AND c.conname = 'outbox_via_check'),
          'CHECK ((via = ANY (ARRAY[''timeout''::text, ''operator''::text, ''token''::text, ''fallback''::text])))',
          'outbox.via: fallback');
SELECT is((SELECT c.relkind::text FROM pg_class c WHERE c.oid = 'orderexp.audit'::regclass), 'v',
          'audit is a view of the records, not a table written beside the events');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
            WHERE indexrelid = 'orderexp.outbox_history'::regclass),
          '((via IS NOT NULL) OR (kind = ''reminder''::text))',
          'outbox_history holds the records and the reminders (explain_order): the other events pay no entry');
SELECT has_function('orderexp', '_fallback', ARRAY['bigint', 'text', 'boolean']);

SELECT * FROM finish();
ROLLBACK;
