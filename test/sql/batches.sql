--
-- batches: events delivered a batch at a time (1.3, issue 22): next_batch,
-- get_batch_events, finish_batch; claim, ack and fail over the same
-- batches; a failure inside a batch; an expired batch that comes back and
-- one that dies; events that wait for an earlier one of their order;
-- partial acks; the derived state (outbox_state, delivery_stats); bad
-- input.
--
-- Runs in a database of its own, so that the outbox holds only the rows
-- made here.  Events go into the stream while orderexp.batch_delivery is
-- on (the default; this session's setting: the default of outbox.txid
-- reads it).
--
\set SHOW_CONTEXT never
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
CREATE DATABASE orderexp_batches;
\c orderexp_batches
CREATE EXTENSION orderexp;
SET client_min_messages = warning;
CREATE TABLE shop_orders (id bigint PRIMARY KEY, status text, created_at timestamptz);
CREATE ROLE regress_batch_other IN ROLE orderexp_relay;
CREATE ROLE regress_batch_nobody;

-- n events of their own orders (keys from k0 on), on a channel
CREATE FUNCTION ev(n int, k0 int DEFAULT 1, ch text DEFAULT 'email')
RETURNS SETOF bigint LANGUAGE sql AS $$
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'closed', 'shop_orders', (k0 + g - 1)::text, ch, jsonb_build_object('n', g)
	  FROM generate_series(1, n) g
	RETURNING id
$$;
-- the index blocks of outbox_stream read so far in the part that holds this
-- test's events (the current one), as the statistics have them once flushed
CREATE FUNCTION stream_blocks()
RETURNS bigint LANGUAGE sql AS $$
	SELECT idx_blks_hit + idx_blks_read FROM pg_statio_user_indexes
	 WHERE indexrelid = ('orderexp.outbox_' || orderexp._outbox_part() || '_stream')::regclass
$$;
-- the state of each event, as outbox_state derives it
CREATE FUNCTION st()
RETURNS TABLE (id bigint, stream boolean, batch bigint, attempts int, leased boolean,
			   delivered boolean, dead boolean, retrying boolean, last_error text)
LANGUAGE sql AS $$
	SELECT o.id, o.txid IS NOT NULL, o.batch_id, o.attempts, o.leased_until > clock_timestamp(),
		   o.delivered_at IS NOT NULL, o.dead_at IS NOT NULL,
		   o.delivered_at IS NULL AND o.dead_at IS NULL AND o.leased_until IS NULL
			   AND o.next_attempt_at > clock_timestamp(),
		   o.last_error
	  FROM orderexp.outbox_state o WHERE o.channel IS NOT NULL ORDER BY o.id
$$;

SHOW orderexp.batch_delivery;			-- on by default
-- off: events are rows as before, and next_batch hands them out as a batch of rows
SET orderexp.batch_delivery = off;
SELECT count(*) FROM ev(3);
SELECT count(*) FILTER (WHERE txid IS NULL) AS rows FROM orderexp.outbox;
SELECT orderexp.next_batch(10) AS b \gset
SELECT id, attempts, claimed_by = session_user AS mine FROM orderexp.get_batch_events(:b);
SELECT row_ids IS NOT NULL AS batch_of_rows FROM orderexp.batches WHERE id = :b;
SELECT orderexp.finish_batch(:b) AS delivered;
SELECT orderexp.finish_batch(:b) AS again;
SELECT orderexp.next_batch(10) IS NULL AS nothing_due;
DELETE FROM orderexp.outbox;

--
-- the stream: a batch row per batch, no write to the events
--
SET orderexp.batch_delivery = on;
SELECT count(*) FROM ev(25);
SELECT count(*) FILTER (WHERE txid IS NOT NULL) AS stream FROM orderexp.outbox;
SELECT orderexp.next_batch(10) AS b1 \gset
SELECT count(*), min(id) = (SELECT min(id) FROM orderexp.outbox) AS oldest_first,
	   bool_and(attempts = 1) AS attempt_counted, bool_and(leased_until > now()) AS leased
  FROM orderexp.get_batch_events(:b1);
