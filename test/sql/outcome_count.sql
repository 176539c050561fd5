--
-- outcome_count: the sweep counts the outcomes of the orders it closes (one
-- row of orderexp.outcomes per batch and policy version, variant and
-- reopened, order_count saying how many), and policy_stats and
-- experiment_stats still say what a recount of every single order says.
--
-- The recount reads neither orderexp.outcomes nor the timers: each order's
-- way out of unpaid comes from the orders table and the audit trail, its
-- reminder from the outbox, its extensions and deadline from the audit
-- trail, its time to pay from a paid_at the payments below set.  (Its
-- feedback is counted from orderexp.feedback, as the views count it: a
-- reopened order's feedback goes to the policy version it was reopened
-- under.)  Orders 1..40 are placed before the experiment (no variant),
-- 41..240 in it; the sweep closes them in batches of at most 7
-- (run_due(7)), before and after some of them are reopened, so that
-- batches mix policy versions, variants and reopened orders.  At the end,
-- two miscounts made by hand show that the comparison sees them.
--
\set SHOW_CONTEXT never
CREATE SCHEMA oc;

CREATE TABLE oc.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL,
	paid_at		timestamptz				-- the recount's time to pay
);
SELECT orderexp.set_close_policy('oc.orders', '1 hour', remind_before => '30 minutes',
		extend_by => '20 minutes', max_extensions => 2, channels => '{email}') AS pol \gset
SELECT version AS v0 FROM orderexp.policies WHERE id = :pol \gset
INSERT INTO oc.orders (id, created_at)
SELECT g, now() - make_interval(mins => CASE WHEN g % 12 = 3 THEN 57 ELSE (g * 7) % 55 END)
  FROM generate_series(1, 40) g;
SELECT orderexp.start_experiment('oc.orders', '{1 hour, 90 minutes}', '{1, 1}') AS exp \gset
SELECT policy_version AS v1 FROM orderexp.experiments WHERE id = :exp \gset
INSERT INTO oc.orders (id, created_at)
SELECT g, now() - make_interval(mins => CASE WHEN g % 12 = 3 THEN 57 ELSE (g * 7) % 55 END)
  FROM generate_series(41, 240) g;
SELECT :v1 - :v0 AS experiment_version_offset, count(DISTINCT variant) AS variants
  FROM orderexp.timers WHERE order_table = 'oc.orders'::regclass AND variant IS NOT NULL;

-- closes the due orders in batches of at most 7, one transaction each
CREATE TABLE oc.runs (n serial, reminded bigint, closed bigint);
CREATE PROCEDURE oc.sweep_in_batches()
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	LOOP
		INSERT INTO oc.runs (reminded, closed) SELECT * FROM orderexp.run_due(7)
		RETURNING * INTO r;
		COMMIT;
		EXIT WHEN r.reminded = 0 AND r.closed = 0;
	END LOOP;
END;
$$;

-- reminders (orders of the first hour placed 30 minutes ago and more), no close
CALL oc.sweep_in_batches();
SELECT sum(reminded) > 0 AS reminded, sum(closed) AS closed FROM oc.runs;
-- extensions (twice for some), payments, cancels, two closes by the application
SELECT count(orderexp.extend_order('oc.orders', id)) AS extended FROM oc.orders WHERE id % 7 = 0;
SELECT count(orderexp.extend_order('oc.orders', id)) AS extended FROM oc.orders WHERE id % 14 = 0;
UPDATE oc.orders SET status = 'paid', paid_at = now() WHERE id % 3 = 0;
SELECT count(orderexp.cancel_order('oc.orders', id, 'asked')) AS cancelled
  FROM oc.orders WHERE id % 11 = 0 AND status = 'unpaid';
UPDATE oc.orders SET status = 'closed' WHERE id IN (1, 100);

-- the sweep closes the even orders (all but those ending in 8, left unpaid)
UPDATE orderexp.timers SET close_at = now() - interval '1 second', remind_at = NULL
 WHERE order_table = 'oc.orders'::regclass AND order_key::bigint % 2 = 0
   AND order_key::bigint % 10 <> 8;
