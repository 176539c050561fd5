-- Experiment variants: the assignment of orders to variants is a pure
-- function of the key and the experiment (stable across calls, sessions and
-- the two code paths, the C timer trigger and set_close_policy's tracking
-- of existing rows), spreads 10,000 keys by the weights, and shuffles the
-- keys afresh for a new experiment.  The outcome trigger records the variant
-- with the payment.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(14);

SELECT has_table('orderexp', 'experiments', 'table orderexp.experiments');
SELECT has_function('orderexp', 'assign_variant', ARRAY['text', 'integer[]', 'bigint'],
                    'function orderexp.assign_variant(text, integer[], bigint)');
SELECT has_view('orderexp', 'experiment_stats', 'view orderexp.experiment_stats');

-- spread: 10,000 keys, weights 1:1:2.  Expected 2,500 / 2,500 / 5,000; the
-- standard deviation of a count is sqrt(10000 * p * (1 - p)): 43.3 for
-- p = 1/4 and 50 for p = 1/2.  Tolerance 200, more than 4 standard
-- deviations: a correct hash fails this about once in 100,000 runs, and the
-- keys are fixed, so the outcome is the same on every run.
CREATE TEMP TABLE spread AS
SELECT v, count(*) AS n
  FROM (SELECT orderexp.assign_variant(g::text, '{1,1,2}', 42) AS v
		  FROM generate_series(1, 10000) g) a
 GROUP BY v;
SELECT results_eq('SELECT v FROM spread ORDER BY v', ARRAY[1, 2, 3],
                  'every variant gets keys, and no other variant appears');
SELECT ok((SELECT bool_and(abs(n - CASE v WHEN 3 THEN 5000 ELSE 2500 END) <= 200) FROM spread),
          'the counts follow the weights 1:1:2 within 200 of 2500/2500/5000: ' ||
          (SELECT string_agg(n::text, '/' ORDER BY v) FROM spread));

-- stable: the same key and experiment, the same variant, every time
SELECT is((SELECT count(*) FROM generate_series(1, 10000) g
            WHERE orderexp.assign_variant(g::text, '{1,1,2}', 42)
                  <> orderexp.assign_variant(g::text, '{1,1,2}', 42)),
          0::bigint, 'assignment is stable across calls');
-- and across sessions and servers: fixed expectations for a few keys (the
-- hash is PostgreSQL's hash_bytes_extended, like hash partitioning: the
-- same on every machine of one byte order; these are little-endian values)
SELECT is(ARRAY(SELECT orderexp.assign_variant(k, '{1,1,2}', 42)
                  FROM unnest(ARRAY['1', '2', '3', 'order-17', 'c0ffee', 'x', 'y', 'z']) k),
          ARRAY[1, 2, 2, 1, 1, 1, 2, 3],
          'assignment of fixed keys is what it always was');

-- a new experiment shuffles: about half the keys (with weights 1:1:2,
-- P(same) = 1/16 + 1/16 + 1/4 = 0.375) keep their variant, not all
SELECT ok((SELECT count(*) FROM generate_series(1, 10000) g
            WHERE orderexp.assign_variant(g::text, '{1,1,2}', 42)
                  = orderexp.assign_variant(g::text, '{1,1,2}', 43)) BETWEEN 3550 AND 3950,
          'another experiment assigns the keys independently (3,750 expected the same)');

SELECT throws_ok($$SELECT orderexp.assign_variant('1', '{1,0}', 1)$$, '22023', NULL,
                 'a weight of zero is refused');
SELECT throws_ok($$SELECT orderexp.assign_variant('1', '{}', 1)$$, '22023', NULL,
                 'no weights are refused');

-- both code paths agree: the C trigger for new orders, SQL for existing ones
CREATE SCHEMA pgtap_var;
CREATE TABLE pgtap_var.orders (id bigint PRIMARY KEY, status text NOT NULL,
                               created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE pgtap_var.other (id bigint PRIMARY KEY, status text NOT NULL,
                              created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('pgtap_var.orders', '1 hour');
SELECT orderexp.start_experiment('pgtap_var.orders', '{20 minutes, 40 minutes, 60 minutes}', '{1,1,2}') AS exp \gset
INSERT INTO pgtap_var.orders SELECT g, 'unpaid' FROM generate_series(1, 300) g;
SELECT is((SELECT count(*) FROM orderexp.timers t
            WHERE t.order_table = 'pgtap_var.orders'::regclass
              AND t.variant = orderexp.assign_variant(t.order_key, '{1,1,2}', :exp)
              AND t.close_at = now() + (ARRAY[interval '20 minutes', '40 minutes', '60 minutes'])[t.variant]),
          300::bigint, 'the timer trigger gives each new order the assigned variant and its deadline');

-- rows tracked in SQL (_track_existing) get their variant there: same
-- assignment
ALTER TABLE pgtap_var.other ADD COLUMN cat text;
INSERT INTO pgtap_var.other SELECT g, 'unpaid', now(), 'x' FROM generate_series(1, 100) g;
SELECT orderexp.set_close_policy('pgtap_var.other', '1 hour', category_column => 'cat');
SELECT orderexp.start_experiment('pgtap_var.other', '{20 minutes, 40 minutes}') AS exp2 \gset
-- category x takes its orders over, then is dropped: they fall back to the
-- default policy and are tracked anew, under its experiment
SELECT orderexp.set_close_policy('pgtap_var.other', '1 hour', category => 'x');
SELECT orderexp.drop_close_policy('pgtap_var.other', 'x');
SELECT is((SELECT count(*) FROM orderexp.timers t
            WHERE t.order_table = 'pgtap_var.other'::regclass
              AND t.variant = orderexp.assign_variant(t.order_key, '{1,1}', :exp2)
              AND t.close_at = now() + (ARRAY[interval '20 minutes', '40 minutes'])[t.variant]),
          100::bigint, 'rows tracked in SQL get the same assignment and deadline');

-- the payment records the variant; a paid order counts for its variant
UPDATE pgtap_var.orders SET status = 'paid' WHERE id <= 30;
SELECT is((SELECT count(*) FROM orderexp.outcomes o
             JOIN orderexp.timers t USING (order_table, order_key)
            WHERE o.order_table = 'pgtap_var.orders'::regclass AND o.variant = t.variant
              AND o.outcome = 'paid'),
          30::bigint, 'outcomes carry the variant of their timer');
SELECT is((SELECT sum(paid) FROM orderexp.experiment_stats WHERE experiment_id = :exp),
          30::numeric, 'experiment_stats counts them');

SELECT * FROM finish();
ROLLBACK;
