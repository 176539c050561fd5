-- The application's own work: place an order, then pay one of the thousand
-- most recent orders (any client's) with the guarded update.
-- Two transactions (autocommit) per pgbench transaction.
\set back random(0, 999)
INSERT INTO bench.orders (customer_email, amount) VALUES ('client' || :client_id || '@example.com', 19.99) RETURNING id \gset
UPDATE bench.orders SET status = 'paid' WHERE id = :id - :back AND status = 'unpaid';
