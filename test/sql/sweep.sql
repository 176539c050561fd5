--
-- sweep: run_due() closes exactly the expired unpaid orders, writes one
-- 'closed' event per channel per closed order, cleans up timers lazily,
-- honours max_rows, and copes with deleted rows, TRUNCATE, DROP TABLE and a
-- table whose status column was dropped.
--
-- The background worker does not run in this database, so nothing closes
-- unless the test calls run_due().  Orders are made overdue by giving them a
-- created-at in the past.
--
CREATE SCHEMA swp;

CREATE TABLE swp.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL,
	amount		numeric NOT NULL,
	region		text
);
SELECT orderexp.set_close_policy('swp.orders', '1 hour', payload_columns => '{amount}',
                                 channels => '{email,webhook}', category_column => 'region') AS swp_policy \gset
INSERT INTO swp.orders VALUES
	(1, 'unpaid', now() - interval '3 hours', 10, 'north'),	-- overdue
	(2, 'unpaid', now() - interval '2 hours', 20, 'south'),	-- overdue
	(3, 'unpaid', now() - interval '90 minutes', 30, NULL),	-- overdue
	(4, 'unpaid', now() - interval '3 hours', 40, 'north'),	-- overdue, but paid below
	(5, 'unpaid', now(), 50, 'north'),						-- not due yet
	(6, 'unpaid', now() - interval '3 hours', 60, 'north'),	-- overdue, but cancelled below
	(7, 'unpaid', now() - interval '3 hours', 70, 'south'),	-- overdue, but extended below
	(8, 'unpaid', now() - interval '3 hours', 80, 'south'),	-- overdue, but deleted below
	(9, 'paid',   now() - interval '3 hours', 90, 'south');	-- paid from the start
UPDATE swp.orders SET status = 'paid' WHERE id = 4;
SELECT orderexp.cancel_order('swp.orders', 6);
SELECT orderexp.extend_order('swp.orders', 7, '3 hours') IS NOT NULL AS extended;
DELETE FROM swp.orders WHERE id = 8;

-- before: the paid and the deleted order still have their timers
SELECT * FROM regress.deadlines('swp.orders');
SELECT count(*) AS events_before FROM orderexp.outbox
 WHERE order_table = 'swp.orders'::regclass AND kind = 'closed';

SELECT * FROM orderexp.run_due();

-- exactly the overdue unpaid orders are closed
SELECT id, status FROM swp.orders ORDER BY id;
-- one 'closed' event per channel per closed order, with the payload columns
SELECT * FROM regress.events('swp.orders') WHERE kind = 'closed';
SELECT o.order_key, o.channel,
       (o.payload->>'close_at')::timestamptz = s.created_at + interval '1 hour' AS close_at_right,
       (o.payload->>'policy_id')::int = :swp_policy AS policy_right
  FROM orderexp.outbox o JOIN swp.orders s ON s.id::text = o.order_key
 WHERE o.order_table = 'swp.orders'::regclass AND o.kind = 'closed'
 ORDER BY s.id, o.channel;
-- the timers of the closed, paid and deleted orders are gone; the future
-- and the extended order keep theirs
SELECT * FROM regress.deadlines('swp.orders');
SELECT order_key FROM orderexp.pending WHERE order_table = 'swp.orders'::regclass
 ORDER BY order_key;

-- nothing is due any more
SELECT * FROM orderexp.run_due();
SELECT count(*) AS closed_events FROM orderexp.outbox
 WHERE order_table = 'swp.orders'::regclass AND kind = 'closed';

-- a closed order cannot be closed twice, even if its timer came back
INSERT INTO orderexp.timers (order_table, order_key, policy_id, close_at)
VALUES ('swp.orders', '1', :swp_policy, now() - interval '1 minute');
SELECT * FROM orderexp.run_due();
SELECT count(*) AS closed_events FROM orderexp.outbox
 WHERE order_table = 'swp.orders'::regclass AND kind = 'closed';
SELECT count(*) AS timer_left FROM orderexp.timers
 WHERE order_table = 'swp.orders'::regclass AND order_key = '1';

