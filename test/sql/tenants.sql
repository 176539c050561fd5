--
-- orderexp_admin answers for its own tables
--
-- Two shops in one database, each run by its own member of orderexp_admin
-- that owns its orders table.  Each sees, through every view, only its own
-- table; forget_before() and requeue() act on its own table only; a
-- cutoff in the future is refused; rotate_secret() (one secret signs every
-- shop's links) is a superuser's.  The superuser sees and acts on both.
--
\set SHOW_CONTEXT never
CREATE ROLE regress_shop_a LOGIN IN ROLE orderexp_admin, orderexp_app;
CREATE ROLE regress_shop_b LOGIN IN ROLE orderexp_admin, orderexp_app;
CREATE SCHEMA shop_a AUTHORIZATION regress_shop_a;
CREATE SCHEMA shop_b AUTHORIZATION regress_shop_b;

-- each shop creates, registers and fills its own table
SET SESSION AUTHORIZATION regress_shop_a;
CREATE TABLE shop_a.orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
							created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('shop_a.orders', '1 hour', channels => '{shops}') > 0 AS registered;
INSERT INTO shop_a.orders (id) SELECT g FROM generate_series(1, 3) g;
SELECT orderexp.cancel_order('shop_a.orders', 3, 'changed my mind');
SELECT orderexp.start_experiment('shop_a.orders', '{1 hour, 2 hours}') > 0 AS started;
SET SESSION AUTHORIZATION regress_shop_b;
CREATE TABLE shop_b.orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
							created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('shop_b.orders', '2 hours', channels => '{shops}') > 0 AS registered;
INSERT INTO shop_b.orders (id) SELECT g FROM generate_series(1, 2) g;
SELECT orderexp.cancel_order('shop_b.orders', 2, 'out of stock');
SELECT orderexp.start_experiment('shop_b.orders', '{2 hours, 3 hours}') > 0 AS started;
RESET SESSION AUTHORIZATION;

-- dead letters of both shops
CREATE VIEW shops AS
	SELECT c.oid::regclass AS t FROM pg_class c
	 WHERE c.relname = 'orders' AND c.relnamespace::regnamespace::text IN ('shop_a', 'shop_b');
GRANT SELECT ON shops TO PUBLIC;
UPDATE orderexp.outbox SET dead_at = now(), next_attempt_at = 'infinity', attempts = 10,
						   last_error = 'gone'
 WHERE order_table IN (SELECT t FROM shops);
SELECT order_table, count(*) FROM orderexp.dead_letters
 WHERE order_table IN (SELECT t FROM shops) GROUP BY 1 ORDER BY 1;

-- what each sees: only its own table, in every view (the superuser sees
-- the tables of the earlier tests too; counted are the two shops')
CREATE FUNCTION seen() RETURNS TABLE (view text, tables text)
LANGUAGE sql AS $$
	SELECT 'pending', string_agg(DISTINCT order_table::text, ',') FROM orderexp.pending
	 WHERE order_table IN (SELECT t FROM shops)
	UNION ALL SELECT 'pending_json', string_agg(DISTINCT (e ->> 'order_table')::oid::regclass::text, ',')
		FROM jsonb_array_elements(orderexp.pending_json()) e
	   WHERE (e ->> 'order_table')::oid IN (SELECT t FROM shops)
	UNION ALL SELECT 'policy_config', string_agg(DISTINCT order_table::text, ',') FROM orderexp.policy_config
	 WHERE order_table IN (SELECT t FROM shops)
	UNION ALL SELECT 'policy_stats', string_agg(DISTINCT order_table::text, ',') FROM orderexp.policy_stats
	 WHERE order_table IN (SELECT t FROM shops)
	UNION ALL SELECT 'experiment_stats', string_agg(DISTINCT order_table::text, ',') FROM orderexp.experiment_stats
	 WHERE order_table IN (SELECT t FROM shops)
	UNION ALL SELECT 'dead_letters', string_agg(DISTINCT order_table::text, ',') FROM orderexp.dead_letters
	 WHERE order_table IN (SELECT t FROM shops)
	UNION ALL SELECT 'delivery_stats', sum(dead)::text FROM orderexp.delivery_stats
	 WHERE channel = 'shops'
$$;
GRANT EXECUTE ON FUNCTION seen() TO PUBLIC;
SELECT * FROM seen();
SET SESSION AUTHORIZATION regress_shop_a;
SELECT * FROM seen();
SET SESSION AUTHORIZATION regress_shop_b;
SELECT * FROM seen();
-- the pending rows of its own table are whole
SELECT order_table, order_key, time_left > interval '1 hour 59 min' AS time_left_right
  FROM orderexp.pending ORDER BY order_key;

-- a role that owns nothing sees nothing, even as a member of orderexp_admin
RESET SESSION AUTHORIZATION;
CREATE ROLE regress_nobody LOGIN IN ROLE orderexp_admin;
SET SESSION AUTHORIZATION regress_nobody;
SELECT * FROM seen();
-- and a role that has the owner's privileges sees what the owner sees
RESET SESSION AUTHORIZATION;
GRANT regress_shop_a TO regress_nobody;
SET SESSION AUTHORIZATION regress_nobody;
SELECT view, tables FROM seen() WHERE view IN ('pending', 'policy_config');
RESET SESSION AUTHORIZATION;
REVOKE regress_shop_a FROM regress_nobody;

-- forget_before: no future cutoff, no infinity; one shop's history only
SET SESSION AUTHORIZATION regress_shop_a;
\set VERBOSITY terse
SELECT * FROM orderexp.forget_before(now() + interval '1 day');
SELECT :'SQLSTATE' AS sqlstate;
\set VERBOSITY default
SELECT * FROM orderexp.forget_before('infinity');
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM orderexp.forget_before(NULL);
SELECT :'SQLSTATE' AS sqlstate;
RESET SESSION AUTHORIZATION;
SELECT order_table, count(*) FROM orderexp.audit WHERE order_table IN (SELECT t FROM shops) GROUP BY 1 ORDER BY 1;
SELECT order_table, count(*) FROM orderexp.outcomes WHERE order_table IN (SELECT t FROM shops) GROUP BY 1 ORDER BY 1;
SET SESSION AUTHORIZATION regress_shop_a;
SELECT * FROM orderexp.forget_before(now());
RESET SESSION AUTHORIZATION;
SELECT order_table, count(*) FROM orderexp.audit WHERE order_table IN (SELECT t FROM shops) GROUP BY 1 ORDER BY 1;
SELECT order_table, count(*) FROM orderexp.outcomes WHERE order_table IN (SELECT t FROM shops) GROUP BY 1 ORDER BY 1;

-- requeue: every dead row of one's own tables, and none of the other's,
-- even when named
SELECT array_agg(id) AS all_ids FROM orderexp.outbox WHERE order_table IN (SELECT t FROM shops) \gset
SET SESSION AUTHORIZATION regress_shop_b;
SELECT orderexp.requeue(:'all_ids');
RESET SESSION AUTHORIZATION;
SELECT order_table, dead_at IS NOT NULL AS dead FROM orderexp.outbox
 WHERE order_table IN (SELECT t FROM shops) ORDER BY id;
UPDATE orderexp.outbox SET dead_at = now(), next_attempt_at = 'infinity', attempts = 10
 WHERE order_table IN (SELECT t FROM shops);
SET SESSION AUTHORIZATION regress_shop_b;
SELECT orderexp.requeue();
RESET SESSION AUTHORIZATION;
SELECT order_table, count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
	   count(*) FILTER (WHERE dead_at IS NULL) AS live
  FROM orderexp.outbox WHERE order_table IN (SELECT t FROM shops) GROUP BY 1 ORDER BY 1;

-- the secret is every shop's: a superuser's to rotate
SET SESSION AUTHORIZATION regress_shop_a;
SELECT orderexp.rotate_secret();
SELECT :'SQLSTATE' AS sqlstate;
RESET SESSION AUTHORIZATION;
SELECT orderexp.rotate_secret();

-- the superuser acts on both
SELECT orderexp.requeue(:'all_ids');
SELECT audit_rows > 0 AS audit_forgotten, outcome_rows > 0 AS outcomes_forgotten
  FROM orderexp.forget_before(now());
SELECT count(*) FROM orderexp.audit;

-- clean up
SET SESSION AUTHORIZATION regress_shop_a;
SELECT orderexp.drop_close_policy('shop_a.orders') IS NOT NULL AS dropped;
DROP TABLE shop_a.orders;
SET SESSION AUTHORIZATION regress_shop_b;
SELECT orderexp.drop_close_policy('shop_b.orders') IS NOT NULL AS dropped;
DROP TABLE shop_b.orders;
RESET SESSION AUTHORIZATION;
DELETE FROM orderexp.outbox WHERE channel = 'shops';
DROP FUNCTION seen();
DROP VIEW shops;
DROP SCHEMA shop_a, shop_b;
DROP ROLE regress_shop_a, regress_shop_b, regress_nobody;
