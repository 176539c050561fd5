--
-- rotation: delivered events leave the outbox a part at a time (1.3).
--
-- The outbox is partitioned by part: outbox_0 keeps the records of changes
-- and what a rotation kept, pruned by row; the other events go to the
-- current one of the rotating parts outbox_1 to outbox_3.  The pruning
-- (_rotate_outbox(), called by run_due() and the worker) empties the next
-- part with TRUNCATE once it stopped being current longer than the
-- retention ago, after moving to outbox_0 what is not settled before the
-- retention's cut-off; a part whose stream events are not delivered for
-- the retention yet waits.
--
-- No worker runs here.  Time is simulated by setting outbox_parts' and
-- batches' timestamps back.  Nothing printed depends on the clock or on
-- serial ids.
--
\set SHOW_CONTEXT never
CREATE SCHEMA rot;
CREATE TABLE rot.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	email		text,
	phone		text
);

-- the parts: part 1 current, 2 and 3 empty and never current
SELECT part, closed_at IS NULL AS current, closed_at = '-infinity' AS never_current, kept
  FROM orderexp.outbox_parts ORDER BY part;
SELECT orderexp._outbox_part() AS current_part;

-- what goes where: a close on two channels writes its record (the first
-- event) to outbox_0, the event on the second channel and the reminders
-- to the current part
SELECT orderexp.set_close_policy('rot.orders', '1 hour', remind_before => '50 minutes',
								 channels => '{email,sms}') > 0 AS registered;
INSERT INTO rot.orders (id, created_at, email, phone)
VALUES (1, now() - interval '2 hours', 'a@example.com', '+15550001'),
	   (2, now() - interval '20 minutes', 'b@example.com', '+15550002');
SELECT * FROM orderexp.run_due();
SELECT order_key, kind, channel, via, part, tableoid::regclass AS stored_in
  FROM orderexp.outbox WHERE order_table = 'rot.orders'::regclass ORDER BY order_key, id;

-- not yet: the current part has been current for less than the period
SELECT orderexp._rotate_outbox(now(), '1 hour', '0') AS rotated;

-- the part in use by a query of this very session (a cursor on the outbox):
-- TRUNCATE refuses, the rotation leaves it for the next pruning, no error
BEGIN;
DECLARE c CURSOR FOR SELECT 1 AS one FROM orderexp.outbox;
FETCH 1 FROM c;
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS in_use;
COMMIT;
SELECT part FROM orderexp.outbox_parts WHERE closed_at IS NULL;

-- the empty parts 2 and 3 become current in turn; part 1 is not emptied
-- while it stopped being current after the cut-off
BEGIN;
SELECT orderexp._outbox_part() AS this_transactions_part;
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS kept_2;
-- a transaction keeps the part it read (a rotation waits for it by its lock)
SELECT orderexp._outbox_part() AS still_this_transactions_part;
COMMIT;
SELECT orderexp._outbox_part() AS the_next_transactions_part;
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS kept_3;
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS part_1_too_young;
SELECT part, closed_at IS NULL AS current, rotated_at IS NOT NULL AS emptied
  FROM orderexp.outbox_parts ORDER BY part;

-- part 1, closed long ago, holds events of every state
DELETE FROM orderexp.outbox;
UPDATE orderexp.outbox_parts SET closed_at = now() - interval '3 hours' WHERE part = 1;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at, attempts,
							 next_attempt_at, delivered_at, obsolete_at, dead_at, via, txid, part)
VALUES
	('closed', 'rot.orders', 'delivered-old', 'sms', '{}', now() - interval '4 hours', 1,
	 now(), now() - interval '2 hours', NULL, NULL, NULL, NULL, 1),
	('closed', 'rot.orders', 'delivered-young', 'sms', '{}', now() - interval '4 hours', 2,
	 now(), now() - interval '10 minutes', NULL, NULL, NULL, NULL, 1),
	('reminder', 'rot.orders', 'obsolete-old', 'sms', '{}', now() - interval '4 hours', 1,
	 'infinity', NULL, now() - interval '2 hours', NULL, NULL, NULL, 1),
	('closed', 'rot.orders', 'retrying', 'sms', '{}', now() - interval '4 hours', 3,
	 now() + interval '1 minute', NULL, NULL, NULL, NULL, NULL, 1),
	('closed', 'rot.orders', 'dead', 'sms', '{}', now() - interval '4 hours', 10,
	 'infinity', NULL, NULL, now() - interval '2 hours', NULL, NULL, 1),
	('closed', 'rot.orders', 'record', 'email', '{}', now() - interval '4 hours', 1,
	 now(), now() - interval '2 hours', NULL, NULL, 'timeout', NULL, 1);
