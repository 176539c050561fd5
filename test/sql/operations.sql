--
-- operations: cancel_order, cancel_orders, extend_order, the pending view,
-- and the events (with payload columns) they write.
--
CREATE SCHEMA ops;

CREATE TABLE ops.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	customer	text,
	amount		numeric(10,2)
);
SELECT orderexp.set_close_policy('ops.orders', '2 hours', remind_before => '15 minutes',
		extend_by => '30 minutes', payload_columns => '{customer,amount}',
		channels => '{email,sms}') AS ops_policy \gset

-- orders 1..8 unpaid (the higher the id, the older), 9 paid, 10 paid after it was tracked
INSERT INTO ops.orders (id, status, created_at, customer, amount)
SELECT g, 'unpaid', now() - g * interval '1 minute', 'customer ' || g, g * 10.5
  FROM generate_series(1, 8) g;
INSERT INTO ops.orders VALUES (9, 'paid', now() - interval '1 minute', 'customer 9', 94.5),
                              (10, 'unpaid', now() - interval '1 minute', 'customer 10', 105);
UPDATE ops.orders SET status = 'paid' WHERE id = 10;

--
-- pending: tracked orders still unpaid in their table, soonest deadline first
--
SELECT order_table, order_key, category, policy_id = :ops_policy AS policy_right,
       close_at - remind_at AS remind_before, extensions,
       time_left > interval '1 hour' AND time_left <= interval '2 hours' AS time_left_right
  FROM orderexp.pending WHERE order_table = 'ops.orders'::regclass;
-- the paid order's timer lingers (lazy clean-up), but pending does not list it
SELECT order_key FROM orderexp.timers
 WHERE order_table = 'ops.orders'::regclass AND order_key IN ('9', '10');
SELECT count(*) AS pending_paid FROM orderexp.pending
 WHERE order_table = 'ops.orders'::regclass AND order_key IN ('9', '10');

--
-- cancel_order
--
SELECT orderexp.cancel_order('ops.orders', 1::bigint, 'customer asked');
SELECT id, status FROM ops.orders WHERE id = 1;
SELECT count(*) AS timer_left FROM orderexp.timers
 WHERE order_table = 'ops.orders'::regclass AND order_key = '1';
SELECT count(*) AS still_pending FROM orderexp.pending
 WHERE order_table = 'ops.orders'::regclass AND order_key = '1';
-- one 'cancelled' event per channel, with the reason and the payload columns
SELECT * FROM regress.events('ops.orders');
SELECT DISTINCT payload->>'cancelled_by' = current_user AS cancelled_by_right
  FROM orderexp.outbox WHERE order_table = 'ops.orders'::regclass;
-- already cancelled: false, and no new event
SELECT orderexp.cancel_order('ops.orders', 1::bigint, 'again');
SELECT count(*) AS events FROM orderexp.outbox WHERE order_table = 'ops.orders'::regclass;

-- the key may come as another type: it is converted to the key column's type
SELECT orderexp.cancel_order('ops.orders', 2);
SELECT orderexp.cancel_order('ops.orders', '3'::text, 'typo');
SELECT id, status FROM ops.orders WHERE id IN (1, 2, 3) ORDER BY id;
SELECT * FROM regress.events('ops.orders') WHERE order_key IN ('2', '3');

--
-- cancel_orders: bulk, returns how many; paid, already cancelled, unknown
-- and duplicate keys are skipped
--
SELECT orderexp.cancel_orders('ops.orders', ARRAY[5, 9, 1, 999, 4, 5]::bigint[], 'bulk');
SELECT id, status FROM ops.orders ORDER BY id;
SELECT * FROM regress.events('ops.orders') WHERE order_key IN ('4', '5', '9', '999');
SELECT order_key FROM orderexp.timers
 WHERE order_table = 'ops.orders'::regclass AND order_key IN ('4', '5');
-- nothing to cancel
SELECT orderexp.cancel_orders('ops.orders', ARRAY[9, 999]);
SELECT orderexp.cancel_orders('ops.orders', '{}'::bigint[]);
-- text keys
SELECT orderexp.cancel_orders('ops.orders', ARRAY['7'], 'text keys');
SELECT id, status FROM ops.orders WHERE id = 7;
SELECT count(*) AS events FROM orderexp.outbox WHERE order_table = 'ops.orders'::regclass;

--
-- extend_order: explicit interval, then the policy's extend_by
--
SELECT close_at AS before_6 FROM orderexp.timers
 WHERE order_table = 'ops.orders'::regclass AND order_key = '6' \gset
