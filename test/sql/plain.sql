--
-- plain deadlines (set_plain_deadlines): orders due at created-at plus
-- close_after need no timer row; the sweep finds them through the table's
-- partial index, and whatever changes one writes its timer row first.
--
-- errors with their details and hints, without the lines of orderexp's code
\set SHOW_CONTEXT never
CREATE SCHEMA plain;
CREATE TABLE plain.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz DEFAULT now(),
	email		text,
	kind		text
);
SELECT orderexp.set_close_policy('plain.orders', '1 hour', extend_by => '30 minutes',
		max_extensions => 2, payload_columns => '{email}', channels => '{email,sms}')
	AS pol \gset

-- refused: no index to find due orders by (the hint says which)
SELECT orderexp.set_plain_deadlines('plain.orders');
-- an index that does not serve: not partial on the unpaid status
CREATE INDEX orders_created ON plain.orders (created_at);
SELECT orderexp.set_plain_deadlines('plain.orders');
CREATE INDEX orders_unpaid_due ON plain.orders (created_at) WHERE status = 'unpaid';
SELECT orderexp._plain_index(t) FROM orderexp.tables t WHERE t.order_table = 'plain.orders'::regclass;

-- refused: reminders, a category policy, an experiment; NULL; not registered
SELECT orderexp.set_close_policy('plain.orders', '1 hour', remind_before => '10 minutes',
		extend_by => '30 minutes', max_extensions => 2) = :pol AS same_policy;
SELECT orderexp.set_plain_deadlines('plain.orders');
SELECT orderexp.set_close_policy('plain.orders', '1 hour', extend_by => '30 minutes',
		max_extensions => 2) = :pol AS same_policy;
SELECT orderexp.set_plain_deadlines('plain.orders', NULL);
CREATE TABLE plain.other (id bigint PRIMARY KEY, status text, created_at timestamptz);
SELECT orderexp.set_plain_deadlines('plain.other');

SELECT orderexp.set_plain_deadlines('plain.orders');
-- again: a no-op that keeps the moment plain deadlines began
SELECT plain_since AS since FROM orderexp.policies WHERE id = :pol \gset
SELECT orderexp.set_plain_deadlines('plain.orders'),
       (SELECT plain_since = :'since' FROM orderexp.policies WHERE id = :pol) AS kept;

-- now these are refused, and nothing changes: reminders, an experiment,
-- a category policy
SELECT version AS v0 FROM orderexp.policies WHERE id = :pol \gset
SELECT orderexp.set_close_policy('plain.orders', '1 hour', remind_before => '10 minutes',
		extend_by => '30 minutes', max_extensions => 2);
SELECT orderexp.start_experiment('plain.orders', '{30 minutes,1 hour}');
SELECT orderexp.set_close_policy('plain.orders', '2 hours', category => 'books',
		category_column => 'kind');
ALTER TABLE plain.orders ADD COLUMN placed_at timestamptz;
SELECT orderexp.set_close_policy('plain.orders', '1 hour', extend_by => '30 minutes',
		max_extensions => 2, created_column => 'placed_at');
ALTER TABLE plain.orders DROP COLUMN placed_at;
SELECT version = :v0 AS same_version, remind_before, experiment_id, plain_since IS NOT NULL AS plain
  FROM orderexp.policies WHERE id = :pol;
SELECT count(*) AS policies FROM orderexp.policies WHERE order_table = 'plain.orders'::regclass;

--
-- new orders get no timer row, nor does one created before plain deadlines
-- began (an import: its plain deadline is due already); one without a
-- created-at gets one from the insert's time.  The created-at column may
-- be NULL, so the table keeps its timer trigger on INSERT.
--
SELECT string_agg(tgname, ', ' ORDER BY tgname) AS triggers FROM pg_trigger
 WHERE tgrelid = 'plain.orders'::regclass AND NOT tgisinternal;
INSERT INTO plain.orders (id, email) SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 20) g;
INSERT INTO plain.orders (id, created_at, email) VALUES (21, now() - interval '1 day', 'old@example.com'),
                                                       (22, NULL, 'none@example.com');
SELECT order_key, close_at - (SELECT created_at FROM plain.orders WHERE id = 21) AS after
  FROM orderexp.timers WHERE order_table = 'plain.orders'::regclass ORDER BY order_key;

-- what the monitoring and pending views show counts the plain orders
SELECT pending, overdue FROM orderexp.monitor_backlog WHERE order_table = 'plain.orders';
-- a member of pg_monitor, who cannot read the orders table, sees the counts
CREATE ROLE plain_monitor IN ROLE pg_monitor;
SET ROLE plain_monitor;
SELECT pending, overdue FROM orderexp.monitor_backlog WHERE order_table = 'plain.orders';
SELECT count(*) FROM plain.orders;
RESET ROLE;
DROP ROLE plain_monitor;
SELECT count(*) AS pending, count(*) FILTER (WHERE close_at = o.created_at + interval '1 hour') AS plain_deadline
  FROM orderexp.pending p JOIN plain.orders o ON o.id::text = p.order_key
 WHERE p.order_table = 'plain.orders'::regclass;

-- a token made while the order has no timer row works after the row is written
SELECT orderexp.extension_token('plain.orders', 2::bigint) AS token2 \gset
SELECT count(*) AS timers FROM orderexp.timers
 WHERE order_table = 'plain.orders'::regclass AND order_key = '2';
