/*
 * bench/sql/schema.sql - the shop table, the baseline outbox and the
 * helpers every benchmark database gets (run by bench/run.sh with psql).
 *
 * bench.orders is an ordinary application table: a bigint key, a text
 * status, created_at, the customer's e-mail (copied into every event) and an
 * amount.  bench.outbox is the outbox of the baselines (a)-(c), shaped like
 * orderexp.outbox where it matters: bigserial key, kind, order key, jsonb
 * payload, created_at.
 */
CREATE EXTENSION IF NOT EXISTS orderexp;
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
CREATE SCHEMA bench;

CREATE TABLE bench.orders (
	id				bigserial PRIMARY KEY,
	status			text NOT NULL DEFAULT 'unpaid',
	created_at		timestamptz NOT NULL DEFAULT now(),
	customer_email	text NOT NULL DEFAULT 'someone@example.com',
	amount			numeric(10,2) NOT NULL DEFAULT 9.99
);

CREATE TABLE bench.outbox (
	id				bigserial PRIMARY KEY,
	kind			text NOT NULL,
	order_key		text NOT NULL,
	payload			jsonb NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now()
);

/*
 * The drain data set for n expired orders: 3n rows.  The older half (ids
 * 1..1.5n) was created 4 to 2.5 hours ago, the newer half in the last 20
 * minutes; every third row is paid.  With close_after = 1 hour that makes
 * exactly n expired unpaid orders (the older half's unpaid ones), n paid
 * ones and n unpaid ones due 40 to 60 minutes from now.  created_at grows
 * with the id, as in a real table.  n must be even.
 */
CREATE FUNCTION bench.fill_drain(n bigint)
RETURNS bigint
LANGUAGE sql
AS $$
	INSERT INTO bench.orders (id, status, created_at, customer_email, amount)
	SELECT i,
		   CASE WHEN i % 3 = 0 THEN 'paid' ELSE 'unpaid' END,
		   CASE WHEN i <= 3 * n / 2
				THEN now() - interval '4 hours' + (i - 1) * (interval '90 minutes' / (3 * n / 2))
				ELSE now() - interval '20 minutes'
					 + (i - 3 * n / 2 - 1) * (interval '20 minutes' / (3 * n / 2))
		   END,
		   'customer' || i || '@example.com',
		   (i % 1000) + 0.99
	  FROM generate_series(1, 3 * n) AS i;
	SELECT setval('bench.orders_id_seq', 3 * n);
	SELECT count(*) FROM bench.orders
	 WHERE status = 'unpaid' AND created_at < now() - interval '1 hour';
$$;

/*
 * Idle data set: n unpaid orders, all due 50 to 60 minutes from now (with
 * close_after = 1 hour).
 */
CREATE FUNCTION bench.fill_idle(n bigint)
RETURNS bigint
LANGUAGE sql
AS $$
	INSERT INTO bench.orders (id, status, created_at, customer_email, amount)
	SELECT i, 'unpaid',
		   now() - interval '10 minutes' + (i - 1) * (interval '10 minutes' / n),
		   'customer' || i || '@example.com', (i % 1000) + 0.99
	  FROM generate_series(1, n) AS i;
	SELECT setval('bench.orders_id_seq', n);
	SELECT count(*) FROM bench.orders;
$$;

/* (a) the physical limit: one statement closes every expired order */
CREATE FUNCTION bench.close_all()
RETURNS bigint
LANGUAGE sql
AS $$
	WITH c AS (
		UPDATE bench.orders o SET status = 'closed'
		 WHERE o.status = 'unpaid' AND o.created_at < now() - interval '1 hour'
		RETURNING o.id, o.created_at, o.customer_email),
	e AS (
		INSERT INTO bench.outbox (kind, order_key, payload)
		SELECT 'closed', c.id::text,
			   jsonb_build_object('order_table', 'bench.orders', 'order_key', c.id::text,
								  'close_at', c.created_at + interval '1 hour',
								  'reason', 'timeout',
								  'order', jsonb_build_object('customer_email', c.customer_email))
		  FROM c
		RETURNING 1)
	SELECT count(*) FROM e;
$$;

/*
 * (b) what a pg_cron job would run: batches of batch_size, the due orders
 * found through a partial index and locked with SKIP LOCKED, one COMMIT per
 * batch.
 */
CREATE PROCEDURE bench.close_batched(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
	n bigint;
BEGIN
	LOOP
		WITH due AS (
			SELECT o.id FROM bench.orders o
			 WHERE o.status = 'unpaid' AND o.created_at < now() - interval '1 hour'
			 ORDER BY o.created_at
			 LIMIT batch_size
			   FOR UPDATE SKIP LOCKED),
		c AS (
			UPDATE bench.orders o SET status = 'closed'
			  FROM due
			 WHERE o.id = due.id AND o.status = 'unpaid'
			RETURNING o.id, o.created_at, o.customer_email)
		INSERT INTO bench.outbox (kind, order_key, payload)
		SELECT 'closed', c.id::text,
			   jsonb_build_object('order_table', 'bench.orders', 'order_key', c.id::text,
								  'close_at', c.created_at + interval '1 hour',
								  'reason', 'timeout',
								  'order', jsonb_build_object('customer_email', c.customer_email))
		  FROM c;
		GET DIAGNOSTICS n = ROW_COUNT;
		COMMIT;
		EXIT WHEN n < batch_size;
	END LOOP;
END;
$$;

/*
 * Wait, polling every 20 ms in transactions of its own (so that no snapshot
 * is held that would keep the sweep's dead rows alive), until the outbox
 * named holds at least target rows with id > base; error after timeout_s.
 */
CREATE PROCEDURE bench.wait_outbox(outbox regclass, base bigint, target bigint,
								   timeout_s double precision)
LANGUAGE plpgsql
AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout_s * interval '1 second';
	top bigint;
BEGIN
	LOOP
		EXECUTE format('SELECT coalesce(max(id), 0) FROM %s', outbox) INTO top;
		EXIT WHEN top - base >= target;
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'timed out: % of % events after % s', top - base, target, timeout_s;
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.02);
		COMMIT;
	END LOOP;
END;
$$;

/* load every relation of the bench and orderexp schemas into shared buffers */
CREATE FUNCTION bench.prewarm()
RETURNS bigint
LANGUAGE sql
AS $$
	SELECT coalesce(sum(pg_prewarm(c.oid)), 0)
	  FROM pg_class c
	  JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname IN ('bench', 'orderexp') AND c.relkind IN ('r', 'i', 'm', 't');
$$;