TRUNCATE oc.runs;
CALL oc.sweep_in_batches();
SELECT sum(closed) AS closed, count(*) FILTER (WHERE closed > 0) > 5 AS batches,
       max(closed) <= 7 AS small_batches
  FROM oc.runs;

-- some of them are reopened (and two cancelled ones); some of those pay
SELECT count(orderexp.reopen_order('oc.orders', id)) AS reopened
  FROM oc.orders WHERE (status = 'closed' AND id % 4 = 2 AND id <> 100) OR id IN (11, 55);
UPDATE oc.orders o SET status = 'paid', paid_at = now()
  FROM orderexp.audit a
 WHERE a.order_table = 'oc.orders'::regclass AND a.order_key = o.id::text
   AND a.action = 'reopened' AND o.id % 3 = 1;
-- feedback on three closed orders, one of them reopened
SELECT count(orderexp.record_feedback('oc.orders', id, 'closed too early', 'was paying'))
		 AS feedback
  FROM oc.orders WHERE id IN (4, 10, 44);

-- then everything else but the orders ending in 8 and 9, the reopened included
UPDATE orderexp.timers SET close_at = now() - interval '1 second', remind_at = NULL
 WHERE order_table = 'oc.orders'::regclass AND order_key::bigint % 10 NOT IN (8, 9);
TRUNCATE oc.runs;
CALL oc.sweep_in_batches();
SELECT sum(closed) AS closed, count(*) FILTER (WHERE closed > 0) > 5 AS batches,
       max(closed) <= 7 AS small_batches
  FROM oc.runs;

-- what the sweep wrote: counted rows without a key, a few orders each, as
-- many orders as it closed by timeout; per order, the application's closes
SELECT order_key IS NULL AS counted, outcome, reopened, sum(order_count) AS orders,
       max(order_count) <= 7 AS at_most_a_batch,
       bool_and(num_nulls(order_key, created_at, close_at, reminded, extensions,
                          token_extensions) = 6) AS without_order_columns
  FROM orderexp.outcomes WHERE order_table = 'oc.orders'::regclass
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) AS closed_by_timeout,
       count(*) = (SELECT sum(order_count) FROM orderexp.outcomes
                    WHERE order_table = 'oc.orders'::regclass AND order_key IS NULL)
         AS all_counted
  FROM orderexp.audit
 WHERE order_table = 'oc.orders'::regclass AND action = 'closed' AND via = 'timeout';
-- a batch's rows: one per policy version, variant and reopened
SELECT count(*) < sum(order_count) AS fewer_rows_than_orders
  FROM orderexp.outcomes WHERE order_table = 'oc.orders'::regclass AND order_key IS NULL;
SELECT count(*) > 0 AS batches_with_several_groups
  FROM (SELECT decided_at FROM orderexp.outcomes
         WHERE order_table = 'oc.orders'::regclass AND order_key IS NULL
         GROUP BY decided_at HAVING count(*) > 1) b;
SELECT count(*) AS duplicate_groups
  FROM (SELECT 1 FROM orderexp.outcomes
         WHERE order_table = 'oc.orders'::regclass AND order_key IS NULL
         GROUP BY decided_at, policy_version, variant, reopened HAVING count(*) > 1) d;

