--
-- partitioned: an orders table partitioned by range of its created-at column,
-- as pg_partman makes it, with a composite primary key (id, created_at).
-- key_column names the column that identifies an order; it must be indexed.
-- orderexp keeps each order's created-at in its timer and narrows every
-- lookup of a batch to the created-at range of that batch, so that a close
-- touches only the partitions that hold the batch's orders.  Partitions made
-- or attached later are covered with no action by the DBA (the triggers are
-- cloned); a detached or dropped partition takes its orders out of orderexp's
-- reach, and their timers go at their deadlines without an event.
--
-- Runs in a database of its own (no other test's tables, no worker):
-- run_due() does the closing.
--
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset
CREATE DATABASE orderexp_partitioned;
\c orderexp_partitioned
CREATE EXTENSION orderexp;
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;
CREATE SCHEMA prt;

CREATE TABLE prt.orders (
	id			bigint NOT NULL,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL,
	email		text,
	PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
-- monthly partitions from three months back to one month ahead
SELECT partman.create_parent('prt.orders', 'created_at', 'native', 'monthly',
							 p_premake := 1,
							 p_start_partition := to_char(date_trunc('month', now()) - interval '3 months',
														  'YYYY-MM-DD HH24:MI:SS'));
SELECT count(*) AS partitions FROM pg_inherits WHERE inhparent = 'prt.orders'::regclass;

-- the composite primary key cannot identify an order: name the key column
SELECT orderexp.set_close_policy('prt.orders', '1 hour');
-- a column without an index of its own cannot be the key
SELECT orderexp.set_close_policy('prt.orders', '1 hour', key_column => 'email');
-- the key column must lead an index
CREATE INDEX ON prt.orders (email, id);
SELECT orderexp.set_close_policy('prt.orders', '1 hour', key_column => 'email');
DROP INDEX prt.orders_email_id_idx;
SELECT count(*) AS registered FROM orderexp.tables;

SELECT orderexp.set_close_policy('prt.orders', '1 hour', key_column => 'id',
								 payload_columns => '{email}') > 0 AS registered;
SELECT key_column, created_column, partition_column FROM orderexp.tables
 WHERE order_table = 'prt.orders'::regclass;

-- orders in three partitions: due ones two months back, last month and this
-- month, and some not due yet
INSERT INTO prt.orders (id, created_at, email)
SELECT i,
	   CASE i % 3 WHEN 0 THEN date_trunc('month', now()) - interval '2 months' + interval '1 day'
				  WHEN 1 THEN date_trunc('month', now()) - interval '1 month' + interval '1 day'
				  ELSE now() - interval '2 hours' END + i * interval '1 second',
	   'c' || i || '@example.com'
  FROM generate_series(1, 30) AS i;
INSERT INTO prt.orders (id, created_at, email)
SELECT i, now() - interval '10 minutes', 'c' || i || '@example.com' FROM generate_series(31, 35) AS i;
UPDATE prt.orders SET status = 'paid' WHERE id IN (3, 4);

-- every timer keeps its order's created-at
SELECT count(*) AS timers, count(*) FILTER (WHERE t.order_created = o.created_at) AS with_created
  FROM orderexp.timers t JOIN prt.orders o ON o.id = t.order_key::bigint
 WHERE t.order_table = 'prt.orders'::regclass;

-- the statement a batch runs on the orders table touches only the
-- partitions of its orders: take a batch with the sweep's own take
-- statement, run its own orders statement under EXPLAIN ANALYZE and count
-- the partitions of prt.orders whose scans ran
CREATE FUNCTION prt.partitions_scanned(batch integer) RETURNS TABLE (closed bigint, partitions_scanned bigint)
LANGUAGE plpgsql AS $$
DECLARE
	cfg orderexp.tables;
	statements text[];
	taken bigint;
	keys text[];
	tids tid[];
	created_min timestamptz;
	created_max timestamptz;
	plan jsonb;
BEGIN
	SELECT * INTO cfg FROM orderexp.tables WHERE order_table = 'prt.orders'::regclass;
	statements := orderexp._close_batch_sql(cfg);
	EXECUTE statements[1] INTO taken, keys, tids, created_min, created_max
	  USING 'prt.orders'::regclass, batch, '-infinity'::timestamptz, ''::text;
	EXECUTE format('EXPLAIN (ANALYZE, FORMAT JSON) %s', statements[2])
	   INTO plan
	  USING keys, created_min, created_max;
	RETURN QUERY
	WITH RECURSIVE nodes(n) AS (
		SELECT plan -> 0 -> 'Plan'
		UNION ALL
		SELECT c FROM nodes, jsonb_array_elements(n -> 'Plans') AS c
	)
	SELECT (SELECT count(*) FROM prt.orders WHERE status = 'closed'),
		   count(DISTINCT n ->> 'Relation Name')
	  FROM nodes
	 WHERE n ->> 'Relation Name' LIKE 'orders\_p%'
	   AND (n ->> 'Actual Loops')::int > 0;
END
$$;
-- the 10 oldest due orders (one of them paid) are all in the partition two
-- months back; all due orders are in three partitions of the six
BEGIN;
SELECT * FROM prt.partitions_scanned(10);
ROLLBACK;
BEGIN;
SELECT * FROM prt.partitions_scanned(1000);
ROLLBACK;

-- run_due closes exactly the due unpaid orders, in all partitions
SELECT * FROM orderexp.run_due();
SELECT status, count(*) FROM prt.orders GROUP BY status ORDER BY status;
SELECT count(*) AS closed_events, count(DISTINCT order_key) AS orders
  FROM orderexp.outbox WHERE order_table = 'prt.orders'::regclass AND kind = 'closed';
SELECT count(*) AS timers_left FROM orderexp.timers WHERE order_table = 'prt.orders'::regclass;

-- functions on one order find it through its created-at too
SELECT orderexp.cancel_order('prt.orders', 31::bigint, 'customer asked');
SELECT orderexp.extend_order('prt.orders', 32::bigint, '1 day') > now() + interval '1 day' AS extended;
SELECT id, status FROM prt.orders WHERE id IN (31, 32) ORDER BY id;

-- an order whose created-at changes (it moves to another partition) keeps
-- being tracked with its new created-at
UPDATE prt.orders SET created_at = date_trunc('month', now()) - interval '1 month' + interval '2 days'
 WHERE id = 33;
UPDATE prt.orders SET created_at = now() - interval '3 hours' WHERE id = 34;
SELECT t.order_key, t.order_created = o.created_at AS created_kept
  FROM orderexp.timers t JOIN prt.orders o ON o.id = t.order_key::bigint
 WHERE t.order_table = 'prt.orders'::regclass AND t.order_key IN ('33', '34') ORDER BY 1;
SELECT * FROM orderexp.run_due();
SELECT id, status FROM prt.orders WHERE id IN (33, 34, 35) ORDER BY id;

-- a partition made after registration (pg_partman's maintenance making
-- the next months): its orders are tracked and closed with no action
SELECT partman.run_maintenance('prt.orders');
CREATE TABLE prt.orders_p_later PARTITION OF prt.orders
	FOR VALUES FROM ('2100-01-01') TO ('2100-02-01');
INSERT INTO prt.orders (id, created_at) VALUES (40, '2100-01-15');
SELECT order_key, close_at FROM orderexp.timers WHERE order_key = '40';
DELETE FROM prt.orders WHERE id = 40;

-- a table attached as a partition: its rows were not tracked (attaching
-- moves no rows through the triggers), new ones are
CREATE TABLE prt.orders_attached (LIKE prt.orders INCLUDING DEFAULTS);
INSERT INTO prt.orders_attached (id, created_at) VALUES (50, '2099-01-10');
ALTER TABLE prt.orders ATTACH PARTITION prt.orders_attached
	FOR VALUES FROM ('2099-01-01') TO ('2099-02-01');
INSERT INTO prt.orders (id, created_at) VALUES (51, '2099-01-11');
SELECT order_key FROM orderexp.timers WHERE order_key IN ('50', '51') ORDER BY 1;

-- a detached partition takes its orders out of orderexp's reach: they are
-- no longer in prt.orders, pending no longer lists them, and their timers
-- go at their deadlines without closing anything
INSERT INTO prt.orders (id, created_at)
SELECT i, date_trunc('month', now()) - interval '2 months' + interval '3 days'
  FROM generate_series(60, 62) AS i;
SELECT 'prt.orders_p' || to_char(date_trunc('month', now()) - interval '2 months', 'YYYY_MM')
	   AS old_partition \gset
ALTER TABLE prt.orders DETACH PARTITION :old_partition;
SELECT count(*) AS pending_60s FROM orderexp.pending WHERE order_key IN ('60', '61', '62');
SELECT * FROM orderexp.run_due();
SELECT count(*) AS unpaid_in_detached FROM :old_partition WHERE status = 'unpaid' AND id >= 60;
SELECT count(*) AS timers_60s FROM orderexp.timers WHERE order_key IN ('60', '61', '62');
DROP TABLE :old_partition;

-- a dropped partition likewise
INSERT INTO prt.orders (id, created_at)
SELECT i, date_trunc('month', now()) - interval '1 month' + interval '3 days'
  FROM generate_series(70, 72) AS i;
SELECT 'prt.orders_p' || to_char(date_trunc('month', now()) - interval '1 month', 'YYYY_MM')
	   AS last_month \gset
DROP TABLE :last_month;
SELECT * FROM orderexp.run_due();
SELECT count(*) AS timers_70s FROM orderexp.timers WHERE order_key IN ('70', '71', '72');

-- created-at of type timestamp (without time zone), partitioned by it: the
-- timer keeps the stored value, so the order is found whatever the
-- session's TimeZone when it was inserted and when it is closed
CREATE TABLE prt.local_orders (
	id			integer NOT NULL,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamp NOT NULL,
	PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE prt.local_orders_old PARTITION OF prt.local_orders FOR VALUES FROM (MINVALUE) TO ('2000-01-01');
CREATE TABLE prt.local_orders_new PARTITION OF prt.local_orders FOR VALUES FROM ('2000-01-01') TO (MAXVALUE);
SELECT orderexp.set_close_policy('prt.local_orders', '1 hour', key_column => 'id') > 0 AS registered;
SET TimeZone = 'Asia/Tokyo';
INSERT INTO prt.local_orders (id, created_at)
VALUES (1, localtimestamp - interval '3 hours'), (2, localtimestamp);
SET TimeZone = 'America/New_York';
SELECT * FROM orderexp.run_due();
SELECT id, status FROM prt.local_orders ORDER BY id;
RESET TimeZone;
DROP TABLE prt.local_orders;

-- dropping the whole table forgets it
DROP TABLE prt.orders;
SELECT count(*) AS tables_left FROM orderexp.tables;
SELECT count(*) AS timers_left FROM orderexp.timers;

\c :regress_db
DROP DATABASE orderexp_partitioned;