-- the events themselves are untouched: attempts 0, no lease in the table
SELECT count(*) FILTER (WHERE attempts = 0 AND leased_until IS NULL) AS untouched FROM orderexp.outbox;
SELECT stream, batch IS NOT NULL AS in_batch, attempts, leased, count(*)
  FROM st() GROUP BY 1, 2, 3, 4 ORDER BY 2 DESC;
-- a failure inside the batch: only that event leaves the stream and is retried
SELECT min(id) AS failed FROM orderexp.get_batch_events(:b1) \gset
SELECT orderexp.fail(:failed, 'mailbox full') > now() AS retry_later;
SELECT orderexp.finish_batch(:b1) AS delivered;
SELECT * FROM st() WHERE id = :failed;
SELECT pending, leased, retrying, delivered, dead FROM orderexp.delivery_stats;
-- fail() on a delivered event, on one not handed out
SELECT orderexp.fail(:failed + 1, 'late');
\echo :SQLSTATE
SELECT orderexp.fail(:failed + 20, 'too early');
\echo :SQLSTATE

--
-- two batches out at once: no event in both; finish_batch of another
-- role's batch is refused
--
SELECT orderexp.next_batch(5) AS b2 \gset
SELECT orderexp.next_batch(5) AS b3 \gset
SELECT count(*) AS overlap FROM orderexp.get_batch_events(:b2) x
  JOIN orderexp.get_batch_events(:b3) y USING (id);
SET SESSION AUTHORIZATION regress_batch_other;
SELECT orderexp.finish_batch(:b2);
\echo :SQLSTATE
SELECT count(*) FROM orderexp.get_batch_events(:b2);
\echo :SQLSTATE
RESET SESSION AUTHORIZATION;
SET orderexp.batch_delivery = on;

--
-- a relay that dies: its batch comes back, whole, after the lease, as the
-- next attempt; out of attempts, its events die
--
UPDATE orderexp.batches SET leased_until = now() - interval '1 s' WHERE id = :b2;
SELECT orderexp.next_batch(10) = :b2 AS came_back;
SELECT attempts, leased_until > now() AS leased FROM orderexp.batches WHERE id = :b2;
SELECT count(*), bool_and(attempts = 2) AS second_attempt FROM orderexp.get_batch_events(:b2);
SET orderexp.max_attempts = 2;
UPDATE orderexp.batches SET leased_until = now() - interval '1 s' WHERE id = :b2;
-- the next batch is a new one: the expired one died
SELECT orderexp.next_batch(10) AS b4 \gset
SELECT :b4 > :b3 AS new_batch, dead_at IS NOT NULL AS batch_dead,
	   finished_at IS NOT NULL AS settled
  FROM orderexp.batches WHERE id = :b2;
SELECT count(*) AS dead_letters, min(last_error) FROM orderexp.dead_letters;
SELECT count(*) AS dead FROM st() WHERE dead AND NOT stream;
RESET orderexp.max_attempts;
SELECT orderexp.finish_batch(:b3) AS delivered_b3, orderexp.finish_batch(:b4) AS delivered_b4;
SELECT orderexp.next_batch(10) IS NULL AS all_cut;

--
-- claim() and ack() of relays up to 1.2 over the stream: all of a batch
-- acked finishes it; a partial ack leaves the rest to come back
--
SELECT count(*) FROM ev(4, 100);
SELECT array_agg(id ORDER BY id) AS ids, count(*) AS n FROM orderexp.claim(100) \gset
SELECT :n AS claimed, orderexp.ack(:'ids') AS acked;
SELECT finished_at IS NOT NULL AS finished FROM orderexp.batches ORDER BY id DESC LIMIT 1;
SELECT orderexp.ack(:'ids') AS acked_again;
SELECT count(*) FROM ev(4, 200);
SELECT array_agg(id ORDER BY id) AS ids FROM orderexp.claim(100) \gset
-- the first two acked: they become a finished batch of their own (no
-- write to the events); the last acked apart: it leaves the stream
SELECT orderexp.ack((:'ids'::bigint[])[1:2]) AS acked_two;
SELECT orderexp.ack(ARRAY[(:'ids'::bigint[])[4]]) AS acked_last;
SELECT id - (:'ids'::bigint[])[1] AS n, stream, delivered, leased FROM st()
 WHERE id = ANY (:'ids'::bigint[]);
