--
-- withheld: a reminder announces a deadline to the customer of an unpaid
-- order, so claim() never hands out one whose order is no longer unpaid,
-- whose deadline moved (extended) or passed, or whose order is no longer
-- tracked; it settles it as obsolete with the reason, an audit row shows it
-- in history(), and delivery_stats and delivery_health count it.  Events of
-- one order on one channel go out in the order they were made: a later one
-- waits while an earlier one is out or waiting for a retry.  Obsolete rows
-- are pruned like delivered ones.
--
\set SHOW_CONTEXT never
CREATE SCHEMA wh;
CREATE TABLE wh.orders (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
						created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('wh.orders', '1 hour', remind_before => '50 minutes',
								 extend_by => '30 minutes', max_extensions => 3,
								 channels => '{wh_mail}') > 0 AS registered;
-- reminders due: created 15 minutes ago, remind at +10 minutes, close at +60
INSERT INTO wh.orders (id, created_at)
SELECT g, now() - interval '15 minutes' FROM generate_series(1, 6) g;
SELECT reminded, closed FROM orderexp.run_due();

-- the relay claims the six reminders; every delivery fails for now (451)
SELECT count(*) AS claimed FROM orderexp.claim(100, '1 min', kinds => '{reminder}', channels => '{wh_mail}');
SELECT count(*) FILTER (WHERE orderexp.fail(o.id, 'smtp 451 try later') IS NOT NULL) AS retrying
  FROM orderexp.outbox o JOIN wh.orders w ON w.id::text = o.order_key
 WHERE o.order_table = 'wh.orders'::regclass;

-- meanwhile: 1 is paid, 2 is cancelled, 3 is extended, 4's deadline passes
-- (its timer and its reminder are moved back, as if an hour went by), 5 is
-- closed and swept (no timer), 6 stays as it was
UPDATE wh.orders SET status = 'paid' WHERE id = 1;
SELECT orderexp.cancel_order('wh.orders', 2, 'changed my mind');
SELECT orderexp.extend_order('wh.orders', 3, '30 minutes') > now() AS extended;
UPDATE orderexp.timers SET close_at = now() - interval '1 s'
 WHERE order_table = 'wh.orders'::regclass AND order_key = '4';
UPDATE orderexp.outbox SET payload = jsonb_set(payload, '{close_at}', to_jsonb(now() - interval '1 s'))
 WHERE order_table = 'wh.orders'::regclass AND order_key = '4' AND kind = 'reminder';
DELETE FROM orderexp.timers WHERE order_table = 'wh.orders'::regclass AND order_key = '5';

-- the retries come due: only 6's reminder goes out, with the events of the
-- cancel and the extension, which the withheld reminders no longer hold back
UPDATE orderexp.outbox SET next_attempt_at = now() - interval '1 s'
 WHERE order_table = 'wh.orders'::regclass AND kind = 'reminder';
SELECT kind, order_key, attempts FROM orderexp.claim(100, '1 min', channels => '{wh_mail}')
 ORDER BY order_key, kind;
SELECT order_key, obsolete_at IS NOT NULL AS obsolete, next_attempt_at = 'infinity' AS never_again,
	   leased_until IS NULL AS no_lease, attempts,
	   regexp_replace(last_error, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', '<new deadline> UTC') AS last_error
  FROM orderexp.outbox
 WHERE order_table = 'wh.orders'::regclass AND kind = 'reminder' ORDER BY order_key;
-- never claimed again
SELECT count(*) AS claimed_again FROM orderexp.claim(100, '1 min', kinds => '{reminder}', channels => '{wh_mail}');
-- history() shows it
SELECT action, via, reason, cardinality(event_ids) AS events, delivered
  FROM orderexp.history('wh.orders', 1);
SELECT action, regexp_replace(reason, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', '<new deadline> UTC') AS reason
  FROM orderexp.history('wh.orders', 3) ORDER BY id;
-- delivery_stats and delivery_health count them
SELECT kind, channel, pending, leased, retrying, delivered, dead, obsolete
  FROM orderexp.delivery_stats WHERE channel = 'wh_mail' ORDER BY kind;
SELECT period, kind, made, obsolete, dead
  FROM orderexp.delivery_health WHERE channel = 'wh_mail' ORDER BY period, kind;

--
-- order: a later event of an order on a channel waits while an earlier one
-- is out or waiting for a retry, for at most a second at a time; an
-- earlier reminder that no longer matters is withheld at once instead
--
INSERT INTO wh.orders (id, created_at) VALUES (7, now() - interval '15 minutes'),
	(8, now() - interval '15 minutes');
SELECT reminded, closed FROM orderexp.run_due();		-- and 4 closes
SELECT max(id) AS r7 FROM orderexp.outbox WHERE order_table = 'wh.orders'::regclass AND order_key = '7' \gset
SELECT max(id) AS r8 FROM orderexp.outbox WHERE order_table = 'wh.orders'::regclass AND order_key = '8' \gset
SELECT count(*) FROM orderexp.claim(100, '1 min', kinds => '{reminder}', channels => '{wh_mail}');
SELECT orderexp.fail(:r7, 'smtp 451') > now() AS retry_later;
SELECT orderexp.ack(ARRAY[:r8]) AS delivered;
-- 7: a staff cancel while the reminder waits for its retry: the cancel goes
-- out now, and the reminder, which would announce a deadline that no longer
-- is, is withheld now rather than at its retry
SELECT orderexp.cancel_order('wh.orders', 7, 'out of stock');
SELECT kind, order_key FROM orderexp.claim(100, '1 min', kinds => '{cancelled}', channels => '{wh_mail}');
SELECT kind, obsolete_at IS NOT NULL AS obsolete, last_error, attempts
  FROM orderexp.outbox_state WHERE order_table = 'wh.orders'::regclass AND order_key = '7' ORDER BY id;
-- 8: the shop extends, the extension's message fails for now; then the shop
-- cancels: the cancel waits for the extension's message, which is still
-- true and goes out first
SELECT orderexp.extend_order('wh.orders', 8, '10 minutes') > now() AS extended;
SELECT max(id) AS x8 FROM orderexp.outbox WHERE order_table = 'wh.orders'::regclass AND order_key = '8' \gset
SELECT kind FROM orderexp.claim(100, '1 min', kinds => '{extended}', channels => '{wh_mail}');
SELECT orderexp.fail(:x8, 'smtp 451') > now() AS retry_later;
SELECT orderexp.cancel_order('wh.orders', 8, 'out of stock');
SELECT count(*) AS cancel_handed_out FROM orderexp.claim(100, '1 min', kinds => '{cancelled}', channels => '{wh_mail}');
SELECT kind, next_attempt_at > now() AND next_attempt_at <= now() + interval '1 s' AS held_back_a_second,
	   attempts
  FROM orderexp.outbox WHERE order_table = 'wh.orders'::regclass AND order_key = '8' AND id >= :x8 ORDER BY id;
-- the extension's retry comes due: both go out, in the order they were made
UPDATE orderexp.outbox SET next_attempt_at = now() - interval '1 s'
 WHERE order_table = 'wh.orders'::regclass AND order_key = '8' AND id >= :x8;
SELECT kind, order_key FROM orderexp.claim(100, '1 min', kinds => '{extended,cancelled}', channels => '{wh_mail}')
 ORDER BY id;

-- a relay that delivered a reminder late after all (its lease ran out and
-- claim() withheld the row meanwhile) acks it: delivered, not obsolete
UPDATE orderexp.outbox SET claimed_by = session_user WHERE id = :r7;
SELECT orderexp.ack(ARRAY[:r7]) AS late_ack;
SELECT delivered_at IS NOT NULL AS delivered, obsolete_at IS NULL AS not_obsolete
  FROM orderexp.outbox WHERE id = :r7;

--
-- pruning: obsolete rows older than the retention go, like delivered ones,
-- by row from outbox_0 (where a rotation keeps them; the rotating parts
-- are emptied whole: regress rotation)
--
SET orderexp.event_retention = '1h';
UPDATE orderexp.outbox SET part = 0
 WHERE order_table = 'wh.orders'::regclass AND obsolete_at IS NOT NULL;
UPDATE orderexp.outbox SET obsolete_at = now() - interval '2 hours'
 WHERE order_table = 'wh.orders'::regclass AND order_key IN ('1', '2') AND kind = 'reminder';
SELECT count(*) AS before FROM orderexp.outbox
 WHERE order_table = 'wh.orders'::regclass AND obsolete_at IS NOT NULL;
SELECT * FROM orderexp.run_due();
SELECT order_key FROM orderexp.outbox
 WHERE order_table = 'wh.orders'::regclass AND obsolete_at IS NOT NULL ORDER BY order_key;
RESET orderexp.event_retention;

-- clean up
SELECT orderexp.drop_close_policy('wh.orders') IS NOT NULL AS dropped;
DELETE FROM orderexp.outbox WHERE order_table = 'wh.orders'::regclass;
DELETE FROM orderexp.audit WHERE order_table = 'wh.orders'::regclass;
DELETE FROM orderexp.outcomes WHERE order_table = 'wh.orders'::regclass;
DROP SCHEMA wh CASCADE;