-- and stream events (txid by its default), in a transaction of their own
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at, part)
SELECT 'closed', 'rot.orders', 'stream-' || g, 'sms', '{}', now() - interval '4 hours', 1
  FROM generate_series(1, 3) g;
CREATE TABLE rot.ids AS SELECT id, order_key FROM orderexp.outbox;
SELECT count(*) AS in_part_1 FROM orderexp.outbox_1;

-- the stream events are not delivered: part 1 waits
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS stream_not_delivered;
SELECT count(*) AS in_part_1 FROM orderexp.outbox_1;

-- delivered, but within the retention: it still waits
SELECT orderexp.finish_batch(orderexp.next_batch(10)) AS delivered;
SELECT orderexp._prune_batches(now() - interval '1 hour', 1000) AS forgotten_deleted;
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS delivered_too_recently;

-- delivered before the cut-off: part 1 is emptied, the events that are not
-- settled before the cut-off move to outbox_0 with their ids and state
UPDATE orderexp.batches SET finished_at = now() - interval '2 hours';
SELECT orderexp._prune_batches(now() - interval '1 hour', 1000) AS forgotten_deleted;
SELECT orderexp._rotate_outbox(now() - interval '1 hour', '0', '0') AS kept;
SELECT count(*) AS in_part_1 FROM orderexp.outbox_1;
SELECT o.order_key, o.part, o.attempts, o.delivered_at IS NOT NULL AS delivered,
	   o.dead_at IS NOT NULL AS dead, o.via, o.id = i.id AS same_id
  FROM orderexp.outbox o JOIN rot.ids i USING (order_key) ORDER BY o.order_key;
SELECT part, closed_at IS NULL AS current, kept FROM orderexp.outbox_parts ORDER BY part;

-- what moved is claimed, acknowledged and requeued as before
UPDATE orderexp.outbox SET next_attempt_at = now() WHERE order_key = 'retrying';
SELECT order_key, attempts FROM orderexp.claim(10, '1 min');
SELECT orderexp.ack(ARRAY(SELECT id FROM orderexp.outbox WHERE order_key = 'retrying')) AS acked;
SELECT orderexp.requeue(ARRAY(SELECT id FROM orderexp.outbox WHERE order_key = 'dead')) AS requeued;

-- run_due() rotates (orderexp.event_retention, the period half of it):
-- part 2 is next, closed long ago and empty
SET orderexp.event_retention = '1h';
UPDATE orderexp.outbox_parts SET opened_at = now() - interval '40 minutes' WHERE part = 1;
UPDATE orderexp.outbox_parts SET closed_at = now() - interval '3 hours' WHERE part = 2;
SELECT * FROM orderexp.run_due();
SELECT part, closed_at IS NULL AS current FROM orderexp.outbox_parts ORDER BY part;
-- and not again before the period has passed
SELECT * FROM orderexp.run_due();
SELECT part FROM orderexp.outbox_parts WHERE closed_at IS NULL;
RESET orderexp.event_retention;

-- a record that forget_before() forgot while its event was in the stream
-- stays in outbox_0 as an event, deleted by the pruning once its batch is
-- settled
DELETE FROM orderexp.outbox;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, via, created_at, part)
VALUES ('cancelled', 'rot.orders', 'forgotten', 'email', '{}', 'operator',
		now() - interval '2 days', 0);
SELECT * FROM orderexp.forget_before(now() - interval '1 day');
SELECT order_key, via, txid IS NOT NULL AS in_stream, part FROM orderexp.outbox;
SELECT orderexp._prune_batches(now() - interval '1 hour', 1000) AS not_delivered_yet;
SELECT orderexp.finish_batch(orderexp.next_batch(10)) AS delivered;
UPDATE orderexp.batches SET finished_at = now() - interval '2 hours' WHERE finished_at > now() - interval '1 minute';
SELECT orderexp._prune_batches(now() - interval '1 hour', 1000) AS deleted;
SELECT count(*) AS left FROM orderexp.outbox;

-- the relay's role reads the outbox and its parts, not more
SET ROLE orderexp_relay;
SELECT count(*) >= 0 AS reads FROM orderexp.outbox_0;
SELECT orderexp._rotate_outbox(now(), '0', '0');
RESET ROLE;

-- clean up
SELECT orderexp.drop_close_policy('rot.orders');
DROP SCHEMA rot CASCADE;
DELETE FROM orderexp.outbox;
DELETE FROM orderexp.batches;
