-- End to end: orders placed through the application's own INSERTs get
-- deadlines; run_due() closes exactly the overdue unpaid ones, in the same
-- transaction writes one 'closed' event per channel, drops the timers it is
-- done with, and leaves paid, cancelled and future orders alone.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(16);

CREATE SCHEMA pgtap_close;
CREATE TABLE pgtap_close.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	total		numeric
);
SELECT orderexp.set_close_policy('pgtap_close.orders', '30 minutes', extend_by => '3 hours',
                                 payload_columns => '{total}', channels => '{email,sms}');

INSERT INTO pgtap_close.orders VALUES
	(1, 'unpaid', now() - interval '2 hours', 10),	-- overdue
	(2, 'unpaid', now() - interval '1 hour', 20),	-- overdue
	(3, 'unpaid', now() - interval '2 hours', 30),	-- overdue, paid below
	(4, 'unpaid', now() - interval '2 hours', 40),	-- overdue, cancelled below
	(5, 'unpaid', now() - interval '2 hours', 50),	-- overdue, extended below
	(6, 'unpaid', now(), 60);						-- not due
UPDATE pgtap_close.orders SET status = 'paid' WHERE id = 3;

SELECT is((SELECT count(*) FROM orderexp.timers WHERE order_table = 'pgtap_close.orders'::regclass),
          6::bigint, 'every unpaid insert started a timer');
SELECT ok(orderexp.cancel_order('pgtap_close.orders', 4, 'test'), 'order 4 cancelled');
SELECT is(orderexp.extend_order('pgtap_close.orders', 5) - (SELECT created_at FROM pgtap_close.orders WHERE id = 5),
          interval '210 minutes', 'order 5 extended by the policy''s 3 hours');

SELECT results_eq($$SELECT reminded, closed FROM orderexp.run_due()$$,
                  $$VALUES (0::bigint, 2::bigint)$$, 'run_due closes two orders');
SELECT results_eq($$SELECT id, status FROM pgtap_close.orders ORDER BY id$$,
                  $$VALUES (1::bigint, 'closed'), (2, 'closed'), (3, 'paid'), (4, 'cancelled'),
                           (5, 'unpaid'), (6, 'unpaid')$$,
                  'exactly the overdue unpaid orders are closed');
SELECT bag_eq($$SELECT order_key, channel FROM orderexp.outbox
                 WHERE order_table = 'pgtap_close.orders'::regclass AND kind = 'closed'$$,
              $$VALUES ('1', 'email'), ('1', 'sms'), ('2', 'email'), ('2', 'sms')$$,
              'one closed event per channel per closed order');
SELECT is((SELECT array_agg(DISTINCT payload->>'reason')
             FROM orderexp.outbox WHERE order_table = 'pgtap_close.orders'::regclass AND kind = 'closed'),
          ARRAY['timeout'], 'every closed event has reason timeout');
SELECT is((SELECT payload->'order' FROM orderexp.outbox
            WHERE order_table = 'pgtap_close.orders'::regclass AND kind = 'closed'
              AND order_key = '2' AND channel = 'sms'),
          '{"total": 20}'::jsonb, 'the event carries the payload columns');
SELECT is((SELECT (payload->>'close_at')::timestamptz FROM orderexp.outbox
            WHERE order_table = 'pgtap_close.orders'::regclass AND kind = 'closed'
              AND order_key = '1' AND channel = 'email'),
          (SELECT created_at + interval '30 minutes' FROM pgtap_close.orders WHERE id = 1),
          'the event carries the deadline');
SELECT is((SELECT payload->>'order_table' FROM orderexp.outbox
            WHERE order_table = 'pgtap_close.orders'::regclass AND kind = 'closed' LIMIT 1),
          'pgtap_close.orders', 'the event names the table');
SELECT bag_eq($$SELECT order_key FROM orderexp.timers WHERE order_table = 'pgtap_close.orders'::regclass$$,
              $$VALUES ('5'), ('6')$$,
              'timers of closed and paid orders are gone; extended and future ones stay');
SELECT bag_eq($$SELECT order_key FROM orderexp.pending WHERE order_table = 'pgtap_close.orders'::regclass$$,
              $$VALUES ('5'), ('6')$$, 'pending lists the unpaid tracked orders');

SELECT results_eq($$SELECT reminded, closed FROM orderexp.run_due()$$,
                  $$VALUES (0::bigint, 0::bigint)$$, 'a second run_due has nothing to do');
SELECT throws_ok($$SELECT orderexp.cancel_order('pgtap_close.orders', 1)$$, '55000',
                 'order 1 in table pgtap_close.orders is not unpaid',
                 'a closed order cannot be cancelled');
SELECT throws_ok($$SELECT orderexp.extend_order('pgtap_close.orders', 2)$$, '55000',
                 'order 2 in table pgtap_close.orders is not unpaid',
                 'a closed order cannot be extended');
SELECT throws_ok($$SELECT * FROM orderexp.run_due(0)$$, '22023', 'max_rows must be positive',
                 'run_due(0) is refused');

SELECT * FROM finish();
ROLLBACK;