SELECT orderexp.extend_order('ops.orders', 6::bigint, '1 hour') AS after_6 \gset
SELECT :'after_6'::timestamptz - :'before_6'::timestamptz AS moved_by;
SELECT close_at = :'after_6'::timestamptz AS timer_right,
       remind_at = :'after_6'::timestamptz - interval '15 minutes' AS reminder_rearmed,
       extensions
  FROM orderexp.timers WHERE order_table = 'ops.orders'::regclass AND order_key = '6';
SELECT * FROM regress.deadlines('ops.orders') WHERE order_key = '6';
-- the 'extended' event carries the new and the previous deadline
SELECT * FROM regress.events('ops.orders') WHERE kind = 'extended';
SELECT (payload->>'close_at')::timestamptz = :'after_6'::timestamptz AS close_at_right,
       (payload->>'previous_close_at')::timestamptz = :'before_6'::timestamptz AS previous_right,
       payload->>'extended_by_role' = current_user AS role_right
  FROM orderexp.outbox WHERE order_table = 'ops.orders'::regclass AND kind = 'extended';
-- without "by": the policy's extend_by (30 minutes), from the current deadline
SELECT orderexp.extend_order('ops.orders', 6::bigint) - :'after_6'::timestamptz AS moved_by;
SELECT * FROM regress.deadlines('ops.orders') WHERE order_key = '6';
SELECT order_key, extensions, close_at - remind_at AS remind_before
  FROM orderexp.pending WHERE order_table = 'ops.orders'::regclass AND order_key = '6';
SELECT order_key, channel, payload->>'extended_by' AS extended_by, payload->'extensions' AS extensions
  FROM orderexp.outbox WHERE order_table = 'ops.orders'::regclass AND kind = 'extended'
 ORDER BY id;
-- an extended order can still be cancelled
SELECT orderexp.cancel_order('ops.orders', 6::bigint, 'changed mind');
SELECT kind, count(*) FROM orderexp.outbox WHERE order_table = 'ops.orders'::regclass
 GROUP BY kind ORDER BY kind;

-- what is left pending: order 8 only, soonest first
SELECT order_key, extensions FROM orderexp.pending WHERE order_table = 'ops.orders'::regclass;

--
-- text keys, custom status words, no payload columns, default channel
--
CREATE TABLE ops.tickets (
	code	text PRIMARY KEY,
	state	text NOT NULL,
	opened	timestamptz NOT NULL
);
INSERT INTO ops.tickets VALUES ('T-1', 'open', now()), ('T-2', 'open', now()), ('T 3', 'open', now());
SELECT orderexp.set_close_policy('ops.tickets', '1 hour', status_column => 'state',
		created_column => 'opened', unpaid_value => 'open', closed_value => 'lapsed',
		cancelled_value => 'withdrawn') IS NOT NULL AS registered;
SELECT orderexp.cancel_order('ops.tickets', 'T-1'::text, 'duplicate');
SELECT orderexp.extend_order('ops.tickets', 'T-2'::text, '10 minutes') IS NOT NULL AS extended;
SELECT orderexp.cancel_orders('ops.tickets', ARRAY['T 3', 'T-4']);
SELECT code, state FROM ops.tickets ORDER BY code COLLATE "C";
SELECT * FROM regress.events('ops.tickets');
SELECT * FROM regress.deadlines('ops.tickets');

