/*
 * bench/sql/timerless.sql - a design study, not orderexp's code: what a
 * close would cost if an order whose deadline is just created_at +
 * close_after had no timer row (issue 21; docs/performance.md).
 *
 * bench/instructions.sh loads this into a copy of the registered drain
 * database (figure (f)), after deleting the timers and creating the partial
 * index a pg_cron user keeps.  bench.timerless_drain() closes every due
 * order in batches of 1,000 with the four statements such a sweep would
 * run: the due orders through the partial index (as the table's owner),
 * those without a timer row of their own (as the extension owner), the
 * orders statement of today's close batch unchanged (lock SKIP LOCKED and
 * the guarded update, as the owner), and the record statement without the
 * timer's probe and delete (events, records, outcomes counted per batch).
 * The statements are written for bench.orders and its registration
 * ('1 hour', channel email, payload customer_email, policy 1 version 1);
 * roles are not switched, which costs a few hundred instructions a batch.
 */
CREATE INDEX orders_unpaid_due ON bench.orders (created_at) WHERE status = 'unpaid';
DELETE FROM orderexp.timers;

CREATE FUNCTION bench.timerless_drain() RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
	wm_at timestamptz := '-infinity';
	wm_id bigint := 0;
	cand text[];
	keys text[];
	n bigint;
	m bigint;
	total bigint := 0;
	cutoff timestamptz := now() - interval '1 hour';
	res record;
BEGIN
	LOOP
		/* S1, as the owner: candidates through the partial index */
		WITH c AS MATERIALIZED (
			SELECT o.id, o.created_at FROM bench.orders o
			 WHERE o.status = 'unpaid' AND o.created_at <= cutoff
			   AND o.created_at >= wm_at AND (o.created_at, o.id) > (wm_at, wm_id)
			 ORDER BY o.created_at LIMIT 1000)
		SELECT ARRAY(SELECT c.id::text FROM c), (SELECT count(*) FROM c),
			   l.created_at, l.id
		  INTO cand, n, wm_at, wm_id
		  FROM (SELECT NULL) one LEFT JOIN (SELECT * FROM c ORDER BY created_at DESC, id DESC LIMIT 1) l ON true;
		EXIT WHEN n = 0;
		/* S2, as the extension owner: orders with a deadline of their own are not plain */
		keys := ARRAY(SELECT k FROM unnest(cand) k
					   WHERE NOT EXISTS (SELECT 1 FROM orderexp.timers t
										  WHERE t.order_table = 'bench.orders'::regclass AND t.order_key = k));
		/* S3, as the owner: the orders statement as today */
		WITH mine AS MATERIALIZED (
			SELECT o.id::text AS order_key, (o.status IS NOT DISTINCT FROM 'unpaid'::text) AS unpaid
			  FROM bench.orders o
			 WHERE o.id = ANY (ARRAY(SELECT k::bigint FROM unnest(keys) AS k))
			   FOR UPDATE OF o SKIP LOCKED),
		missing AS MATERIALIZED (
			SELECT k AS order_key FROM unnest(keys) AS k
			EXCEPT
			SELECT m.order_key FROM mine m),
		busy AS MATERIALIZED (
			SELECT x.order_key
			  FROM missing x
			 WHERE (SELECT true FROM bench.orders o WHERE o.id = x.order_key::bigint LIMIT 1)),
		rows AS (
			UPDATE bench.orders o SET status = 'closed'::text
			 WHERE o.id = ANY (ARRAY(SELECT m.order_key::bigint FROM mine m WHERE m.unpaid))
			   AND o.status = 'unpaid'::text
			RETURNING o.id::text AS order_key, true AS unpaid, jsonb_build_object('customer_email', o.customer_email) AS cols, NULL::text AS category,
					  o.created_at::timestamptz AS created_at)
		SELECT ARRAY(SELECT b.order_key FROM busy b) AS busy, r.keys, r.unpaid, r.cols, r.categories,
			   r.created
		  INTO res
		  FROM (SELECT array_agg(x.order_key) AS keys, array_agg(x.unpaid) AS unpaid,
					   array_agg(x.cols) AS cols, array_agg(x.category) AS categories,
					   array_agg(x.created_at) AS created
				  FROM rows x) AS r;
		/* S4, as the extension owner: events and outcomes, no timer */
		WITH done AS MATERIALIZED (
			SELECT c.order_key, c.cols, c.category, c.created + interval '1 hour' AS close_at
			  FROM unnest(res.keys, res.cols, res.categories, res.created) AS c(order_key, cols, category, created)),
		events AS (
			INSERT INTO orderexp.outbox (id, kind, order_table, order_key, channel, payload, via,
										 policy_id, policy_version, variant, deadline, event_ids)
			SELECT nextval('orderexp.outbox_id_seq'), 'closed', 'bench.orders'::regclass, x.order_key, ch.channel,
				   orderexp._closed_payload('bench.orders', x.order_key, x.close_at, 1,
											x.category, x.cols),
				   CASE WHEN ch.n = 1 THEN 'timeout' END,
				   CASE WHEN ch.n = 1 THEN 1 END, CASE WHEN ch.n = 1 THEN 1 END,
				   NULL, CASE WHEN ch.n = 1 THEN x.close_at END,
				   NULL::bigint[]
			  FROM done x
			 CROSS JOIN unnest('{email}'::text[]) WITH ORDINALITY AS ch(channel, n)),
		outcome AS (
			INSERT INTO orderexp.outcomes (order_table, outcome, status, policy_id, policy_version,
										   variant, decided_at, reopened, order_count)
			SELECT 'bench.orders'::regclass, 'closed', 'closed', 1, 1, NULL, now(), false, count(*)
			  FROM done x HAVING count(*) > 0)
		SELECT count(*) INTO m FROM done;
		total := total + m;
	END LOOP;
	RETURN total;
END
$f$;
