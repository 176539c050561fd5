--
-- stats: outcomes recorded by the outcome trigger, policy_stats and
-- experiment_stats on constructed data whose answers are worked out by hand
-- in the comments, and the variant an experiment gives each new order.
--
\set SHOW_CONTEXT never
CREATE SCHEMA st;

CREATE TABLE st.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamp NOT NULL,		-- without time zone: converted like the deadline
	cat			text
);
SELECT orderexp.set_close_policy('st.orders', '1 hour', remind_before => '10 minutes',
		extend_by => '30 minutes', max_extensions => 1, category => 'shoes',
		category_column => 'cat') AS pol \gset
SELECT version AS v1 FROM orderexp.policies WHERE id = :pol \gset

--
-- the outcome trigger: what it records for each way out of unpaid
--
INSERT INTO st.orders VALUES
	(1, 'unpaid', localtimestamp - interval '20 minutes', 'shoes'),	-- paid
	(2, 'unpaid', localtimestamp - interval '2 hours', 'shoes'),	-- closed by the sweep
	(3, 'unpaid', localtimestamp, 'shoes'),							-- cancelled
	(4, 'unpaid', localtimestamp, 'shoes'),							-- extended, then paid
	(5, 'unpaid', localtimestamp, 'hats'),							-- no policy: not tracked
	(6, 'unpaid', localtimestamp, 'shoes');							-- shipped: any other status is a payment
UPDATE st.orders SET status = 'paid' WHERE id = 1;
SELECT * FROM orderexp.run_due();
SELECT orderexp.cancel_order('st.orders', 3);
SELECT orderexp.extend_order('st.orders', 4) IS NOT NULL AS extended;
UPDATE st.orders SET status = 'paid' WHERE id IN (4, 5);
UPDATE st.orders SET status = 'shipped' WHERE id = 6;
-- paid to shipped is no way out of unpaid: nothing more
UPDATE st.orders SET status = 'shipped' WHERE id = 1;
-- (reminded: a reminder went out for the deadline; order 2's had passed when
-- the reminder pass came, so it got none and counts as not reminded)
SELECT o.order_key, o.outcome, o.status, o.policy_id = :pol AS right_policy,
       o.policy_version - :v1 AS version_offset, o.variant,
       o.created_at = s.created_at::timestamptz AS created_right,
       o.close_at - o.created_at AS window, now() - o.decided_at < interval '1 minute' AS decided_recently,
       o.reminded, o.extensions, o.token_extensions, o.reopened, o.order_count
  FROM orderexp.outcomes o JOIN st.orders s ON s.id = o.order_key::bigint
 WHERE o.order_table = 'st.orders'::regclass
 ORDER BY o.order_key;
-- the sweep's close of order 2 is counted, not listed: one row for the
-- batch's orders of one policy version, variant and reopened, without the
-- key, times, reminder and extensions of an order
SELECT o.outcome, o.status, o.policy_id = :pol AS right_policy,
       o.policy_version - :v1 AS version_offset, o.variant, o.reopened, o.order_count,
       now() - o.decided_at < interval '1 minute' AS decided_recently,
       num_nulls(o.order_key, o.created_at, o.close_at, o.reminded, o.extensions,
                 o.token_extensions) AS per_order_columns_null
  FROM orderexp.outcomes o
 WHERE o.order_table = 'st.orders'::regclass AND o.order_key IS NULL;

-- the trigger fires only for rows leaving unpaid, and refuses an index
CREATE INDEX outcomes_oops ON orderexp.outcomes (order_key);
INSERT INTO st.orders VALUES (7, 'unpaid', localtimestamp, 'shoes');
UPDATE st.orders SET status = 'paid' WHERE id = 7;
SELECT :'SQLSTATE' AS sqlstate;
DROP INDEX orderexp.outcomes_oops;
UPDATE st.orders SET status = 'paid' WHERE id = 7;

--
-- policy_stats on constructed outcomes (the rows above are removed first).
-- The orders are the sum of order_count: version 1's rows have none (rows
-- of 1.2, one order each), version 2's closes are one counted row, as the
-- sweep writes them, and so are the closes of the experiment's variants.
--
DELETE FROM orderexp.outcomes WHERE order_table = 'st.orders'::regclass;