--
-- uuid keys: keys are compared in their canonical form
--
CREATE TABLE ops.carts (id uuid PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO ops.carts VALUES
	('00000000-0000-0000-0000-0000000000aa', 'unpaid', now()),
	('00000000-0000-0000-0000-0000000000bb', 'unpaid', now()),
	('00000000-0000-0000-0000-0000000000cc', 'unpaid', now());
SELECT orderexp.set_close_policy('ops.carts', '1 hour') IS NOT NULL AS registered;
SELECT orderexp.cancel_order('ops.carts', '00000000-0000-0000-0000-0000000000AA'::text);
SELECT orderexp.cancel_order('ops.carts', '00000000-0000-0000-0000-0000000000aa'::uuid);
SELECT orderexp.cancel_orders('ops.carts', ARRAY['00000000-0000-0000-0000-0000000000bb',
                                                 '00000000-0000-0000-0000-0000000000dd']::uuid[]);
SELECT orderexp.extend_order('ops.carts', '{00000000-0000-0000-0000-0000000000CC}'::text, '5 minutes') IS NOT NULL AS extended;
SELECT id, status FROM ops.carts ORDER BY id;
SELECT kind, order_key, channel FROM regress.events('ops.carts');
SELECT * FROM regress.deadlines('ops.carts');

--
-- the timer trigger's direct insert (src/timer.c): a new order whose key has
-- a timer already (a deleted order's lingers until the sweep finds the order
-- gone) gets that timer refreshed, with a new deadline and a new generation
--
CREATE TABLE ops.again (id int PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
                        created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('ops.again', '1 hour') IS NOT NULL AS registered;
INSERT INTO ops.again (id, created_at) VALUES (1, '2026-01-01 10:00+00');
SELECT generation AS gen1, close_at AS close1 FROM orderexp.timers
 WHERE order_table = 'ops.again'::regclass AND order_key = '1' \gset
DELETE FROM ops.again WHERE id = 1;
INSERT INTO ops.again (id, created_at) VALUES (1, '2026-01-01 10:15+00');
SELECT count(*) AS timers, bool_and(generation > :gen1) AS new_generation,
       bool_and(close_at - :'close1'::timestamptz = interval '15 minutes') AS new_deadline
  FROM orderexp.timers WHERE order_table = 'ops.again'::regclass AND order_key = '1';
\i test/sql/include/plan_uses.sql
-- in one transaction: a rolled-back subtransaction, and an index on
-- orderexp.timers made after the first insert (the trigger keeps the table
-- and its indexes open for the transaction: the new index must get the
-- later orders' entries all the same)
BEGIN;
INSERT INTO ops.again (id) VALUES (2);
SAVEPOINT s;
INSERT INTO ops.again (id) VALUES (3);
ROLLBACK TO SAVEPOINT s;
INSERT INTO ops.again (id) VALUES (4);
CREATE INDEX timers_in_test ON orderexp.timers (order_key) WHERE order_key IN ('4', '5');
INSERT INTO ops.again (id) VALUES (5);
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT array_agg(order_key ORDER BY order_key) AS through_new_index
  FROM orderexp.timers WHERE order_key IN ('4', '5') AND order_table = 'ops.again'::regclass;
SELECT pg_temp.plan_uses($$SELECT order_key FROM orderexp.timers WHERE order_key IN ('4', '5')
                           AND order_table = 'ops.again'::regclass$$, 'timers_in_test') AS uses_new_index;
ROLLBACK;
BEGIN;
INSERT INTO ops.again (id) VALUES (6), (7);
SAVEPOINT s;
INSERT INTO ops.again (id) VALUES (8);
ROLLBACK TO SAVEPOINT s;
INSERT INTO ops.again (id) VALUES (9);
COMMIT;
SELECT array_agg(order_key::int ORDER BY order_key::int) AS timers
  FROM orderexp.timers WHERE order_table = 'ops.again'::regclass;

-- the triggers read keys and statuses of these types without their output
-- functions (orderexp_column_text): the same text as the type's output, so
-- that the timers' keys are the ones the gates look up
CREATE TABLE ops.k_small (id integer PRIMARY KEY, status char(12) NOT NULL DEFAULT 'unpaid',
                          created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE ops.k_char (id varchar(6) PRIMARY KEY, status varchar(10) NOT NULL DEFAULT 'unpaid',
                         created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE ops.k_big (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
                        created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy(t, '1 hour') IS NOT NULL AS registered
  FROM unnest('{ops.k_small, ops.k_char, ops.k_big}'::regclass[]) t;
INSERT INTO ops.k_small (id) VALUES (-2147483648), (0), (7), (2147483647);
INSERT INTO ops.k_char (id) VALUES ('a'), ('ab c '), ('é');
INSERT INTO ops.k_big (id) VALUES (-9223372036854775808), (0), (9223372036854775807);
SELECT t.order_table, count(*) AS timers,
       bool_and(t.order_key IN (SELECT s.id::text FROM ops.k_small s
                                UNION ALL SELECT c.id::text FROM ops.k_char c
                                UNION ALL SELECT b.id::text FROM ops.k_big b)) AS keys_as_output
  FROM orderexp.timers t
 WHERE t.order_table IN ('ops.k_small'::regclass, 'ops.k_char'::regclass, 'ops.k_big'::regclass)
 GROUP BY t.order_table ORDER BY t.order_table::text;
-- a payment (a char(n) status, padded) and a cancel are recorded under those keys
UPDATE ops.k_small SET status = 'paid' WHERE id = -2147483648;
UPDATE ops.k_char SET status = 'paid' WHERE id = 'ab c ';
SELECT orderexp.cancel_order('ops.k_big', '-9223372036854775808'::text) AS cancelled;
SELECT order_table, order_key, outcome FROM orderexp.outcomes
 WHERE order_table IN ('ops.k_small'::regclass, 'ops.k_char'::regclass, 'ops.k_big'::regclass)
 ORDER BY order_table::text, order_key;

--
-- clean up
--
SET client_min_messages = warning;
DROP SCHEMA ops CASCADE;
RESET client_min_messages;
DELETE FROM orderexp.outbox;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers;
