/*
 * bench/sql/partitioned.sql - the data set of bench/partitioned.sh
 *
 * bench.orders as one table (flat) or as 12 monthly range partitions of
 * created_at plus the current and next month (partitioned), with the same
 * rows: n orders over the last 12 months, all paid but for
 *
 *   due    unpaid, created 2 to 3 hours ago: past a 1 hour close_after
 *   idle   unpaid, created in the last 30 minutes: tracked, none due
 *
 * psql variables: layout ('flat' or 'partitioned'), n, due, idle.
 */
CREATE EXTENSION IF NOT EXISTS orderexp;
CREATE SCHEMA bench;

SELECT CASE :'layout' WHEN 'flat' THEN 'PRIMARY KEY (id)'
					  ELSE 'PRIMARY KEY (id, created_at)' END AS pk,
	   CASE :'layout' WHEN 'flat' THEN ''
					  ELSE 'PARTITION BY RANGE (created_at)' END AS partitioning \gset

CREATE TABLE bench.orders (
	id				bigint NOT NULL,
	status			text NOT NULL,
	created_at		timestamptz NOT NULL,
	customer_email	text NOT NULL,
	amount			numeric NOT NULL,
	:pk
) :partitioning;

SELECT :'layout' = 'partitioned' AS partitioned \gset
\if :partitioned
DO $$
DECLARE
	m timestamptz;
BEGIN
	FOR i IN -12 .. 1 LOOP
		m := date_trunc('month', now()) + i * interval '1 month';
		EXECUTE format('CREATE TABLE bench.orders_p%s PARTITION OF bench.orders FOR VALUES FROM (%L) TO (%L)',
					   to_char(m, 'YYYY_MM'), m, m + interval '1 month');
	END LOOP;
END
$$;
\endif

INSERT INTO bench.orders (id, status, created_at, customer_email, amount)
SELECT i, 'paid',
	   now() - interval '365 days' + (i - 1) * ((interval '365 days' - interval '3 hours') / :n),
	   'customer' || i || '@example.com', (i % 1000) + 0.99
  FROM generate_series(1, :n - :due - :idle) AS i;
INSERT INTO bench.orders (id, status, created_at, customer_email, amount)
SELECT :n - :due - :idle + i, 'unpaid',
	   now() - interval '3 hours' + (i - 1) * (interval '1 hour' / :due),
	   'customer' || i || '@example.com', 9.99
  FROM generate_series(1, :due) AS i;
INSERT INTO bench.orders (id, status, created_at, customer_email, amount)
SELECT :n - :idle + i, 'unpaid',
	   now() - interval '30 minutes' + (i - 1) * (interval '30 minutes' / :idle),
	   'customer' || i || '@example.com', 9.99
  FROM generate_series(1, :idle) AS i;

SELECT orderexp.set_close_policy('bench.orders', '1 hour', key_column => 'id',
								 payload_columns => '{customer_email}');
VACUUM ANALYZE;