--
-- the recount, order by order
--
-- each order's first way out of unpaid: a reopened order's is the close or
-- cancel in the audit trail (what came after is left out of the statistics,
-- as policy_stats leaves reopened outcomes out); else its status now
CREATE VIEW oc.recount AS
SELECT o.id, o.created_at, o.paid_at, v.version, v.variant,
	   CASE WHEN v.variant IS NULL THEN interval '1 hour'
			ELSE ('{1 hour, 90 minutes}'::interval[])[v.variant] END AS close_after,
	   CASE WHEN a.reopened THEN a.first_action
			WHEN o.status IN ('paid', 'closed', 'cancelled') THEN o.status END AS outcome,
	   EXISTS (SELECT 1 FROM orderexp.outbox e
				WHERE e.order_table = 'oc.orders'::regclass AND e.order_key = o.id::text
				  AND e.kind = 'reminder') AS reminded,
	   a.extensions, a.last_extension
  FROM oc.orders o
 CROSS JOIN LATERAL (
		SELECT CASE WHEN o.id <= 40 THEN :v0 ELSE :v1 END AS version,
			   CASE WHEN o.id > 40 THEN orderexp.assign_variant(o.id::text, '{1,1}', :exp) END
				   AS variant) v
 CROSS JOIN LATERAL (
		SELECT bool_or(x.action = 'reopened') AS reopened,
			   (array_agg(x.action ORDER BY x.id)
				  FILTER (WHERE x.action IN ('closed', 'cancelled')))[1] AS first_action,
			   count(*) FILTER (WHERE x.action = 'extended') AS extensions,
			   (array_agg(x.deadline ORDER BY x.id DESC)
				  FILTER (WHERE x.action = 'extended'))[1] AS last_extension
		  FROM orderexp.audit x
		 WHERE x.order_table = 'oc.orders'::regclass AND x.order_key = o.id::text) a;

-- policy_stats' columns, from the recount
CREATE VIEW oc.policy_recount AS
SELECT 'oc.orders'::regclass AS order_table, NULL::text AS category, :pol AS policy_id,
	   r.version AS policy_version, interval '1 hour' AS close_after,
	   count(*) AS orders,
	   count(*) FILTER (WHERE r.outcome = 'paid') AS paid,
	   count(*) FILTER (WHERE r.outcome = 'closed') AS closed,
	   count(*) FILTER (WHERE r.outcome = 'cancelled') AS cancelled,
	   round(count(*) FILTER (WHERE r.outcome = 'paid')::numeric / count(*), 4) AS conversion_rate,
	   round(count(*) FILTER (WHERE r.outcome = 'paid' AND r.reminded)::numeric
			 / nullif(count(*) FILTER (WHERE r.outcome = 'paid'), 0), 4) AS paid_after_reminder,
	   round(count(*) FILTER (WHERE r.outcome = 'paid' AND r.extensions > 0)::numeric
			 / nullif(count(*) FILTER (WHERE r.outcome = 'paid'), 0), 4) AS paid_after_extension,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY r.paid_at - r.created_at)
		   FILTER (WHERE r.outcome = 'paid') AS median_time_to_pay,
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY r.paid_at - r.created_at)
		   FILTER (WHERE r.outcome = 'paid') AS p90_time_to_pay,
	   round(count(*) FILTER (WHERE r.outcome = 'paid' AND r.paid_at >= d.deadline - (d.deadline - r.created_at) / 10)::numeric
			 / nullif(count(*) FILTER (WHERE r.outcome = 'paid'), 0), 4) AS paid_in_last_tenth,
	   fb.n AS feedback,
	   round(100.0 * fb.n / nullif(count(*) FILTER (WHERE r.outcome = 'closed'), 0), 2)
		   AS feedback_per_100_closed
  FROM oc.recount r
 CROSS JOIN LATERAL (SELECT coalesce(r.last_extension, r.created_at + r.close_after) AS deadline) d
 CROSS JOIN LATERAL (SELECT count(*) AS n FROM orderexp.feedback f
					  WHERE f.policy_id = :pol AND f.policy_version = r.version) fb
 WHERE r.outcome IS NOT NULL
 GROUP BY r.version, fb.n;

-- experiment_stats' columns, from the recount (the same formulas)
CREATE VIEW oc.experiment_recount AS
WITH arms AS (
	SELECT a.variant, ('{1 hour, 90 minutes}'::interval[])[a.variant] AS close_after,
		   count(r.id) AS orders, count(r.id) FILTER (WHERE r.outcome = 'paid') AS paid,
		   count(r.id) FILTER (WHERE r.outcome = 'closed') AS closed,
		   (SELECT count(*) FROM orderexp.feedback f
			 WHERE f.policy_id = :pol AND f.policy_version = :v1 AND f.variant = a.variant)
			   AS feedback
	  FROM generate_series(1, 2) AS a(variant)
	  LEFT JOIN oc.recount r ON r.variant = a.variant AND r.outcome IS NOT NULL
	 GROUP BY a.variant),