SELECT count(*) FILTER (WHERE finished_at IS NOT NULL) AS finished,
	   count(*) FILTER (WHERE finished_at IS NULL) AS open
  FROM orderexp.batches WHERE id > :b3;
-- another role acks nothing of it
SET SESSION AUTHORIZATION regress_batch_other;
SELECT orderexp.ack(:'ids') AS acked_by_other;
RESET SESSION AUTHORIZATION;
SET orderexp.batch_delivery = on;
UPDATE orderexp.batches SET leased_until = now() - interval '1 s'
 WHERE finished_at IS NULL;
SELECT array_agg(id - (:'ids'::bigint[])[1] ORDER BY id) AS back, min(attempts) AS attempt
  FROM orderexp.claim(100);
SELECT orderexp.ack(:'ids') AS acked_rest;
-- claim() with channels: the events of the batch it does not want become
-- rows, claimable at once by a claim that wants them
SELECT count(*) FROM orderexp.batches WHERE finished_at IS NULL AND hi_snap IS NOT NULL;
SELECT count(*) FROM ev(2, 300, 'sms');
SELECT count(*) FROM ev(2, 400, 'email');
SELECT channel, count(*) FROM orderexp.claim(100, channels => '{sms}') GROUP BY 1;
SELECT channel, count(*), min(attempts) FROM orderexp.claim(100, channels => '{email}') GROUP BY 1;
SELECT count(*) FILTER (WHERE stream) AS stream, count(*) FILTER (WHERE NOT stream) AS rows
  FROM st() WHERE leased;
-- a filtered claim goes on past batches with nothing it wants: the one
-- email event behind 60 sms events comes out of a single claim(5), and the
-- sms events are rows, due at once for a claim that wants them
SELECT count(*) FROM ev(60, 500, 'sms');
SELECT count(*) FROM ev(1, 600, 'email');
SELECT order_key, channel FROM orderexp.claim(5, '1 min', channels => '{email}');
SELECT count(*) AS sms_rows FROM orderexp.outbox
 WHERE channel = 'sms' AND order_key::int BETWEEN 500 AND 559 AND txid IS NULL
   AND next_attempt_at <= now() AND leased_until IS NULL;
UPDATE orderexp.outbox SET delivered_at = now()
 WHERE channel = 'sms' AND order_key::int BETWEEN 500 AND 559;

--
-- an event waits while an earlier one of its order and channel is retrying
--
SELECT orderexp.finish_batch(id) FROM orderexp.batches WHERE finished_at IS NULL AND hi_snap IS NULL;
DELETE FROM orderexp.outbox; DELETE FROM orderexp.batches;
SELECT count(*) FROM ev(1, 500);
SELECT orderexp.next_batch(10) AS b \gset
SELECT id AS first FROM orderexp.get_batch_events(:b) \gset
SELECT orderexp.fail(:first, 'timeout') IS NOT NULL AS retrying;
SELECT orderexp.finish_batch(:b);
SELECT count(*) FROM ev(1, 500);
SELECT count(*) FROM ev(1, 501);
SELECT orderexp.next_batch(10) AS b \gset
SELECT order_key FROM orderexp.get_batch_events(:b);
SELECT o.order_key, s.stream, s.attempts, s.retrying
  FROM st() s JOIN orderexp.outbox o USING (id)
 WHERE o.order_key = '500' ORDER BY s.id;

--
-- an event claimed one by one (a row out of the stream) waits too while an
-- earlier one of its order and channel is out in another relay's batch, and
-- goes out once that batch is finished
--
SELECT orderexp.finish_batch(id) FROM orderexp.batches WHERE finished_at IS NULL;
DELETE FROM orderexp.outbox; DELETE FROM orderexp.batches;
SELECT max(x) AS first FROM ev(1, 550) x \gset
SET SESSION AUTHORIZATION regress_batch_other;
SELECT orderexp.next_batch(10) AS b_other \gset
RESET SESSION AUTHORIZATION;
SET orderexp.batch_delivery = on;
SELECT max(x) AS second FROM ev(1, 550) x \gset
SELECT count(*) FROM ev(1, 551);
-- cut into the next batch, the second event of order 550 leaves it to wait
SELECT orderexp.next_batch(10) AS b \gset
SELECT order_key FROM orderexp.get_batch_events(:b);
SELECT orderexp.finish_batch(:b);
SELECT s.stream, s.batch IS NOT NULL AS in_batch, s.leased, s.retrying
  FROM st() s WHERE s.id = :second;
