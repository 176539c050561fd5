-- (c) one transaction per order, as a job-per-order queue closes them:
-- take the next due order (partial index, SKIP LOCKED), close it and write
-- its event; the statement is its own transaction.
WITH due AS (
	SELECT o.id FROM bench.orders o
	 WHERE o.status = 'unpaid' AND o.created_at < now() - interval '1 hour'
	 ORDER BY o.created_at
	 LIMIT 1
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
