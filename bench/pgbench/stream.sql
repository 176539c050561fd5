-- Lateness load: a new unpaid order; every even-numbered order is paid when
-- the order :lag places later arrives (a fraction of a second later, well
-- before its deadline), so about half of the orders are paid and the other
-- half close at their deadline.
INSERT INTO bench.orders (customer_email) VALUES ('stream@example.com') RETURNING id \gset
\if :id % 2 = 0
UPDATE bench.orders SET status = 'paid' WHERE id = :id - :lag AND status = 'unpaid';
\endif