-- its wait (a second at most) over, a claim still holds it back: the first
-- is still out
UPDATE orderexp.outbox SET next_attempt_at = now() - interval '1 s' WHERE id = :second;
SELECT count(*) AS handed_out FROM orderexp.claim(10, '1 min');
SELECT next_attempt_at > now() AND next_attempt_at <= now() + interval '1 s' AS held_back_a_second,
	   attempts
  FROM orderexp.outbox WHERE id = :second;
-- the other relay delivers the first: the second goes out
SET SESSION AUTHORIZATION regress_batch_other;
SELECT orderexp.finish_batch(:b_other) AS delivered_first;
RESET SESSION AUTHORIZATION;
SET orderexp.batch_delivery = on;
UPDATE orderexp.outbox SET next_attempt_at = now() - interval '1 s' WHERE id = :second;
SELECT id = :second AS the_second, attempts FROM orderexp.claim(10, '1 min');
SELECT orderexp.ack(ARRAY[:second]) AS acked;

--
-- claim(n) fills its n from more than one batch: an expired batch that comes
-- back smaller than n, then the events written since (a relay takes a claim
-- of fewer than n for "nothing more is due now")
--
DELETE FROM orderexp.outbox; DELETE FROM orderexp.batches;
SELECT count(*) FROM ev(3, 560);
SELECT orderexp.next_batch(10) AS b \gset
UPDATE orderexp.batches SET leased_until = now() - interval '1 s' WHERE id = :b;
SELECT count(*) FROM ev(2, 570);
SELECT array_agg(c.order_key ORDER BY c.id) AS claimed, array_agg(c.attempts ORDER BY c.id) AS attempts
  FROM orderexp.claim(10, '1 min') c;
SELECT count(*) AS batches, count(*) FILTER (WHERE finished_at IS NULL) AS open FROM orderexp.batches;
SELECT orderexp.ack(ARRAY(SELECT id FROM orderexp.outbox)) AS acked;
SELECT count(*) FILTER (WHERE finished_at IS NULL) AS open FROM orderexp.batches;

--
-- a stale reminder that failed (a row out of the stream) does not hold back a
-- later event of its order and channel: claim() withholds it first, as it
-- does without the stream
--
SELECT orderexp.finish_batch(id) FROM orderexp.batches WHERE finished_at IS NULL;
DELETE FROM orderexp.outbox; DELETE FROM orderexp.batches;
SELECT orderexp.set_close_policy('shop_orders', '1 hour') IS NOT NULL AS registered;
INSERT INTO shop_orders VALUES (900, 'unpaid', now());
SET orderexp.batch_delivery = on;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
SELECT 'reminder', 'shop_orders', '900', 'email', jsonb_build_object('close_at', t.close_at)
  FROM orderexp.timers t WHERE t.order_key = '900';
SELECT orderexp.next_batch(10) AS b \gset
SELECT id AS rem FROM orderexp.get_batch_events(:b) \gset
SELECT orderexp.fail(:rem, 'smtp 451') IS NOT NULL AS retrying;
SELECT orderexp.finish_batch(:b);
UPDATE shop_orders SET status = 'paid' WHERE id = 900;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
VALUES ('closed', 'shop_orders', '900', 'email', '{}');
SELECT kind, order_key FROM orderexp.claim(10, '1 min');
SELECT kind, obsolete_at IS NOT NULL AS withheld, last_error FROM orderexp.outbox
 WHERE order_key = '900' AND channel IS NOT NULL ORDER BY id;
SELECT orderexp.drop_close_policy('shop_orders');