SELECT orderexp.extend_order('plain.orders', 3::bigint, '2 hours') > now() AS extended3;
SELECT orderexp.extend_order_by_token(:'token2') > now() AS extended2_by_token;
SELECT orderexp.extend_order_by_token(:'token2');
SELECT order_key, generation < 0 AS plain_generation, extensions, token_extensions,
       close_at - (SELECT created_at FROM plain.orders o WHERE o.id::text = t.order_key) AS after
  FROM orderexp.timers t
 WHERE order_table = 'plain.orders'::regclass AND order_key IN ('2', '3') ORDER BY 1;

--
-- For the rest, plain deadlines are taken to have begun two days ago, and
-- orders are placed in the past, so that they are due now (a test's
-- shortcut: a table's orders are never older than its plain deadlines).
--
UPDATE orderexp.policies SET plain_since = now() - interval '2 days' WHERE id = :pol;
UPDATE plain.orders SET created_at = now() - interval '70 minutes' + id * interval '1 second'
 WHERE id <= 20;

-- cancel, a payment, a record_feedback on an order without a timer row
SELECT orderexp.cancel_order('plain.orders', 4::bigint, 'customer asked');
UPDATE plain.orders SET status = 'paid' WHERE id = 5;
SELECT outcome, status, policy_id = :pol AS policy, policy_version, variant,
       close_at = (SELECT created_at FROM plain.orders WHERE id = 5) + interval '1 hour' AS deadline,
       reminded, extensions, reopened, order_count
  FROM orderexp.outcomes WHERE order_table = 'plain.orders'::regclass AND order_key = '5';
INSERT INTO plain.orders (id, email) VALUES (23, 'x@example.com'), (24, 'y@example.com');
SELECT orderexp.cancel_orders('plain.orders', ARRAY[23, 24]::bigint[], 'duplicates');
SELECT h.action, h.policy_id = :pol AS policy, h.policy_version = :v0 AS version,
       h.deadline = o.created_at + interval '1 hour' AS deadline
  FROM plain.orders o, orderexp.history('plain.orders', o.id) h
 WHERE o.id IN (23, 24) ORDER BY o.id;
SELECT orderexp.record_feedback('plain.orders', 6::bigint, 'complaint', 'too short') > 0 AS fed;
SELECT policy_id = :pol AS policy, policy_version FROM orderexp.feedback
 WHERE order_table = 'plain.orders'::regclass AND order_key = '6';

--
-- the sweep closes the due plain orders, leaves the extended ones and
-- those not due yet, and records them as a timer close would
--
SELECT count(*) FILTER (WHERE status = 'unpaid') AS unpaid_before FROM plain.orders;
SELECT * FROM orderexp.run_due();
SELECT id, status FROM plain.orders WHERE status <> 'closed' ORDER BY id;
SELECT count(*) AS closed_events, count(DISTINCT order_key) AS orders,
       count(*) FILTER (WHERE via = 'timeout' AND policy_id = :pol AND policy_version = :v0
						AND event_ids IS NOT NULL) AS records,
       count(*) FILTER (WHERE (payload ->> 'close_at')::timestamptz
							  = (SELECT created_at FROM plain.orders o WHERE o.id::text = x.order_key)
								+ interval '1 hour') AS right_deadline,
       count(*) FILTER (WHERE payload -> 'order' ->> 'email' LIKE 'c%@example.com') AS with_payload
  FROM orderexp.outbox x
 WHERE order_table = 'plain.orders'::regclass AND kind = 'closed';
SELECT outcome, sum(order_count) AS orders, policy_version
  FROM orderexp.outcomes WHERE order_table = 'plain.orders'::regclass
 GROUP BY outcome, policy_version ORDER BY outcome;
-- nothing more is due: a second sweep closes nothing
SELECT * FROM orderexp.run_due();
SELECT action, via, deadline = (SELECT created_at FROM plain.orders WHERE id = 7) + interval '1 hour' AS deadline
  FROM orderexp.history('plain.orders', 7::bigint);
SELECT orderexp.explain_order('plain.orders', 7::bigint) LIKE '%had 1 hour to be paid%' AS explained;

--
-- reopen: a timer row of its own, with a generation drawn anew
--
SELECT orderexp.reopen_order('plain.orders', 7::bigint, '1 hour') > now() AS reopened;
SELECT generation > 0 AS fresh_generation, reopened FROM orderexp.timers
 WHERE order_table = 'plain.orders'::regclass AND order_key = '7';

-- an order the application sets back to unpaid has its plain deadline again: due
UPDATE plain.orders SET status = 'unpaid' WHERE id = 8;
SELECT count(*) AS timers8 FROM orderexp.timers WHERE order_table = 'plain.orders'::regclass AND order_key = '8';
SELECT * FROM orderexp.run_due();
SELECT status FROM plain.orders WHERE id = 8;

-- a key used again: the new order refreshes the lingering timer row of the
-- old one (paid while extended), instead of having a plain deadline
UPDATE plain.orders SET status = 'paid' WHERE id = 3;
DELETE FROM plain.orders WHERE id = 3;
INSERT INTO plain.orders (id, email) VALUES (3, 'again@example.com');
SELECT close_at - (SELECT created_at FROM plain.orders WHERE id = 3) AS after, extensions,
       generation > 0 AS fresh_generation
  FROM orderexp.timers WHERE order_table = 'plain.orders'::regclass AND order_key = '3';

-- the same with orderexp.timers empty, its primary key a b-tree without a
-- root (a new order's probe is skipped then, timer.c): a new order gets no
-- row; a row written since is found, and a new order of its key refreshes
-- it, also when the index's cached metapage is gone (the ALTER INDEX)
BEGIN;
DELETE FROM orderexp.timers;
REINDEX INDEX orderexp.timers_pkey;
INSERT INTO plain.orders (id, email) VALUES (40, 'empty@example.com');
INSERT INTO orderexp.timers (order_table, order_key, policy_id, close_at)
VALUES ('plain.orders', '41', :pol, now() - interval '1 day');
ALTER INDEX orderexp.timers_pkey SET (fillfactor = 90);
INSERT INTO plain.orders (id, email) VALUES (41, 'stale@example.com');
SELECT order_key, close_at - (SELECT created_at FROM plain.orders o WHERE o.id::text = t.order_key) AS after
  FROM orderexp.timers t WHERE order_table = 'plain.orders'::regclass ORDER BY 1;
ROLLBACK;
SELECT count(*) > 0 AS timers_back FROM orderexp.timers;

--
-- a change of the policy that leaves deadlines alone writes the plain
-- orders' timer rows first; with reschedule they follow the new one
--
INSERT INTO plain.orders (id, created_at, email) VALUES (30, now() - interval '10 minutes', 'a@example.com'),
                                                       (31, now() - interval '20 minutes', 'b@example.com');
SELECT count(*) AS timers_30_31 FROM orderexp.timers
 WHERE order_table = 'plain.orders'::regclass AND order_key IN ('30', '31');
SELECT orderexp.set_close_policy('plain.orders', '3 hours', extend_by => '30 minutes',
		max_extensions => 2, reschedule => true) = :pol AS rescheduled;
SELECT count(*) AS timers_30_31 FROM orderexp.timers
 WHERE order_table = 'plain.orders'::regclass AND order_key IN ('30', '31');
SELECT orderexp.set_close_policy('plain.orders', '4 hours', extend_by => '30 minutes',
		max_extensions => 2) = :pol AS changed;
SELECT order_key, close_at - (SELECT created_at FROM plain.orders o WHERE o.id::text = t.order_key) AS after,
       policy_version
  FROM orderexp.timers t
 WHERE order_table = 'plain.orders'::regclass AND order_key IN ('30', '31') ORDER BY 1;
INSERT INTO plain.orders (id, created_at, email) VALUES (32, now() - interval '3 hours 50 minutes', 'c@example.com');
SELECT * FROM orderexp.run_due();
SELECT id, status FROM plain.orders WHERE id IN (30, 31, 32) ORDER BY id;
SELECT p.order_key, p.close_at - o.created_at AS after
  FROM orderexp.pending p JOIN plain.orders o ON o.id::text = p.order_key
 WHERE p.order_table = 'plain.orders'::regclass AND p.order_key = '32';

-- the index the sweep finds due orders by stays while plain deadlines are on
DROP INDEX plain.orders_unpaid_due;
CREATE INDEX orders_unpaid_due2 ON plain.orders (created_at) WHERE status = 'unpaid';
DROP INDEX plain.orders_unpaid_due;
DROP INDEX plain.orders_created;
-- a table with plain deadlines can be dropped, its index with it
CREATE TABLE plain.gone (id int PRIMARY KEY, status text DEFAULT 'unpaid', created_at timestamptz DEFAULT now());
CREATE INDEX ON plain.gone (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('plain.gone', '1 hour') > 0 AS registered,
       orderexp.set_plain_deadlines('plain.gone');
DROP TABLE plain.gone;
SELECT count(*) AS gone FROM orderexp.tables WHERE order_table::text = 'plain.gone';
-- a varchar status column: PostgreSQL prints the index's predicate with
-- casts, ((status)::text = 'unpaid'::text); the index is found, and the
-- sweep closes through it
CREATE TABLE plain.vc (id int PRIMARY KEY, status varchar(20) NOT NULL DEFAULT 'unpaid',
					   created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX vc_unpaid ON plain.vc (created_at) WHERE status = 'unpaid';
SELECT pg_get_expr(indpred, indrelid) AS predicate FROM pg_index WHERE indexrelid = 'plain.vc_unpaid'::regclass;
SELECT orderexp.set_close_policy('plain.vc', '1 hour') > 0 AS registered,
       orderexp.set_plain_deadlines('plain.vc');
INSERT INTO plain.vc (id, created_at) VALUES (1, now() - interval '2 hours'), (2, now());
SELECT * FROM orderexp.run_due();
SELECT id, status FROM plain.vc ORDER BY id;
DROP TABLE plain.vc;
-- a status domain with a CHECK: the take compares the status as the domain's
-- base type, as the index's predicate does, and so can use the index (a
-- constant cast to the domain would be checked for every row, and the take
-- would read the whole table)
CREATE DOMAIN plain.order_status AS text CHECK (VALUE IN ('unpaid', 'paid', 'closed', 'cancelled'));
CREATE TABLE plain.dom (id int PRIMARY KEY, status plain.order_status NOT NULL DEFAULT 'unpaid',
						created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX dom_unpaid ON plain.dom (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('plain.dom', '1 hour') > 0 AS registered,
       orderexp.set_plain_deadlines('plain.dom');
SELECT format('PREPARE dom_take(integer, text, text) AS %s', (orderexp._plain_batch_sql(t))[1]) AS q
  FROM orderexp.tables t WHERE t.order_table = 'plain.dom'::regclass \gset
:q ;
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
CREATE FUNCTION pg_temp.dom_take_plan() RETURNS SETOF text LANGUAGE plpgsql AS
$$ BEGIN RETURN QUERY EXPLAIN (COSTS OFF) EXECUTE dom_take(10, '-infinity', ''); END $$;
SELECT count(*) FILTER (WHERE l ~ 'Index Scan using dom_unpaid') AS by_partial_index,
       count(*) FILTER (WHERE l ~ 'Seq Scan') AS seq_scans
  FROM pg_temp.dom_take_plan() AS l;
ROLLBACK;
DEALLOCATE dom_take;
INSERT INTO plain.dom (id, created_at) VALUES (1, now() - interval '2 hours'), (2, now());
SELECT * FROM orderexp.run_due();
SELECT id, status FROM plain.dom ORDER BY id;
DROP TABLE plain.dom;
DROP DOMAIN plain.order_status;
-- a table partitioned by another column than created-at: the take gives no
-- tuple id for a partition's row, and the orders statement locks and closes
-- those rows by key
CREATE TABLE plain.parted (id bigint, region int, status text NOT NULL DEFAULT 'unpaid',
						   created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id, region))
	PARTITION BY LIST (region);
CREATE TABLE plain.parted_1 PARTITION OF plain.parted FOR VALUES IN (1);
CREATE TABLE plain.parted_2 PARTITION OF plain.parted FOR VALUES IN (2);
CREATE INDEX ON plain.parted (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('plain.parted', '1 hour', key_column => 'id') > 0 AS registered,
       orderexp.set_plain_deadlines('plain.parted');
INSERT INTO plain.parted (id, region, created_at)
VALUES (1, 1, now() - interval '2 hours'), (2, 2, now() - interval '2 hours'), (3, 1, now());
SELECT * FROM orderexp.run_due();
SELECT tableoid::regclass, id, status FROM plain.parted ORDER BY id;
SELECT count(*) AS closed_events FROM orderexp.outbox
 WHERE order_table = 'plain.parted'::regclass AND kind = 'closed';
-- its created-at is NOT NULL: a trigger on DELETE, none on INSERT.  An
-- order with a timer row of its own moved to another partition (a delete
-- from one and an insert into the other) keeps the row; deleted, it does not
SELECT string_agg(tgname, ', ' ORDER BY tgname) AS triggers FROM pg_trigger
 WHERE tgrelid = 'plain.parted'::regclass AND NOT tgisinternal;
SELECT orderexp.extend_order('plain.parted', 3::bigint, '30 minutes') > now() AS extended3;
UPDATE plain.parted SET region = 2 WHERE id = 3;
SELECT tableoid::regclass, id, status FROM plain.parted WHERE id = 3;
SELECT close_at - (SELECT created_at FROM plain.parted WHERE id = 3) AS after3
  FROM orderexp.timers WHERE order_table = 'plain.parted'::regclass AND order_key = '3';
DELETE FROM plain.parted WHERE id = 3;
SELECT count(*) AS timer3 FROM orderexp.timers
 WHERE order_table = 'plain.parted'::regclass AND order_key = '3';
DROP TABLE plain.parted;
-- payload columns all text or varchar: the close's payload is made with
-- jsonb_object() (the same jsonb, a NULL a JSON null); a payload column
-- changed to a number is a number in the next close's payload, in the same
-- session (the statements follow the table's pg_class row)
CREATE TABLE plain.pay (id int PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
						created_at timestamptz NOT NULL DEFAULT now(), note text, ref varchar(10));
CREATE INDEX ON plain.pay (created_at) WHERE status = 'unpaid';
SELECT orderexp.set_close_policy('plain.pay', '1 hour', payload_columns => '{note,ref}') > 0 AS registered,
       orderexp.set_plain_deadlines('plain.pay');
SELECT orderexp._plain_payload_expr(t) FROM orderexp.tables t WHERE t.order_table = 'plain.pay'::regclass;
INSERT INTO plain.pay (id, created_at, note) VALUES (1, now() - interval '2 hours', '5');
SELECT * FROM orderexp.run_due();
ALTER TABLE plain.pay ALTER COLUMN note TYPE integer USING note::integer;
SELECT orderexp._plain_payload_expr(t) FROM orderexp.tables t WHERE t.order_table = 'plain.pay'::regclass;
INSERT INTO plain.pay (id, created_at, note, ref) VALUES (2, now() - interval '2 hours', 6, 'r');
SELECT * FROM orderexp.run_due();
SELECT order_key, payload->'order' AS order_columns FROM orderexp.outbox
 WHERE order_table = 'plain.pay'::regclass AND kind = 'closed' AND via IS NOT NULL ORDER BY order_key;
DROP TABLE plain.pay;
--
-- a created-at that is NOT NULL: no timer trigger on INSERT, since every
-- new order has its plain deadline, and one on DELETE, which drops the
-- timer row a deleted order leaves; the triggers follow plain deadlines
-- and the column's NOT NULL
--
CREATE TABLE plain.strict (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
						   created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON plain.strict (created_at) WHERE status = 'unpaid';
CREATE FUNCTION plain.triggers() RETURNS text LANGUAGE sql AS
$$ SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger
    WHERE tgrelid = 'plain.strict'::regclass AND NOT tgisinternal $$;
SELECT orderexp.set_close_policy('plain.strict', '1 hour', extend_by => '30 minutes',
		max_extensions => 2) > 0 AS registered, plain.triggers();
SELECT orderexp.set_plain_deadlines('plain.strict'), plain.triggers();
-- new orders, and an old one (an import), get no timer row; the old one is
-- due, and closed
INSERT INTO plain.strict (id, created_at)
VALUES (1, now()), (2, now() - interval '2 hours'), (3, now()), (4, now());
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = 'plain.strict'::regclass;
SELECT * FROM orderexp.run_due();
SELECT id, status FROM plain.strict ORDER BY id;
-- a key used again: the row of an order paid while extended goes with the
-- order, and the new order of its key has its plain deadline, due here
SELECT orderexp.extend_order('plain.strict', 3::bigint, '30 minutes') > now() AS extended3;
UPDATE plain.strict SET status = 'paid' WHERE id = 3;
SELECT count(*) AS lingering3 FROM orderexp.timers
 WHERE order_table = 'plain.strict'::regclass AND order_key = '3';
DELETE FROM plain.strict WHERE id = 3;
SELECT count(*) AS timer3 FROM orderexp.timers
 WHERE order_table = 'plain.strict'::regclass AND order_key = '3';
INSERT INTO plain.strict (id, created_at) VALUES (3, now() - interval '2 hours');
SELECT * FROM orderexp.run_due();
SELECT status FROM plain.strict WHERE id = 3;
-- a delete by a role that may delete orders and nothing of orderexp's
-- drops the row too; a delete rolled back keeps it
SELECT orderexp.extend_order('plain.strict', 4::bigint, '30 minutes') > now() AS extended4;
CREATE ROLE plain_clerk;
GRANT USAGE ON SCHEMA plain TO plain_clerk;
GRANT SELECT, DELETE ON plain.strict TO plain_clerk;
BEGIN;
SET LOCAL ROLE plain_clerk;
DELETE FROM plain.strict WHERE id = 4;
RESET ROLE;
SELECT count(*) AS timer4 FROM orderexp.timers
 WHERE order_table = 'plain.strict'::regclass AND order_key = '4';
ROLLBACK;
SELECT count(*) AS timer4 FROM orderexp.timers
 WHERE order_table = 'plain.strict'::regclass AND order_key = '4';
REVOKE ALL ON plain.strict FROM plain_clerk;
REVOKE USAGE ON SCHEMA plain FROM plain_clerk;
DROP ROLE plain_clerk;
-- DROP NOT NULL puts the trigger on INSERT back, and an order without a
-- created-at gets its timer row; SET NOT NULL takes it away again
ALTER TABLE plain.strict ALTER COLUMN created_at DROP NOT NULL;
SELECT plain.triggers();
INSERT INTO plain.strict (id, created_at) VALUES (5, NULL);
SELECT count(*) AS timer5 FROM orderexp.timers
 WHERE order_table = 'plain.strict'::regclass AND order_key = '5';
DELETE FROM plain.strict WHERE id = 5;
ALTER TABLE plain.strict ALTER COLUMN created_at SET NOT NULL;
SELECT plain.triggers();
-- the trigger function checks how it is called
CREATE TRIGGER wrong BEFORE DELETE ON plain.strict
	FOR EACH ROW EXECUTE FUNCTION orderexp.delete_trigger();
DELETE FROM plain.strict WHERE id = 1;
DROP TRIGGER wrong ON plain.strict;
CREATE TRIGGER wrong AFTER DELETE ON plain.strict
	FOR EACH ROW EXECUTE FUNCTION orderexp.delete_trigger('id');
DELETE FROM plain.strict WHERE id = 1;
DROP TRIGGER wrong ON plain.strict;
-- and reads the key column from the table's registration: on a table that
-- is not registered it refuses, and the row stays
CREATE TABLE plain.unregistered (id integer);
INSERT INTO plain.unregistered VALUES (1);
CREATE TRIGGER orderexp_timer_delete AFTER DELETE ON plain.unregistered
	FOR EACH ROW EXECUTE FUNCTION orderexp.delete_trigger();
DELETE FROM plain.unregistered WHERE id = 1;
SELECT count(*) AS order1 FROM plain.unregistered WHERE id = 1;
DROP TABLE plain.unregistered;
-- turning plain deadlines off puts it back, with the rows of the unpaid orders
SELECT orderexp.set_plain_deadlines('plain.strict', false), plain.triggers();
SELECT count(*) AS unpaid, count(t.order_key) AS with_timer
  FROM plain.strict o
  LEFT JOIN orderexp.timers t ON t.order_table = 'plain.strict'::regclass AND t.order_key = o.id::text
 WHERE o.status = 'unpaid';
DROP TABLE plain.strict;
DROP FUNCTION plain.triggers();

--
-- the take statement (src/batch.c) turns its watermark, a text parameter,
-- into a created-at once, in an init plan, and not again for every row the
-- partial index gives (a cast of $2 in the filter)
--
CREATE FUNCTION pg_temp.prepare_plain(stmt name, args text, n integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE (SELECT format('PREPARE %I(%s) AS %s', stmt, args, (orderexp._plain_batch_sql(t))[n])
			   FROM orderexp.tables t WHERE t.order_table = 'plain.orders'::regclass);
	RETURN true;
END
$$;
SELECT pg_temp.prepare_plain('plain_take', 'integer, text, text', 1) AS prepared;
CREATE FUNCTION pg_temp.plan_lines(q text) RETURNS SETOF text LANGUAGE plpgsql AS
$$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q; END $$;
SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FILTER (WHERE l ~ 'Index Scan using orders_unpaid_due2') AS by_partial_index,
       count(*) FILTER (WHERE l ~ 'InitPlan') AS init_plans,
       count(*) FILTER (WHERE l ~ 'Filter: .*\(\$2\)::') AS casts_per_row
  FROM pg_temp.plan_lines($$EXECUTE plain_take(10, '-infinity', '')$$) AS l;
RESET enable_bitmapscan;
RESET enable_seqscan;
RESET plan_cache_mode;
DEALLOCATE plain_take;
-- the own statement: the keys and tuple ids as they came when no key has a
-- timer row, else without those that have one (an order with a deadline of
-- its own), still aligned
SELECT pg_temp.prepare_plain('plain_own', 'text[], tid[]', 3) AS prepared;
SELECT min(order_key) AS timed FROM orderexp.timers WHERE order_table = 'plain.orders'::regclass \gset
SELECT :'timed' IS NOT NULL AS some_order_has_a_timer;
EXECUTE plain_own('{n2,n1}', '{"(0,2)","(0,1)"}');
EXECUTE plain_own(ARRAY['n1', :'timed', 'n3'], '{"(0,1)","(0,2)",NULL}');
EXECUTE plain_own(ARRAY[:'timed'], '{"(0,2)"}');
DEALLOCATE plain_own;

--
-- the orders statement (_plain_orders_sql): the rows of the table itself
-- are locked at the tuple id the take read them at, with their key
-- checked; one updated since the take is busy, not closed; the rows of an
-- inheritance child go by key.  In a transaction rolled back, so that the
-- orders stay unpaid.  plain_close gives the busy keys and the closed ones.
--
SELECT pg_temp.prepare_plain('plain_orders', 'text[], tid[]', 4) AS prepared;
CREATE FUNCTION pg_temp.plain_close(keys text[], tids tid[], OUT busy text[], OUT closed text[])
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	EXECUTE format('EXECUTE plain_orders(%L, %L)', keys, tids) INTO r;
	busy := r."array";
	closed := r.keys;
END
$$;
-- the check of each row locked by tuple id: is (tuple id, key) one of the
-- take's pairs?  (NULL tuple ids, the rows of children, are no pairs; the
-- pairs come in any order)
SELECT orderexp._tid_holds_key('(3,7)', 'z', '{"(5,1)","(0,2)",NULL,"(3,7)"}', '{x,y,w,z}') AS pair,
       orderexp._tid_holds_key('(3,7)', 'x', '{"(5,1)","(0,2)",NULL,"(3,7)"}', '{x,y,w,z}') AS other_key,
       orderexp._tid_holds_key('(0,9)', 'w', '{"(5,1)","(0,2)",NULL,"(3,7)"}', '{x,y,w,z}') AS no_such_tid,
       orderexp._tid_holds_key('(0,2)', 'y', '{}', '{}') AS no_pairs;
-- arrays that do not pair up: 2202E
SELECT orderexp._tid_holds_key('(0,1)', 'a', '{"(0,1)"}', '{a,b}');
BEGIN;
SELECT ctid AS tid2 FROM plain.orders WHERE id = 2 \gset
SELECT ctid AS tid22 FROM plain.orders WHERE id = 22 \gset
-- another row's tuple id (a place the take's row left and another row
-- took): neither row is locked, key 2 is busy, order 22 is left alone
SELECT * FROM pg_temp.plain_close('{2}', ARRAY[:'tid22']::tid[]);
-- the row updated since the take: no longer at its tuple id, busy
UPDATE plain.orders SET email = email WHERE id = 2;
SELECT * FROM pg_temp.plain_close('{2}', ARRAY[:'tid2']::tid[]);
SELECT id, status FROM plain.orders WHERE id IN (2, 22) ORDER BY id;
-- at its tuple id now: closed
SELECT ctid AS tid2 FROM plain.orders WHERE id = 2 \gset
SELECT * FROM pg_temp.plain_close('{2}', ARRAY[:'tid2']::tid[]);
-- a row of an inheritance child: no tuple id, by key
CREATE TABLE plain.orders_more () INHERITS (plain.orders);
INSERT INTO plain.orders_more (id, email) VALUES (60, 'more@example.com');
SELECT * FROM pg_temp.plain_close('{60,22}', ARRAY[NULL, :'tid22']::tid[]);
SELECT tableoid::regclass, id, status FROM plain.orders WHERE id IN (2, 22, 60) ORDER BY id;
-- the plan it is made for, once the planner knows the table is not small:
-- one tuple-id scan that locks, its rows checked by _tid_holds_key() (not a
-- nested loop that begins a tuple-id scan again for every key: each
-- beginning asks the kernel for the table's size), and an update by tuple
-- id (planned anew with these settings, which would favour a nested loop);
-- the locks and the update by key begin only when a key came without a
-- tuple id (a one-time filter on each of their scans, the parent's and the
-- inheritance child's, checked before it begins)
DEALLOCATE plain_orders;
SELECT pg_temp.prepare_plain('plain_orders', 'text[], tid[]', 4) AS prepared;
SET LOCAL plan_cache_mode = force_generic_plan;
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;
SET LOCAL enable_seqscan = off;
SELECT count(*) FILTER (WHERE l ~ 'TID Cond: \(.*ctid = ANY') AS tid_scans,
       count(*) FILTER (WHERE l ~ 'Filter: orderexp\._tid_holds_key\(') AS checked_by_pairs,
       count(*) FILTER (WHERE l ~ 'Nested Loop|TID Cond: \(.*ctid = [^A]') AS per_key_scans,
       count(*) FILTER (WHERE l ~ 'One-Time Filter: \(array_position\(\$2, NULL::tid\) IS NOT NULL\)') AS by_key_only_for_keys_without_tid
  FROM pg_temp.plan_lines(format('EXECUTE plain_orders(%L, %L)', '{2}', ARRAY[:'tid2'])) AS l;
ROLLBACK;
DEALLOCATE plain_orders;

--
-- the end of plain deadlines writes every plain order's timer row
--
INSERT INTO plain.orders (id, email) SELECT g, 'd' || g || '@example.com' FROM generate_series(40, 44) g;
SELECT count(*) AS unpaid_without_timer FROM plain.orders o
 WHERE o.status = 'unpaid'
   AND NOT EXISTS (SELECT 1 FROM orderexp.timers t
					WHERE t.order_table = 'plain.orders'::regclass AND t.order_key = o.id::text);
SELECT orderexp.set_plain_deadlines('plain.orders', false);
SELECT count(*) AS unpaid_without_timer FROM plain.orders o
 WHERE o.status = 'unpaid'
   AND NOT EXISTS (SELECT 1 FROM orderexp.timers t
					WHERE t.order_table = 'plain.orders'::regclass AND t.order_key = o.id::text);
SELECT plain_since FROM orderexp.policies WHERE id = :pol;
INSERT INTO plain.orders (id, email) VALUES (45, 'e@example.com');
SELECT count(*) AS timer45 FROM orderexp.timers WHERE order_table = 'plain.orders'::regclass AND order_key = '45';
-- and again off: a no-op
SELECT orderexp.set_plain_deadlines('plain.orders', false);

--
-- a role that does not own the table may not turn plain deadlines on
--
CREATE ROLE plain_stranger;
GRANT orderexp_admin TO plain_stranger;
GRANT USAGE ON SCHEMA plain TO plain_stranger;
SET ROLE plain_stranger;
SELECT orderexp.set_plain_deadlines('plain.orders');
RESET ROLE;
REVOKE USAGE ON SCHEMA plain FROM plain_stranger;
DROP ROLE plain_stranger;

--
-- a run_due() of several batches keeps no batch's results: each table's
-- batches run in an SPI connection of their own, which ends with them (a
-- worker transaction holds rounds in one connection the same way).  A
-- statement trigger on the table counts SPI's result tables each time the
-- sweep's orders statement runs: 3,500 due orders, batches of 1,000.
-- Three in every batch (the take's rows, the keys without a timer row, the
-- orders statement's own), and in the first the registration's statements,
-- read once a sweep; before, every batch's stayed: {5,9,13,18}.
--
CREATE SCHEMA pmem;
CREATE TABLE pmem.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON pmem.orders (created_at) WHERE status = 'unpaid';
CREATE TABLE pmem.seen (batch int GENERATED ALWAYS AS IDENTITY, result_tables bigint);
CREATE FUNCTION pmem.count_result_tables() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	INSERT INTO pmem.seen (result_tables)
	SELECT count(*) FROM pg_catalog.pg_backend_memory_contexts WHERE name = 'SPI TupTable';
	RETURN NULL;
END
$$;
CREATE TRIGGER count_result_tables AFTER UPDATE ON pmem.orders
	FOR EACH STATEMENT EXECUTE FUNCTION pmem.count_result_tables();
SELECT orderexp.set_close_policy('pmem.orders', '1 hour') IS NOT NULL AS registered;
SELECT orderexp.set_plain_deadlines('pmem.orders');
INSERT INTO pmem.orders (id, created_at)
SELECT g, now() - interval '2 hours' FROM generate_series(1, 3500) g;
SHOW orderexp.batch_size;
SELECT * FROM orderexp.run_due();
SELECT array_agg(result_tables ORDER BY batch) AS result_tables_by_batch FROM pmem.seen;
-- Nor does a batch leave its subtransaction's memory behind: its NOTIFY is
-- sent after the release (in the subtransaction, it kept an 8 kB context
-- until the top transaction ended, one a batch).  Without the trigger
-- (whose own work would keep them), after run_due() in a transaction.
DROP TRIGGER count_result_tables ON pmem.orders;
INSERT INTO pmem.orders (id, created_at)
SELECT g, now() - interval '2 hours' FROM generate_series(3501, 7000) g;
BEGIN;
SELECT * FROM orderexp.run_due();
SELECT count(*) AS subtransaction_contexts_left
  FROM pg_catalog.pg_backend_memory_contexts WHERE name = 'CurTransactionContext';
COMMIT;
SELECT orderexp.drop_close_policy('pmem.orders');
DROP SCHEMA pmem CASCADE;

--
-- An idle sweep does not run a table's plain batch: it reads the first
-- entry of the table's partial index on created-at (batch.c,
-- orderexp_plain_first_due), one scan of the table where the batch's take
-- and next statements made two, and runs the batch only when that order's
-- deadline has come.  probe.scans() counts the scans of a table, in this
-- backend since its statistics were last reported, and the tests read the
-- difference across run_due() in a transaction.
--
CREATE SCHEMA probe;
CREATE TABLE probe.orders (
	id			int PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX probe_due ON probe.orders (created_at) WHERE status = 'unpaid';
CREATE TABLE probe.local (
	id			int PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamp NOT NULL DEFAULT localtimestamp
);
CREATE INDEX local_due ON probe.local (created_at) WHERE status = 'unpaid';
CREATE FUNCTION probe.scans(t regclass) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
	SELECT coalesce((SELECT s.seq_scan + coalesce(s.idx_scan, 0)
					   FROM pg_stat_xact_user_tables s WHERE s.relid = t), 0)
$$;
SELECT orderexp.set_close_policy('probe.orders', '1 hour') IS NOT NULL AS registered,
       orderexp.set_plain_deadlines('probe.orders');
SELECT orderexp.set_close_policy('probe.local', '1 hour') IS NOT NULL AS registered,
       orderexp.set_plain_deadlines('probe.local');
INSERT INTO probe.orders (id, created_at) VALUES (1, now() - interval '50 minutes'), (2, now());
INSERT INTO probe.local (id, created_at) VALUES (1, localtimestamp - interval '50 minutes');
-- nothing due: one scan of each, nothing closed
BEGIN;
SELECT probe.scans('probe.orders') AS s0, probe.scans('probe.local') AS l0 \gset
SELECT * FROM orderexp.run_due();
SELECT probe.scans('probe.orders') - :s0 AS scans, probe.scans('probe.local') - :l0 AS local_scans;
COMMIT;
-- an order placed before the others, due: the batch runs and closes it
INSERT INTO probe.orders (id, created_at) VALUES (3, now() - interval '2 hours');
INSERT INTO probe.local (id, created_at) VALUES (2, localtimestamp - interval '61 minutes');
BEGIN;
SELECT probe.scans('probe.orders') AS s0, probe.scans('probe.local') AS l0 \gset
SELECT * FROM orderexp.run_due();
SELECT probe.scans('probe.orders') - :s0 > 1 AS batch_ran,
       probe.scans('probe.local') - :l0 > 1 AS local_batch_ran;
COMMIT;
SELECT id, status FROM probe.orders ORDER BY id;
SELECT id, status FROM probe.local ORDER BY id;
-- the first entry is a paid order's, whose row the probe does not see: not due
INSERT INTO probe.orders (id, created_at) VALUES (4, now() - interval '3 hours');
UPDATE probe.orders SET status = 'paid' WHERE id = 4;
BEGIN;
SELECT probe.scans('probe.orders') AS s0 \gset
SELECT * FROM orderexp.run_due();
SELECT probe.scans('probe.orders') - :s0 AS scans;
COMMIT;
-- set back to unpaid, it is due, and closed
UPDATE probe.orders SET status = 'unpaid' WHERE id = 4;
SELECT * FROM orderexp.run_due();
SELECT id, status FROM probe.orders WHERE id = 4;
-- another index to find them by, the first dropped: the probe reads the
-- new one; rebuilt concurrently (a new index), the one that replaced it
CREATE INDEX probe_due2 ON probe.orders (created_at) WHERE status = 'unpaid';
DROP INDEX probe.probe_due;
BEGIN;
SELECT probe.scans('probe.orders') AS s0,
       pg_stat_get_xact_numscans('probe.probe_due2'::regclass) AS i0 \gset
SELECT * FROM orderexp.run_due();
SELECT probe.scans('probe.orders') - :s0 AS scans,
       pg_stat_get_xact_numscans('probe.probe_due2'::regclass) - :i0 AS new_index_scans;
COMMIT;
REINDEX INDEX CONCURRENTLY probe.probe_due2;
INSERT INTO probe.orders (id, created_at) VALUES (5, now() - interval '2 hours');
SELECT * FROM orderexp.run_due();
SELECT id, status FROM probe.orders WHERE id = 5;
-- an index in descending order: the probe cannot tell, the batch runs
CREATE INDEX probe_due_desc ON probe.orders (created_at DESC) WHERE status = 'unpaid';
DROP INDEX probe.probe_due2;
BEGIN;
SELECT probe.scans('probe.orders') AS s0 \gset
SELECT * FROM orderexp.run_due();
SELECT probe.scans('probe.orders') - :s0 > 1 AS batch_ran;
COMMIT;
-- an ascending index again
CREATE INDEX probe_due3 ON probe.orders (created_at) WHERE status = 'unpaid';
DROP INDEX probe.probe_due_desc;
-- A run_due() that closes 2,500 orders of a table not analyzed since they
-- came, in batches of 1,000, reads each of their index entries once: the
-- take follows the index's order (sorting only the rows of one
-- created-at), where a plan for few rows sorted all the due rows for every
-- batch (4,506 entries read here), and the last round's probe starts where
-- the batches got to, not at the entries of the orders the call closed
INSERT INTO probe.orders (id, created_at)
SELECT g, now() - interval '2 hours' + g * interval '1 ms' FROM generate_series(100, 2599) g;
BEGIN;
SELECT pg_stat_get_xact_tuples_returned('probe.probe_due3'::regclass) AS r0 \gset
SELECT * FROM orderexp.run_due();
SELECT pg_stat_get_xact_tuples_returned('probe.probe_due3'::regclass) - :r0
	   BETWEEN 2500 AND 2520 AS entries_read_once;
COMMIT;
-- a child table, whose rows are not in the parent's index: the batch runs,
-- and closes the child's due order
CREATE TABLE probe.child () INHERITS (probe.orders);
INSERT INTO probe.child (id, created_at) VALUES (6, now() - interval '2 hours');
SELECT * FROM orderexp.run_due();
SELECT tableoid::regclass, id, status FROM probe.orders WHERE id = 6;
DROP TABLE probe.child;
SELECT orderexp.drop_close_policy('probe.orders'), orderexp.drop_close_policy('probe.local');
DROP SCHEMA probe CASCADE;