rated AS (
	SELECT r.*, r.paid::double precision / nullif(r.orders, 0) AS rate,
		   f.orders AS first_orders, f.paid AS first_paid
	  FROM arms r JOIN arms f ON f.variant = 1)
SELECT :exp AS experiment_id, 'oc.orders'::regclass AS order_table, NULL::text AS category,
	   :pol AS policy_id, r.variant, r.close_after, 1 AS weight, true AS running,
	   NULL::boolean AS winner, r.orders, r.paid, round(r.rate::numeric, 4) AS conversion_rate,
	   round(w.low::numeric, 4) AS ci_low, round(w.high::numeric, 4) AS ci_high,
	   round(z.z::numeric, 3) AS z_vs_first, round(orderexp._normal_p(z.z)::numeric, 4) AS p_value,
	   (r.paid >= 10 AND r.orders - r.paid >= 10) AS enough_data,
	   r.feedback, round(100.0 * r.feedback / nullif(r.closed, 0), 2) AS feedback_per_100_closed
  FROM rated r
 CROSS JOIN LATERAL orderexp._wilson(r.paid, r.orders) w
 CROSS JOIN LATERAL (
		SELECT CASE WHEN r.variant > 1 AND r.orders > 0 AND r.first_orders > 0
						 AND pooled > 0 AND pooled < 1
					THEN (r.rate - r.first_paid::double precision / r.first_orders)
						 / sqrt(pooled * (1 - pooled) * (1.0 / r.orders + 1.0 / r.first_orders))
			   END AS z
		  FROM (SELECT (r.paid + r.first_paid)::double precision
					   / nullif(r.orders + r.first_orders, 0) AS pooled) pp) z;

-- every column of every row that differs between the view and the recount
-- (a row on one side only differs in all its columns)
CREATE VIEW oc.differences AS
SELECT 'policy_stats' AS view, coalesce(r.k, s.k) - :v0 AS version_offset, c.col
  FROM (SELECT x.policy_version AS k, to_jsonb(x) AS j FROM oc.policy_recount x) r
  FULL JOIN (SELECT x.policy_version AS k, to_jsonb(x) AS j FROM orderexp.policy_stats x
			  WHERE x.order_table = 'oc.orders'::regclass) s ON s.k = r.k
 CROSS JOIN LATERAL (SELECT k AS col FROM jsonb_object_keys(coalesce(r.j, s.j)) k
					  WHERE r.j -> k IS DISTINCT FROM s.j -> k) c
UNION ALL
SELECT 'experiment_stats', coalesce(r.k, s.k), c.col
  FROM (SELECT x.variant AS k, to_jsonb(x) AS j FROM oc.experiment_recount x) r
  FULL JOIN (SELECT x.variant AS k, to_jsonb(x) AS j FROM orderexp.experiment_stats x
			  WHERE x.experiment_id = :exp) s ON s.k = r.k
 CROSS JOIN LATERAL (SELECT k AS col FROM jsonb_object_keys(coalesce(r.j, s.j)) k
					  WHERE r.j -> k IS DISTINCT FROM s.j -> k) c;

-- the figures that do not depend on which variant an order drew
SELECT policy_version - :v0 AS version_offset, close_after, orders, paid, closed, cancelled,
       conversion_rate, feedback
  FROM orderexp.policy_stats WHERE order_table = 'oc.orders'::regclass ORDER BY policy_version;
-- every row has data in every figure, so that a difference would show
SELECT count(*) AS rows, bool_and(paid_after_reminder > 0 AND paid_after_extension > 0
                                  AND paid_in_last_tenth > 0 AND median_time_to_pay > '0'
                                  AND p90_time_to_pay > median_time_to_pay) AS every_figure
  FROM oc.policy_recount;
SELECT count(*) AS rows, bool_and(orders > paid AND paid > 0) AS every_arm,
       sum(orders) AS orders, sum(paid) AS paid, sum(feedback) AS feedback
  FROM oc.experiment_recount;