--
-- retention: run_due() moves the pruning position past the batches
-- finished longer than orderexp.event_retention ago; their events leave
-- with their rotating part (regress rotation), the records of changes
-- (via set, in outbox_0) keep their batch and their derived delivery
--
SELECT orderexp.finish_batch(id) FROM orderexp.batches WHERE finished_at IS NULL;
DELETE FROM orderexp.outbox; DELETE FROM orderexp.batches;
SELECT count(*) FROM ev(3, 600);
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, via, reason)
VALUES ('cancelled', 'shop_orders', '700', 'email', '{}', 'operator', 'asked');
SELECT orderexp.next_batch(10) AS b \gset
SELECT orderexp.finish_batch(:b);
SELECT count(*) FROM ev(2, 800);
SELECT orderexp.next_batch(10) AS b2 \gset
SELECT orderexp.finish_batch(:b2);
UPDATE orderexp.batches SET finished_at = now() - interval '8 days' WHERE id = :b;
SELECT count(*) FROM orderexp.run_due();
SELECT o.order_key, o.via, s.delivered_at IS NOT NULL AS delivered
  FROM orderexp.outbox o JOIN orderexp.outbox_state s USING (id) ORDER BY o.id;
SELECT pruned_to > :b AS passed FROM orderexp.batch_pruning;

--
-- a batch of one transaction's many events reads its own range of
-- outbox_stream, not the rest of the transaction's events: the index
-- blocks one _batch_ids() call reads in the part that holds the events
-- (PostgreSQL 15 ends a scan at a row comparison's bound by its first
-- column only; read as one row comparison, this batch read 78 blocks)
--
SELECT orderexp.finish_batch(id) FROM orderexp.batches WHERE finished_at IS NULL;
DELETE FROM orderexp.outbox; DELETE FROM orderexp.batches;
SELECT count(*) FROM ev(20000, 10000);
SELECT orderexp.next_batch(100) AS b1 \gset
SELECT orderexp.next_batch(100) AS b2 \gset
SELECT pg_stat_force_next_flush();
SELECT stream_blocks() AS blks0 \gset
SELECT count(*) FROM orderexp._batch_ids((SELECT b FROM orderexp.batches b WHERE b.id = :b2));
SELECT pg_stat_force_next_flush();
SELECT stream_blocks() - :blks0 < 10 AS few_blocks;
SELECT orderexp.finish_batch(:b1) + orderexp.finish_batch(:b2) AS finished;

--
-- a window's first batch starts at the least transaction id the window can
-- hold (its lo_snap's xmin), not at 0: with the 20,000 events above
-- delivered and kept (retention), one batch of a new transaction reads a
-- few blocks of outbox_stream; from 0 it read all 20,000 entries, every
-- window's first batch, whatever it held
--
DO $$
DECLARE
	b bigint;
BEGIN
	LOOP
		b := orderexp.next_batch(1000);
		EXIT WHEN b IS NULL;
		PERFORM orderexp.finish_batch(b);
	END LOOP;
END
$$;
SELECT count(*) AS kept_delivered FROM orderexp.outbox_state WHERE delivered_at IS NOT NULL;
SELECT count(*) FROM ev(5, 50000);
SELECT orderexp.next_batch(100) AS b3 \gset
SELECT pg_stat_force_next_flush();
SELECT stream_blocks() AS blks0 \gset
SELECT count(*) FROM orderexp._batch_ids((SELECT b FROM orderexp.batches b WHERE b.id = :b3));
SELECT pg_stat_force_next_flush();
SELECT stream_blocks() - :blks0 < 10 AS few_blocks;
SELECT orderexp.finish_batch(:b3) AS finished;

--
-- bad input
--
SELECT orderexp.next_batch(0);
\echo :SQLSTATE
SELECT orderexp.next_batch(NULL);
\echo :SQLSTATE
SELECT orderexp.next_batch(10, '-1 s');
\echo :SQLSTATE
SELECT orderexp.next_batch(10, '1 year');
\echo :SQLSTATE
SELECT orderexp.finish_batch(NULL);
\echo :SQLSTATE
SELECT orderexp.finish_batch(-1);
\echo :SQLSTATE
SELECT count(*) FROM orderexp.get_batch_events(NULL);
\echo :SQLSTATE
SELECT count(*) FROM orderexp.get_batch_events(-1);
\echo :SQLSTATE
-- a role that is no relay may not consume
SET SESSION AUTHORIZATION regress_batch_nobody;
SELECT orderexp.next_batch();
\echo :SQLSTATE
RESET SESSION AUTHORIZATION;

\c :regress_db
DROP DATABASE orderexp_batches;
DROP ROLE regress_batch_other, regress_batch_nobody;