-- version 1 of the policy (close_after 1 hour): ten orders.  Time to pay in
-- minutes, deadline (minutes after creation), reminded, extended:
--   p1   5  60  f f
--   p2  10  60  f f
--   p3  20  60  f f
--   p4  30  60  t f
--   p5  55  60  t f     last tenth of a 60-minute window starts at 54: in it
--   p6  58  90  t t     window 90 after the extension, last tenth from 81: not in it
--   c1..c3 closed, x1 cancelled; r1 paid but reopened: left out of the statistics
-- orders 10, paid 6, closed 3, cancelled 1, conversion 6/10 = 0.6
-- paid after a reminder 3/6 = 0.5, after an extension 1/6 = 0.1667
-- median of (5, 10, 20, 30, 55, 58): (20 + 30) / 2 = 25 minutes
-- p90: rank 0.9 * (6 - 1) = 4.5, between 55 and 58: 55 + 0.5 * 3 = 56.5 minutes
-- paid in the last tenth: 1/6 = 0.1667
INSERT INTO orderexp.outcomes (order_table, order_key, outcome, status, policy_id, policy_version,
							   variant, created_at, close_at, decided_at, reminded, extensions,
							   token_extensions, reopened)
SELECT 'st.orders', k, outcome, outcome, :pol, :v1, NULL,
	   '2026-01-01 10:00+00'::timestamptz,
	   '2026-01-01 10:00+00'::timestamptz + make_interval(mins => deadline),
	   '2026-01-01 10:00+00'::timestamptz + make_interval(mins => paid_after),
	   reminded, extended, 0, reopened
  FROM (VALUES ('p1', 'paid', 5, 60, false, 0, false),
			   ('p2', 'paid', 10, 60, false, 0, false),
			   ('p3', 'paid', 20, 60, false, 0, false),
			   ('p4', 'paid', 30, 60, true, 0, false),
			   ('p5', 'paid', 55, 60, true, 0, false),
			   ('p6', 'paid', 58, 90, true, 1, false),
			   ('c1', 'closed', 60, 60, true, 0, false),
			   ('c2', 'closed', 60, 60, true, 0, false),
			   ('c3', 'closed', 60, 60, false, 0, false),
			   ('x1', 'cancelled', 3, 60, false, 0, false),
			   ('r1', 'paid', 1, 60, false, 0, true))
	   AS v(k, outcome, paid_after, deadline, reminded, extended, reopened);