-- and they are the same, to the last column
SELECT * FROM oc.differences ORDER BY 1, 2, 3;

-- the comparison sees a miscount: every counted row counted twice
BEGIN;
UPDATE orderexp.outcomes SET order_count = 2 * order_count
 WHERE order_table = 'oc.orders'::regclass AND order_key IS NULL;
SELECT view, bool_or(col = 'orders') AS orders_differ FROM oc.differences GROUP BY 1 ORDER BY 1;
ROLLBACK;
-- and one that the counted rows left out: their orders are gone
BEGIN;
DELETE FROM orderexp.outcomes
 WHERE order_table = 'oc.orders'::regclass AND order_key IS NULL AND variant = 2;
SELECT view, bool_or(col = 'orders') AS orders_differ FROM oc.differences GROUP BY 1 ORDER BY 1;
ROLLBACK;

SELECT orderexp.end_experiment('oc.orders', 1);
SELECT orderexp.drop_close_policy('oc.orders');
DROP SCHEMA oc CASCADE;

--
-- The status trigger does not fire in the sweep's own statement, whose
-- closes the record statement counts (batch.c switches it off in that
-- statement's copy of the table's triggers); it fires for the
-- application's updates, and for the sweep's too where the table has a
-- BEFORE UPDATE row trigger, which could set another status than the
-- sweep's.  Its calls are counted by the statistics of this backend
-- (pg_stat_xact_user_functions, track_functions = all): how many more
-- there are after a statement than before it.
--
CREATE SCHEMA ocs;
CREATE TABLE ocs.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL
);
CREATE TABLE ocs.stamped (LIKE ocs.orders INCLUDING ALL, touched_at timestamptz);
CREATE FUNCTION ocs.touch() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN NEW.touched_at := now(); RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE UPDATE ON ocs.stamped FOR EACH ROW EXECUTE FUNCTION ocs.touch();
SELECT orderexp.set_close_policy('ocs.orders', '1 hour') > 0 AS registered,
	   orderexp.set_close_policy('ocs.stamped', '1 hour') > 0 AS registered_too;
INSERT INTO ocs.orders (id, created_at) SELECT g, now() - interval '2 hours' FROM generate_series(1, 6) g;
INSERT INTO ocs.orders (id, created_at) VALUES (7, now());
SET track_functions = 'all';
CREATE VIEW ocs.calls AS
SELECT coalesce(sum(calls), 0) AS n
  FROM pg_stat_xact_user_functions WHERE funcid = 'orderexp.outcome_trigger'::regproc;
BEGIN;
SELECT n AS c0 FROM ocs.calls \gset
SELECT * FROM orderexp.run_due();
SELECT n - :c0 AS status_trigger_calls FROM ocs.calls;
UPDATE ocs.orders SET status = 'paid' WHERE id = 7;
SELECT n - :c0 AS status_trigger_calls FROM ocs.calls;
COMMIT;
SELECT outcome, sum(order_count) AS orders FROM orderexp.outcomes
 WHERE order_table = 'ocs.orders'::regclass GROUP BY 1 ORDER BY 1;
-- a table with a BEFORE UPDATE trigger: the status trigger stays on
INSERT INTO ocs.stamped (id, created_at) SELECT g, now() - interval '2 hours' FROM generate_series(1, 4) g;
BEGIN;
SELECT n AS c0 FROM ocs.calls \gset
SELECT * FROM orderexp.run_due();
SELECT n - :c0 AS status_trigger_calls FROM ocs.calls;
COMMIT;
SELECT count(*) FILTER (WHERE status = 'closed' AND touched_at IS NOT NULL) AS closed_and_touched
  FROM ocs.stamped;
SELECT outcome, sum(order_count) AS orders FROM orderexp.outcomes
 WHERE order_table = 'ocs.stamped'::regclass GROUP BY 1 ORDER BY 1;
RESET track_functions;
SELECT orderexp.drop_close_policy('ocs.orders'), orderexp.drop_close_policy('ocs.stamped');
DROP SCHEMA ocs CASCADE;