--
-- max_rows: the earliest deadlines first, at most max_rows orders per call
--
CREATE TABLE swp.backlog (id integer PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('swp.backlog', '1 hour') IS NOT NULL AS registered;
INSERT INTO swp.backlog
SELECT g, 'unpaid', now() - interval '2 hours' - (20 - g) * interval '1 minute'
  FROM generate_series(1, 10) g;		-- id 1 is the oldest
SELECT * FROM orderexp.run_due(3);
SELECT id FROM swp.backlog WHERE status = 'closed' ORDER BY id;
SELECT * FROM orderexp.run_due(3);
SELECT id FROM swp.backlog WHERE status = 'closed' ORDER BY id;
-- max_rows larger than what is due
SELECT * FROM orderexp.run_due(100);
SELECT status, count(*) FROM swp.backlog GROUP BY status ORDER BY status;
SELECT count(*) AS closed_events FROM orderexp.outbox
 WHERE order_table = 'swp.backlog'::regclass AND kind = 'closed';
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = 'swp.backlog'::regclass;
SELECT * FROM orderexp.run_due(1);

-- several batches in one call: more due orders than max_rows over several calls,
-- and a plain run_due() drains all
INSERT INTO swp.backlog
SELECT g, 'unpaid', now() - interval '2 hours' - g * interval '1 second'
  FROM generate_series(11, 2510) g;
SELECT * FROM orderexp.run_due(1200);
SELECT count(*) AS closed FROM swp.backlog WHERE id > 10 AND status = 'closed';
SELECT * FROM orderexp.run_due();
SELECT count(*) AS closed FROM swp.backlog WHERE id > 10 AND status = 'closed';
SELECT count(*) AS closed_events FROM orderexp.outbox
 WHERE order_table = 'swp.backlog'::regclass AND kind = 'closed';
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = 'swp.backlog'::regclass;

-- max_rows bounds the whole call, also when several tables have due orders
CREATE TABLE swp.a (id integer PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE swp.b (id integer PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('swp.a', '1 hour') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('swp.b', '1 hour') IS NOT NULL AS registered;
INSERT INTO swp.a VALUES (1, 'unpaid', now() - interval '3 hours'), (2, 'unpaid', now() - interval '3 hours');
INSERT INTO swp.b VALUES (1, 'unpaid', now() - interval '2 hours'), (2, 'unpaid', now() - interval '2 hours');
SELECT * FROM orderexp.run_due(1);
SELECT (SELECT count(*) FROM swp.a WHERE status = 'closed') +
       (SELECT count(*) FROM swp.b WHERE status = 'closed') AS closed_in_total;
SELECT * FROM orderexp.run_due();
SELECT (SELECT count(*) FROM swp.a WHERE status = 'closed') +
       (SELECT count(*) FROM swp.b WHERE status = 'closed') AS closed_in_total;

-- run_due in a transaction that rolls back closes nothing
BEGIN;
INSERT INTO swp.a VALUES (3, 'unpaid', now() - interval '3 hours');
SELECT * FROM orderexp.run_due();
ROLLBACK;
INSERT INTO swp.a VALUES (3, 'unpaid', now() - interval '3 hours');
BEGIN;
SELECT * FROM orderexp.run_due();
ROLLBACK;
SELECT id, status FROM swp.a WHERE id = 3;
SELECT count(*) AS timer FROM orderexp.timers WHERE order_table = 'swp.a'::regclass AND order_key = '3';
SELECT * FROM orderexp.run_due();

--
-- deleting rows, TRUNCATE and DROP TABLE clean up timers
--
CREATE TABLE swp.gone (id integer PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('swp.gone', '1 hour') IS NOT NULL AS registered;
INSERT INTO swp.gone VALUES (1, 'unpaid', now() - interval '3 hours'),
                            (2, 'unpaid', now()),
                            (3, 'unpaid', now());
-- a deleted order drops out of pending at once; its timer goes when it is due
DELETE FROM swp.gone WHERE id IN (1, 2);
SELECT order_key FROM orderexp.pending WHERE order_table = 'swp.gone'::regclass;
SELECT * FROM orderexp.run_due();
SELECT * FROM regress.deadlines('swp.gone');
SELECT count(*) AS events FROM orderexp.outbox WHERE order_table = 'swp.gone'::regclass;
-- TRUNCATE removes every timer of the table; new orders are tracked again
TRUNCATE swp.gone;
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = 'swp.gone'::regclass;
INSERT INTO swp.gone VALUES (4, 'unpaid', now());
SELECT * FROM regress.deadlines('swp.gone');
-- DROP TABLE forgets the registration, policies and timers
SELECT (SELECT count(*) FROM orderexp.tables WHERE order_table = 'swp.gone'::regclass) AS tables,
       (SELECT count(*) FROM orderexp.policies WHERE order_table = 'swp.gone'::regclass) AS policies,
       (SELECT count(*) FROM orderexp.timers WHERE order_table = 'swp.gone'::regclass) AS timers;
SELECT 'swp.gone'::regclass::oid AS gone_oid \gset
DROP TABLE swp.gone;
SELECT (SELECT count(*) FROM orderexp.tables WHERE order_table = :gone_oid) AS tables,
       (SELECT count(*) FROM orderexp.policies WHERE order_table = :gone_oid) AS policies,
       (SELECT count(*) FROM orderexp.timers WHERE order_table = :gone_oid) AS timers;
SELECT * FROM orderexp.run_due();

--
-- a table whose status column was dropped: run_due warns, records the error,
-- and still closes the other tables' orders
--
CREATE TABLE swp.broken (id integer PRIMARY KEY, status text, created_at timestamptz NOT NULL);
CREATE TABLE swp.healthy (id integer PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('swp.broken', '1 hour') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('swp.healthy', '1 hour') IS NOT NULL AS registered;
-- the broken table's orders are due first, so it is swept first
INSERT INTO swp.broken VALUES (1, 'unpaid', now() - interval '4 hours'), (2, 'unpaid', now() - interval '4 hours');
INSERT INTO swp.healthy VALUES (1, 'unpaid', now() - interval '3 hours'), (2, 'unpaid', now() - interval '3 hours'),
                               (3, 'unpaid', now());
-- (the triggers depend on the column, hence CASCADE; orderexp's DDL guard,
-- which refuses this, is switched off to break the table on purpose)
SET client_min_messages = warning;
ALTER EVENT TRIGGER orderexp_alter_table DISABLE;
ALTER TABLE swp.broken DROP COLUMN status CASCADE;
ALTER EVENT TRIGGER orderexp_alter_table ENABLE;
RESET client_min_messages;
SELECT * FROM orderexp.run_due();
SELECT id, status FROM swp.healthy ORDER BY id;
SELECT order_table, last_error, last_error_at IS NOT NULL AS has_error_time
  FROM orderexp.tables WHERE order_table IN ('swp.broken'::regclass, 'swp.healthy'::regclass)
 ORDER BY order_table::text;
SELECT order_table::text AS order_table, category, last_error IS NOT NULL AS has_error
  FROM orderexp.policy_config WHERE order_table IN ('swp.broken'::regclass, 'swp.healthy'::regclass)
 ORDER BY 1;
-- the broken table keeps its timers and no event is written for it
SELECT order_key, row_exists FROM regress.deadlines('swp.broken');
SELECT count(*) AS events FROM orderexp.outbox WHERE order_table = 'swp.broken'::regclass;
SELECT count(*) AS events FROM orderexp.outbox WHERE order_table = 'swp.healthy'::regclass;
-- the broken table does not hide the other tables' pending orders
SELECT order_table, order_key FROM orderexp.pending
 WHERE order_table = 'swp.healthy'::regclass;
-- the next sweep warns again and closes nothing
SELECT * FROM orderexp.run_due();
-- repaired and registered again: the error is cleared and its orders close
ALTER TABLE swp.broken ADD COLUMN status text NOT NULL DEFAULT 'unpaid';
SELECT orderexp.set_close_policy('swp.broken', '1 hour') IS NOT NULL AS registered;
SELECT order_table, last_error, last_error_at FROM orderexp.tables
 WHERE order_table = 'swp.broken'::regclass;
SELECT * FROM orderexp.run_due();
SELECT id, status FROM swp.broken ORDER BY id;

--
-- A batch plan that was invalidated between two sweeps of one session (a
-- column added to the orders table, statistics renewed) is planned again
-- before its batch runs (sweep.c, plan_ahead), and no plan is left pinned:
-- the orders due after the change close as those before it did.
--
CREATE TABLE swp.replan (
	id			integer PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL
);
SELECT orderexp.set_close_policy('swp.replan', '1 hour') IS NOT NULL AS registered;
INSERT INTO swp.replan VALUES (1, 'unpaid', now() - interval '2 hours');
SELECT * FROM orderexp.run_due();
ALTER TABLE swp.replan ADD COLUMN note text;
ANALYZE swp.replan, orderexp.timers;
INSERT INTO swp.replan VALUES (2, 'unpaid', now() - interval '2 hours', 'after the change');
SELECT * FROM orderexp.run_due();
SELECT id, status, note FROM swp.replan ORDER BY id;
SELECT count(*) AS closed_events FROM orderexp.outbox
 WHERE order_table = 'swp.replan'::regclass AND kind = 'closed';

--
-- the closed event's payload (orderexp._closed_payload, written in jsonb's
-- binary form directly): the same jsonb as jsonb_build_object() makes, byte
-- for byte (the same size, equal, the same hash, every key found), with
-- NULLs, numbers that need alignment inside the columns, long and
-- multi-byte text, nested values, and the columns as an array, a scalar
-- (the general path) or NULL
--
CREATE TEMP TABLE payload_cases (n int, tbl text, k text, at timestamptz, pol int, cat text, cols jsonb);
INSERT INTO payload_cases VALUES
	(1, 'swp.orders', '42', '2026-12-04 10:00:00.123456+00', 7, 'books', '{"customer": "a@example.com"}'),
	(2, 'swp.orders', '42', '2026-12-04 10:00:00+00', 7, NULL, '{"amount": 19.99, "n": 1, "x": "é€"}'),
	(3, NULL, NULL, NULL, NULL, NULL, NULL),
	(4, 'a', 'b', 'infinity', 2147483647, repeat('c', 3000), '{"deep": {"a": [1, 2.5, null, true, {"b": "c"}]}, "e": ""}'),
	(5, 'swp."Odd Table"', repeat('k', 70), '1999-12-31 23:59:59.999999+00', -1, '', '[1, "two", 3.0]'),
	(6, 'swp.orders', '1', '2026-01-01 00:00+00', 0, 'x', '"just a string"'),
	(7, 'swp.orders', '1', '2026-01-01 00:00+00', 3, 'x', '{}'),
	(8, 'swp.orders', 'ü', '2026-01-01 00:00+00', 12345, 'x', '{"a": 1}');
SELECT c.n,
	   pg_column_size(p.fast) = pg_column_size(p.ref) AS same_size,
	   p.fast = p.ref AS equal,
	   jsonb_hash(p.fast) = jsonb_hash(p.ref) AS same_hash,
	   p.fast::text = p.ref::text AS same_text,
	   (SELECT bool_and(p.fast -> key IS NOT DISTINCT FROM p.ref -> key)
		  FROM jsonb_object_keys(p.ref) key) AS every_key,
	   p.fast @> p.ref AND p.ref @> p.fast AS contains
  FROM payload_cases c
 CROSS JOIN LATERAL (
		SELECT orderexp._closed_payload(c.tbl, c.k, c.at, c.pol, c.cat, c.cols) AS fast,
			   jsonb_build_object('order_table', c.tbl, 'order_key', c.k, 'close_at', c.at,
								  'policy_id', c.pol, 'category', c.cat, 'reason', 'timeout',
								  'order', c.cols) AS ref) p
 ORDER BY c.n;
-- stored and read back through an index on the payload
CREATE TEMP TABLE payload_stored AS
SELECT c.n, orderexp._closed_payload(c.tbl, c.k, c.at, c.pol, c.cat, c.cols) AS p FROM payload_cases c;
CREATE INDEX ON payload_stored USING gin (p);
SET enable_seqscan = off;
SELECT n FROM payload_stored WHERE p @> '{"reason": "timeout", "policy_id": 7}' ORDER BY n;
SELECT n FROM payload_stored WHERE p ? 'order_key' AND p -> 'order' ? 'amount' ORDER BY n;
RESET enable_seqscan;

--
-- clean up
--
SET client_min_messages = warning;
DROP SCHEMA swp CASCADE;
RESET client_min_messages;
DELETE FROM orderexp.outbox;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers;