-- version 2 (close_after 2 hours): four orders, one paid after 10 minutes
-- orders 4, paid 1, closed 3 (one row of the sweep's, order_count 3),
-- conversion 0.25; median = p90 = 10 minutes; no reminder, no extension,
-- not in the last tenth (from 108 minutes): 0
SELECT orderexp.set_close_policy('st.orders', '2 hours', remind_before => '10 minutes',
		extend_by => '30 minutes', max_extensions => 1, category => 'shoes') = :pol AS same_policy;
INSERT INTO orderexp.outcomes (order_table, order_key, outcome, status, policy_id, policy_version,
							   created_at, close_at, decided_at, reminded, extensions,
							   token_extensions, reopened, order_count)
VALUES ('st.orders', 'q1', 'paid', 'paid', :pol, :v1 + 1, '2026-01-02 10:00+00',
		'2026-01-02 12:00+00', '2026-01-02 10:10+00', false, 0, 0, false, 1),
	   ('st.orders', NULL, 'closed', 'closed', :pol, :v1 + 1, NULL, NULL,
		'2026-01-02 12:00+00', NULL, NULL, NULL, false, 3);

SELECT category, policy_version - :v1 AS version_offset, close_after, orders, paid, closed,
       cancelled, conversion_rate, paid_after_reminder, paid_after_extension,
       median_time_to_pay, p90_time_to_pay, paid_in_last_tenth
  FROM orderexp.policy_stats WHERE order_table = 'st.orders'::regclass
 ORDER BY policy_version;

--
-- experiments
--
-- errors first: each changes nothing
SELECT orderexp.start_experiment('st.orders', '{15 minutes}', category => 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.start_experiment('st.orders', '{15 minutes, 30 minutes}', '{1}', 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.start_experiment('st.orders', '{15 minutes, 0 minutes}', category => 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.start_experiment('st.orders', '{5 minutes, 30 minutes}', category => 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.start_experiment('st.orders', '{15 minutes, 30 minutes}', '{1, 0}', 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.start_experiment('st.orders', '{15 minutes, 30 minutes}', category => 'hats');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.start_experiment(NULL, '{15 minutes, 30 minutes}');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.end_experiment('st.orders', 1, 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT count(*) AS experiments FROM orderexp.experiments;

-- three variants, weights 1:1:2
SELECT orderexp.start_experiment('st.orders', '{15 minutes, 30 minutes, 60 minutes}', '{1,1,2}',
                                 'shoes') AS exp \gset
SELECT orderexp.start_experiment('st.orders', '{15 minutes, 30 minutes}', category => 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
-- the policy cannot change under a running experiment
SELECT orderexp.set_close_policy('st.orders', '3 hours', category => 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT policy_version - :v1 AS version_offset FROM orderexp.experiments WHERE id = :exp;

-- new orders get their variant's close_after: the one assign_variant names
INSERT INTO st.orders SELECT g, 'unpaid', localtimestamp, 'shoes' FROM generate_series(1000, 1199) g;
SELECT count(*) AS orders,
       count(*) FILTER (WHERE t.variant = orderexp.assign_variant(t.order_key, '{1,1,2}', :exp)) AS as_assigned,
       count(*) FILTER (WHERE t.close_at - s.created_at::timestamptz
                              = (ARRAY[interval '15 minutes', '30 minutes', '60 minutes'])[t.variant]) AS right_deadline,
       count(*) FILTER (WHERE t.close_at - t.remind_at = interval '10 minutes') AS right_reminder,
       count(*) FILTER (WHERE t.policy_version = :v1 + 2) AS right_version,
       count(DISTINCT t.variant) AS variants
  FROM orderexp.timers t JOIN st.orders s ON s.id = t.order_key::bigint
 WHERE t.order_table = 'st.orders'::regclass AND s.id >= 1000;

-- constructed outcomes of the experiment (hand computation, z = 1.959964):
--   variant 1 (15 min):  30 paid of 100
--     Wilson: p = 0.3, centre (0.3 + z^2/200) / (1 + z^2/100) = 0.30740,
--     half-width z * sqrt(0.3 * 0.7 / 100 + z^2 / 40000) / (1 + z^2/100) = 0.08845
--     -> [0.2189, 0.3958]
--   variant 2 (30 min):  45 paid of 100 -> Wilson [0.3561, 0.5476]
--     pooled (30 + 45) / 200 = 0.375, se = sqrt(0.375 * 0.625 * (1/100 + 1/100)) = 0.068465
--     z = (0.45 - 0.30) / 0.068465 = 2.191, two-sided p = 2 * (1 - Phi(2.191)) = 0.0285
--   variant 3 (60 min):  60 paid of 200 -> Wilson [0.2407, 0.3668]; z = 0, p = 1
-- every arm has at least 10 paid and 10 unpaid: enough_data
-- (each arm's closes in two counted rows, as two batches of the sweep write them)
INSERT INTO orderexp.outcomes (order_table, order_key, outcome, policy_id, policy_version, variant,
							   created_at, close_at, decided_at, reminded, extensions, reopened,
							   order_count)
SELECT 'st.orders', 'e' || v || '-' || i, 'paid',
	   :pol, :v1 + 2, v, now(), now() + interval '1 hour', now(), false, 0, false, 1
  FROM (VALUES (1, 100, 30), (2, 100, 45), (3, 200, 60)) AS a(v, n, paid),
	   generate_series(1, paid) AS i
UNION ALL
SELECT 'st.orders', NULL, 'closed', :pol, :v1 + 2, v, NULL, NULL, now(), NULL, NULL, false, c
  FROM (VALUES (1, 100, 30), (2, 100, 45), (3, 200, 60)) AS a(v, n, paid),
	   LATERAL (VALUES ((n - paid) / 2), (n - paid - (n - paid) / 2)) AS b(c);
SELECT variant, close_after, weight, running, winner, orders, paid, conversion_rate, ci_low, ci_high,
       z_vs_first, p_value, enough_data
  FROM orderexp.experiment_stats WHERE experiment_id = :exp ORDER BY variant;

-- ending it: the winner's close_after becomes the policy's, new orders get it
SELECT orderexp.end_experiment('st.orders', 4, 'shoes');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.end_experiment('st.orders', 2, 'shoes');
SELECT close_after, experiment_id, version - :v1 AS version_offset FROM orderexp.policies WHERE id = :pol;
SELECT running, winner FROM orderexp.experiment_stats WHERE experiment_id = :exp ORDER BY variant;
INSERT INTO st.orders VALUES (2000, 'unpaid', localtimestamp, 'shoes');
SELECT close_at - now() BETWEEN interval '29 minutes' AND interval '30 minutes' AS in_30_minutes,
       variant FROM orderexp.timers
 WHERE order_table = 'st.orders'::regclass AND order_key = '2000';
-- orders of the experiment keep their deadlines
SELECT count(*) FROM orderexp.timers
 WHERE order_table = 'st.orders'::regclass AND variant IS NOT NULL;

-- a hostile operator on the caller's path, before pg_catalog, is not what
-- the statistics divide with (it would be an exact match for the Wilson
-- interval's double precision / bigint if the function followed the path)
CREATE FUNCTION public.hostile_div(double precision, bigint) RETURNS double precision
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hostile operator called by %', current_user; END $$;
CREATE OPERATOR public./ (LEFTARG = double precision, RIGHTARG = bigint, FUNCTION = public.hostile_div);
SET search_path = public, pg_catalog;
SELECT 1.0::double precision / 2::bigint AS hostile_operator_in_reach;
SELECT count(*) AS variants, count(ci_low) AS with_interval
  FROM orderexp.experiment_stats WHERE experiment_id = :exp;
RESET search_path;
DROP OPERATOR public./ (double precision, bigint);
DROP FUNCTION public.hostile_div(double precision, bigint);
