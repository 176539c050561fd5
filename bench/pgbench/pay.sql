-- The payment alone: each transaction pays the next unpaid order (a
-- sequence hands out the ids, so every update is a real unpaid -> paid
-- transition and fires the outcome trigger when the table is registered).
WITH n AS MATERIALIZED (SELECT nextval('bench.pay_seq') AS id)
UPDATE bench.orders o SET status = 'paid' FROM n WHERE o.id = n.id AND o.status = 'unpaid';
