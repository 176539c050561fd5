--
-- delivery: claim, ack, fail, dead letters, requeue, delivery_stats and the
-- pruning of delivered events.
--
-- Runs in a database of its own, so that the outbox holds only the rows
-- made here (no other test's events, no worker: the database is not in
-- orderexp.databases).  Times are set directly where a test needs a lease
-- or a back-off to have run out; one short lease really expires.
--
-- After each failing statement, ":'SQLSTATE'" is printed with
-- unchanged(): the outbox is what mark() remembered.
--
-- This is the row-by-row path (claim() up to 1.2), which every database
-- updated from 1.2 and every database with orderexp.batch_delivery off
-- still uses: the database is made with the setting off, so that each
-- event is a row whose lease, attempts and back-off the tests set and read
-- in orderexp.outbox itself.  The same cases over the stream of batches
-- (the default), where a batch holds those, are in the batches test.
--
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset
CREATE DATABASE orderexp_delivery;
ALTER DATABASE orderexp_delivery SET orderexp.batch_delivery = off;
\c orderexp_delivery
SHOW orderexp.batch_delivery;
CREATE EXTENSION orderexp;
SET client_min_messages = warning;

CREATE TABLE shop_orders (id bigint PRIMARY KEY, status text, created_at timestamptz);

-- n events of a kind on a channel
-- each event of its own order (events of one order on one channel go out
-- in order, which the withheld test shows)
CREATE SEQUENCE ev_order;
CREATE FUNCTION ev(n int, ch text DEFAULT 'email', k text DEFAULT 'closed')
RETURNS SETOF bigint LANGUAGE sql AS $$
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT k, 'shop_orders', nextval('ev_order')::text, ch, jsonb_build_object('n', g)
	  FROM generate_series(1, n) g
	RETURNING id
$$;
CREATE TABLE baseline (state text);
CREATE FUNCTION outbox_state() RETURNS text LANGUAGE sql AS $$
	SELECT md5(coalesce(string_agg(o::text, '|' ORDER BY o.id), '')) FROM orderexp.outbox o
$$;
CREATE FUNCTION mark() RETURNS void LANGUAGE sql AS $$
	DELETE FROM baseline; INSERT INTO baseline SELECT outbox_state();
$$;
CREATE FUNCTION unchanged() RETURNS boolean LANGUAGE sql AS $$
	SELECT b.state = outbox_state() FROM baseline b
$$;
-- a row's lease and retry time relative to the clock, to the second
CREATE FUNCTION st(bigint)
RETURNS TABLE (id bigint, attempts int, leased boolean, due boolean, delivered boolean,
			   dead boolean, last_error text)
LANGUAGE sql AS $$
	SELECT o.id, o.attempts, o.leased_until > clock_timestamp(),
		   o.next_attempt_at <= clock_timestamp(), o.delivered_at IS NOT NULL,
		   o.dead_at IS NOT NULL, o.last_error
	  FROM orderexp.outbox o WHERE o.id = $1
$$;

-- defaults of the GUCs, and the values as the SQL functions read them
SHOW orderexp.max_attempts;
SHOW orderexp.event_retention;
SELECT orderexp._max_attempts(), orderexp._event_retention();

--
-- claim: leases, oldest due first, attempts counted, SKIP LOCKED
--
SELECT count(*) FROM ev(3);					-- ids 1..3
UPDATE orderexp.outbox SET next_attempt_at = next_attempt_at - (4 - id) * interval '1 s';
SELECT id, kind, channel, order_key, attempts,
	   leased_until = next_attempt_at AS lease_is_next_attempt,
	   leased_until - clock_timestamp() BETWEEN interval '55 s' AND interval '60 s' AS leased_1min,
	   delivered_at IS NULL AS undelivered
  FROM orderexp.claim(2, '1 min');
SELECT id, attempts FROM orderexp.claim();	-- only 3 is left
SELECT id FROM orderexp.claim();			-- nothing due
SELECT * FROM st(1);
-- an expired lease makes a row claimable again, and the attempt counts
UPDATE orderexp.outbox SET leased_until = now() - interval '1 s',
						   next_attempt_at = now() - interval '1 s' WHERE id = 1;
SELECT id, attempts FROM orderexp.claim();
-- a lease that really runs out
SELECT count(*) FROM ev(1);					-- 4
SELECT id, attempts FROM orderexp.claim(1, '0.2 s');
SELECT pg_sleep(0.3);
SELECT id, attempts FROM orderexp.claim(10, '1 min');
-- kinds and channels
SELECT count(*) FROM ev(2, 'sms', 'extended');		-- 5, 6
SELECT count(*) FROM ev(1, 'webhook', 'extended');	-- 7
SELECT id, kind, channel FROM orderexp.claim(kinds => '{closed,cancelled}');
SELECT id, kind, channel FROM orderexp.claim(channels => '{sms}', max_rows => 1);
SELECT id, kind, channel FROM orderexp.claim(kinds => '{extended}', channels => '{webhook,sms}');
SELECT id FROM orderexp.claim(kinds => '{}');

--
-- ack: counts rows that became delivered; the rest is no error
--
SELECT orderexp.ack('{1,2}');
SELECT orderexp.ack('{1,2}');				-- already delivered
SELECT orderexp.ack('{2,3,3,1000}');		-- 3 once, 2 again, an unknown id
SELECT orderexp.ack('{}');
SELECT * FROM st(3);
SELECT id, delivered_at IS NOT NULL AS delivered, leased_until FROM orderexp.outbox
 WHERE id <= 3 ORDER BY id;

--
-- fail: back-off, last_error, lease cleared
--
SELECT max(x) AS rid FROM ev(1, 'retry') x \gset
SELECT attempts FROM orderexp.claim(channels => '{retry}');
SELECT orderexp.fail(:rid, 'smtp 451 try later') - clock_timestamp()
	   BETWEEN interval '7.9 s' AND interval '12 s' AS backoff_10s;
SELECT * FROM st(:rid);
SELECT id FROM orderexp.claim(channels => '{retry}');		-- not due yet
UPDATE orderexp.outbox SET next_attempt_at = now() WHERE id = :rid;
SELECT attempts, last_error FROM orderexp.claim(channels => '{retry}');
SELECT orderexp.fail(:rid, 'smtp 451 again') - clock_timestamp()
	   BETWEEN interval '15.9 s' AND interval '24 s' AS backoff_20s;

-- the schedule: after attempt n, 10 s * 2^(n-1), at most 1 hour, times
-- [0.8, 1.2); 50 rows per attempt number
SET orderexp.max_attempts = 20;
SELECT count(*) FROM ev(600, 'schedule');
UPDATE orderexp.outbox o SET attempts = 1 + (r.rn - 1) / 50, claimed_by = session_user
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM orderexp.outbox
		 WHERE channel = 'schedule') r
 WHERE o.id = r.id;
CREATE TABLE schedule AS
	SELECT o.attempts AS n, orderexp.fail(o.id, 'x') - clock_timestamp() AS delay
	  FROM orderexp.outbox o WHERE o.channel = 'schedule';
SELECT n, count(*),
	   least(interval '10 s' * 2 ^ (n - 1), interval '1 hour') AS base,
	   min(delay) >= 0.8 * least(interval '10 s' * 2 ^ (n - 1), interval '1 hour') - interval '0.1 s' AS min_ok,
	   max(delay) < 1.2 * least(interval '10 s' * 2 ^ (n - 1), interval '1 hour') AS max_ok,
	   max(delay) - min(delay) > 0.2 * least(interval '10 s' * 2 ^ (n - 1), interval '1 hour') AS jittered
  FROM schedule GROUP BY n ORDER BY n;
-- far past the cap, up to the highest max_attempts: still 1 hour
SET orderexp.max_attempts = 1000;
SELECT max(x) AS hid FROM ev(1, 'schedule-high') x \gset
UPDATE orderexp.outbox SET attempts = 999, claimed_by = session_user WHERE id = :hid;
SELECT orderexp.fail(:hid, 'x') - clock_timestamp()
	   BETWEEN interval '47 min' AND interval '72 min' AS capped;
RESET orderexp.max_attempts;
-- after the last attempt: dead, fail returns NULL
SELECT max(x) AS lid FROM ev(1, 'last') x \gset
UPDATE orderexp.outbox SET attempts = 10, claimed_by = session_user WHERE id = :lid;
SELECT orderexp.fail(:lid, 'mailbox does not exist') IS NULL AS dead;
SELECT * FROM st(:lid);
SELECT next_attempt_at = 'infinity' AS never_again, leased_until IS NULL AS no_lease
  FROM orderexp.outbox WHERE id = :lid;

--
-- dead after orderexp.max_attempts, through claim and fail
--
SET orderexp.max_attempts = 3;
SELECT orderexp._max_attempts();
SELECT max(x) AS pid FROM ev(1, 'poison') x \gset
SELECT id, attempts FROM orderexp.claim(channels => '{poison}');
SELECT orderexp.fail(:pid, 'timeout 1') IS NOT NULL AS retry;
UPDATE orderexp.outbox SET next_attempt_at = now() WHERE id = :pid;
SELECT id, attempts FROM orderexp.claim(channels => '{poison}');
SELECT orderexp.fail(:pid, 'timeout 2') IS NOT NULL AS retry;
UPDATE orderexp.outbox SET next_attempt_at = now() WHERE id = :pid;
SELECT id, attempts FROM orderexp.claim(channels => '{poison}');
SELECT orderexp.fail(:pid, 'timeout 3') IS NULL AS dead;
SELECT * FROM st(:pid);
SELECT id FROM orderexp.claim(channels => '{poison}');
-- a row that crashes every relay: no fail() ever comes, the lease of the
-- last attempt runs out, and the next claim buries it instead of handing it out
SELECT max(x) AS cid FROM ev(1, 'crash') x \gset
SELECT id, attempts FROM orderexp.claim(channels => '{crash}');
UPDATE orderexp.outbox SET next_attempt_at = now(), leased_until = now() WHERE id = :cid;
SELECT id, attempts FROM orderexp.claim(channels => '{crash}');
UPDATE orderexp.outbox SET next_attempt_at = now(), leased_until = now() WHERE id = :cid;
SELECT id, attempts FROM orderexp.claim(channels => '{crash}');
UPDATE orderexp.outbox SET next_attempt_at = now(), leased_until = now() WHERE id = :cid;
SELECT id, attempts FROM orderexp.claim(channels => '{crash}');	-- none: dead
SELECT * FROM st(:cid);
RESET orderexp.max_attempts;

--
-- dead_letters and requeue
--
SELECT id, kind, channel, order_key, attempts, last_error, dead_at IS NOT NULL AS dead
  FROM orderexp.dead_letters ORDER BY id;
SELECT orderexp.requeue(ARRAY[:pid, 1, :rid, 99999]);	-- only the poison row is dead
SELECT * FROM st(:pid);
SELECT id FROM orderexp.dead_letters ORDER BY id;
SELECT id, attempts FROM orderexp.claim(channels => '{poison}');
SELECT orderexp.requeue();					-- every dead row: last and crash
SELECT orderexp.requeue();
SELECT count(*) FROM orderexp.dead_letters;
SELECT id, attempts, next_attempt_at <= clock_timestamp() AS due
  FROM orderexp.outbox WHERE id IN (:lid, :cid) ORDER BY id;
-- an ack that comes after all (a relay whose lease ran out delivered late)
-- counts, and takes the row out of the dead letters
UPDATE orderexp.outbox SET dead_at = now(), next_attempt_at = 'infinity', claimed_by = session_user
 WHERE id = :cid;
SELECT orderexp.ack(ARRAY[:cid]);
SELECT * FROM st(:cid);

--
-- errors: SQLSTATE, and nothing changed
--
SELECT mark();
SELECT * FROM orderexp.claim(NULL);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(0);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(-5);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(10, NULL);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(10, '0 s');
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(10, '-1 min');
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT orderexp.ack(NULL);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT orderexp.fail(NULL, 'x');
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT orderexp.fail(5, NULL);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT orderexp.fail(99999, 'x');
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT orderexp.fail(5, 'x', NULL);
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(10, '1 hour 1 s');		-- beyond orderexp.max_lease
SELECT :'SQLSTATE' AS sqlstate, unchanged();
SELECT * FROM orderexp.claim(10, '1000 years');
SELECT :'SQLSTATE' AS sqlstate, unchanged();
\set VERBOSITY terse
SELECT orderexp.fail(1, 'late failure');	-- delivered (the detail says when)
SELECT :'SQLSTATE' AS sqlstate, unchanged();
UPDATE orderexp.outbox SET dead_at = now(), next_attempt_at = 'infinity' WHERE id = 5;
SELECT mark();
SELECT orderexp.fail(5, 'x');				-- dead
SELECT :'SQLSTATE' AS sqlstate, unchanged();
\set VERBOSITY default
SELECT orderexp.requeue('{5}');
SET orderexp.max_attempts = 0;
SELECT :'SQLSTATE' AS sqlstate;
SET orderexp.max_attempts = 1001;
SELECT :'SQLSTATE' AS sqlstate;
SET orderexp.event_retention = -1;
SELECT :'SQLSTATE' AS sqlstate;

--
-- delivery_stats on constructed rows (one transaction: now() is fixed)
--
BEGIN;
DELETE FROM orderexp.outbox;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at,
							 attempts, next_attempt_at, leased_until, delivered_at, dead_at, last_error)
VALUES
	-- closed/email: 2 pending (one new, one whose lease ran out), 1 leased,
	-- 1 retrying, 2 delivered, 1 dead
	('closed', 'shop_orders', 'a', 'email', '{}', now() - interval '2 hours', 0, now(), NULL, NULL, NULL, NULL),
	('closed', 'shop_orders', 'b', 'email', '{}', now() - interval '3 hours', 1, now() - interval '1 min', now() - interval '1 min', NULL, NULL, NULL),
	('closed', 'shop_orders', 'c', 'email', '{}', now() - interval '1 hour', 1, now() + interval '1 min', now() + interval '1 min', NULL, NULL, NULL),
	('closed', 'shop_orders', 'd', 'email', '{}', now() - interval '90 min', 2, now() + interval '40 s', NULL, NULL, NULL, 'bounce'),
	('closed', 'shop_orders', 'e', 'email', '{}', now() - interval '5 hours', 1, now(), NULL, now() - interval '4 hours', NULL, NULL),
	('closed', 'shop_orders', 'f', 'email', '{}', now() - interval '5 hours', 1, now(), NULL, now(), NULL, NULL),
	('closed', 'shop_orders', 'g', 'email', '{}', now() - interval '9 hours', 10, 'infinity', NULL, NULL, now(), 'gone'),
	-- reminder/sms: everything delivered
	('reminder', 'shop_orders', 'a', 'sms', '{}', now() - interval '1 day', 1, now(), NULL, now(), NULL, NULL),
	-- reminder/email: only dead
	('reminder', 'shop_orders', 'a', 'email', '{}', now() - interval '1 day', 10, 'infinity', NULL, NULL, now(), 'gone');
SELECT * FROM orderexp.delivery_stats ORDER BY kind, channel;
ROLLBACK;

--
-- a permanent failure: retryable => false makes the row dead at once,
-- whatever attempts it has left
--
SELECT max(x) AS pfid FROM ev(1, 'permanent') x \gset
SELECT id, attempts FROM orderexp.claim(channels => '{permanent}');
SELECT orderexp.fail(:pfid, 'smtp 550 no such user', retryable => false) IS NULL AS dead;
SELECT id, attempts, last_error FROM orderexp.dead_letters WHERE id = :pfid;
SELECT orderexp.requeue(ARRAY[:pfid]);
SELECT orderexp.fail(:pfid, 'http 410 gone', false);		-- requeued: nobody holds it
SELECT :'SQLSTATE' AS sqlstate;
SELECT id, attempts FROM orderexp.claim(channels => '{permanent}');
SELECT orderexp.fail(:pfid, 'http 410 gone', false) IS NULL AS dead;
SELECT id, last_error FROM orderexp.dead_letters WHERE id = :pfid;

--
-- leases belong to the role that claimed: another relay role can neither
-- ack nor fail them, nor ack rows nobody claimed; the claiming role can,
-- from any session (a relay reconnects)
--
SET orderexp.max_lease = '10 min';
SELECT * FROM orderexp.claim(1, '11 min');
SELECT :'SQLSTATE' AS sqlstate;
SELECT count(*) FROM orderexp.claim(1, '10 min', channels => '{nothing}');
RESET orderexp.max_lease;
SELECT min(x) AS la, max(x) AS lb FROM ev(3, 'leases') x \gset
CREATE ROLE regress_relay_a LOGIN IN ROLE orderexp_relay;
CREATE ROLE regress_relay_b LOGIN IN ROLE orderexp_relay;
SET SESSION AUTHORIZATION regress_relay_a;
SELECT array_agg(id ORDER BY id) = ARRAY[:la, :la + 1]::bigint[] AS a_claims_two,
	   bool_and(claimed_by = 'regress_relay_a') AS claimed_by_a
  FROM orderexp.claim(2, '1 min', channels => '{leases}');
SET SESSION AUTHORIZATION regress_relay_b;
SELECT orderexp.ack(ARRAY[:la, :lb]) AS b_acks;			-- a's row, a row nobody claimed
SELECT orderexp.fail(:la, 'b says no');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.fail(:lb, 'b says no');
SELECT :'SQLSTATE' AS sqlstate;
SELECT id, delivered_at IS NOT NULL AS delivered, attempts, last_error, claimed_by
  FROM orderexp.outbox WHERE channel = 'leases' ORDER BY id;
SET SESSION AUTHORIZATION regress_relay_a;
SELECT orderexp.ack(ARRAY[:la, :lb]) AS a_acks;			-- its own row only
SELECT orderexp.fail(:la + 1, 'a retries') IS NOT NULL AS retry;
RESET SESSION AUTHORIZATION;
SELECT id, delivered_at IS NOT NULL AS delivered, attempts, last_error, claimed_by
  FROM orderexp.outbox WHERE channel = 'leases' ORDER BY id;
DELETE FROM orderexp.outbox WHERE channel = 'leases';
DROP ROLE regress_relay_a, regress_relay_b;

--
-- privileges: the relay delivers, the admin looks after dead letters
--
SELECT min(x) AS g1, max(x) AS g2 FROM ev(2, 'grants') x \gset
UPDATE orderexp.outbox SET dead_at = now(), next_attempt_at = 'infinity' WHERE id = :g2;
SET ROLE orderexp_relay;
SELECT id, attempts FROM orderexp.claim(channels => '{grants}');
SELECT orderexp.fail(:g1, 'relay says no') IS NOT NULL AS retry;
SELECT orderexp.ack(ARRAY[:g1]);
SELECT count(*) > 0 AS reads_outbox FROM orderexp.outbox;
SELECT count(*) AS dead FROM orderexp.dead_letters WHERE channel = 'grants';
SELECT count(*) > 0 AS reads_stats FROM orderexp.delivery_stats;
SELECT orderexp.requeue(ARRAY[:g2]);
SELECT :'SQLSTATE' AS sqlstate;
UPDATE orderexp.outbox SET delivered_at = NULL WHERE id = :g1;
SELECT :'SQLSTATE' AS sqlstate;
RESET ROLE;
-- orderexp_admin owns no table: shop_orders' dead letters are not its own
SET ROLE orderexp_admin;
SELECT orderexp.requeue(ARRAY[:g2]);
SELECT count(*) AS dead FROM orderexp.dead_letters;
RESET ROLE;
SELECT orderexp.requeue(ARRAY[:g2]);
SET ROLE orderexp_admin;
SELECT * FROM orderexp.claim();
SELECT :'SQLSTATE' AS sqlstate;
RESET ROLE;
SET ROLE orderexp_app;
SELECT * FROM orderexp.claim();
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.ack(ARRAY[:g2]);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.fail(:g2, 'x');
SELECT :'SQLSTATE' AS sqlstate;
SELECT count(*) FROM orderexp.outbox;
SELECT :'SQLSTATE' AS sqlstate;
SELECT count(*) FROM orderexp.delivery_stats;
SELECT :'SQLSTATE' AS sqlstate;
RESET ROLE;

--
-- pruning: run_due() deletes delivered rows older than the retention,
-- and nothing else.  These are rows of outbox_0, the part kept row by row
-- (1.3: rows from before the parts, events a rotation kept, records); the
-- rotating parts are emptied whole (regress rotation).
--
DELETE FROM orderexp.outbox;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at,
							 attempts, next_attempt_at, delivered_at, dead_at, part)
VALUES
	('closed', 'shop_orders', 'old-delivered', 'email', '{}', now() - interval '3 hours', 1, now(), now() - interval '2 hours', NULL, 0),
	('closed', 'shop_orders', 'old-delivered-2', 'email', '{}', now() - interval '9 days', 1, now(), now() - interval '8 days', NULL, 0),
	('closed', 'shop_orders', 'young-delivered', 'email', '{}', now() - interval '3 hours', 3, now(), now() - interval '30 min', NULL, 0),
	('closed', 'shop_orders', 'old-undelivered', 'email', '{}', now() - interval '9 days', 0, now(), NULL, NULL, 0),
	('closed', 'shop_orders', 'old-dead', 'email', '{}', now() - interval '9 days', 10, 'infinity', NULL, now() - interval '8 days', 0);
-- the records of changes (1.3) are kept with the history, delivered or
-- obsolete, with or without a channel: pruning never takes them
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at,
							 attempts, next_attempt_at, delivered_at, obsolete_at, via, part)
VALUES
	('closed', 'shop_orders', 'old-record', 'email', '{}', now() - interval '9 days', 1, now(), now() - interval '8 days', NULL, 'timeout', 0),
	('closed', 'shop_orders', 'old-record-alone', NULL, '{}', now() - interval '9 days', 0, 'infinity', now() - interval '9 days', NULL, 'timeout', 0),
	('reminder', 'shop_orders', 'old-fallback-withheld', 'sms', '{}', now() - interval '9 days', 1, 'infinity', NULL, now() - interval '8 days', 'fallback', 0);
-- a row without a channel is a record, settled: nothing else (23514)
\set VERBOSITY terse
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, part)
VALUES ('closed', 'shop_orders', 'no-channel', NULL, '{}', 0);
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, via, part)
VALUES ('closed', 'shop_orders', 'no-channel', NULL, '{}', 'timeout', 0);
\set VERBOSITY default
-- default retention (7 days): only the 8-day old delivery goes
SELECT * FROM orderexp.run_due();
SELECT order_key FROM orderexp.outbox ORDER BY id;
-- 0 keeps everything
SET orderexp.event_retention = 0;
SELECT orderexp._event_retention();
SELECT * FROM orderexp.run_due();
SELECT count(*) FROM orderexp.outbox;
SET orderexp.event_retention = '1h';
SHOW orderexp.event_retention;
SELECT orderexp._event_retention();
SELECT * FROM orderexp.run_due();
SELECT order_key FROM orderexp.outbox ORDER BY id;
-- more than one batch: run_due takes up to ten batches of 1000
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, delivered_at, part)
SELECT 'closed', 'shop_orders', g::text, 'bulk', '{}', now() - interval '2 hours', 0
  FROM generate_series(1, 2500) g;
SELECT * FROM orderexp.run_due();
SELECT count(*) FROM orderexp.outbox WHERE channel = 'bulk';
RESET orderexp.event_retention;
-- the pruning statements (src/outbox.c) can find their rows by the partial
-- indexes, which leave out the records of changes (kept with the history)
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT x.ctid FROM orderexp.outbox_0 x WHERE x.delivered_at < now() AND x.via IS NULL
 ORDER BY x.delivered_at LIMIT 1000;
EXPLAIN (COSTS OFF)
SELECT x.ctid FROM orderexp.outbox_0 x WHERE x.obsolete_at < now() AND x.via IS NULL
 ORDER BY x.obsolete_at LIMIT 1000;
RESET enable_bitmapscan;
-- the views of the last hour or day do not read the whole history (1.3):
-- the recent rows by a range of ids from the latest mark of the outbox
-- (outbox_marks) at or before the period's start, the undelivered ones by
-- outbox_undelivered
\i test/sql/include/plan_uses.sql
SELECT pg_temp.plan_uses(v, 'outbox_marks_pkey') AND pg_temp.plan_uses(v, 'outbox_[0-3]_pkey')
	   AND pg_temp.plan_uses(v, 'Index Cond: \(id > COALESCE') AS by_ids,
	   pg_temp.plan_uses(v, 'outbox_[0-3]_undelivered') AS undelivered
  FROM unnest(ARRAY['SELECT * FROM orderexp.monitor_delivery', 'SELECT * FROM orderexp.monitor_closes',
					'SELECT * FROM orderexp.delivery_health']) AS v;
RESET enable_seqscan;

-- the marks: CREATE EXTENSION wrote the first; _mark_outbox() writes one
-- with the sequence's last id when the latest is a minute old, not sooner
SELECT count(*) AS marks FROM orderexp.outbox_marks;
SELECT orderexp._mark_outbox() AS marked_again;
DELETE FROM orderexp.outbox_marks;
SELECT orderexp._mark_outbox() AS marked;
SELECT m.last_id = (SELECT s.last_value FROM orderexp.outbox_id_seq s) AS last_id_ok,
	   m.at BETWEEN now() - interval '1 minute' AND now() AS at_ok
  FROM orderexp.outbox_marks m;
-- marks older than two days go, but the latest of them
UPDATE orderexp.outbox_marks SET at = now() - interval '4 days';
INSERT INTO orderexp.outbox_marks VALUES (now() - interval '3 days', 1), (now() - interval '50 hours', 2);
SELECT orderexp._mark_outbox() AS marked;
SELECT CASE WHEN at < now() - interval '2 days' THEN last_id::text ELSE 'new' END AS mark
  FROM orderexp.outbox_marks ORDER BY at;
-- a sequence that caches values hands them out of order: no mark then
DELETE FROM orderexp.outbox_marks;
ALTER SEQUENCE orderexp.outbox_id_seq CACHE 10;
SELECT orderexp._mark_outbox() AS marked_with_cache;
ALTER SEQUENCE orderexp.outbox_id_seq CACHE 1;
-- run_due() marks the outbox (src/outbox.c: a backend calls _mark_outbox()
-- once a minute at most, this one did not yet)
\c orderexp_delivery
SELECT count(*) AS marks FROM orderexp.outbox_marks;
SELECT count(*) FROM orderexp.run_due();
SELECT count(*) AS marks FROM orderexp.outbox_marks;

-- the views count by created_at exactly, from the latest mark at or before
-- the period's start: a close of two hours ago, then three made now; a
-- mark of 90 minutes ago above the old one's id, one of 30 minutes ago
-- above all (the latest, which the last hour must not take), and one of
-- three days ago (the only one the last day may take)
TRUNCATE orderexp.outbox_marks;
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at, part)
VALUES ('closed', 'shop_orders', 'mark-old', 'email',
		jsonb_build_object('close_at', now() - interval '2 hours'), now() - interval '2 hours', 0);
INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, part)
SELECT 'closed', 'shop_orders', 'mark-' || g, 'email',
	   jsonb_build_object('close_at', now() - interval '1 minute'), 0
  FROM generate_series(1, 3) g;
INSERT INTO orderexp.outbox_marks VALUES
	(now() - interval '3 days', 0),
	(now() - interval '90 minutes', (SELECT max(id) FROM orderexp.outbox WHERE order_key = 'mark-old')),
	(now() - interval '30 minutes', (SELECT max(id) FROM orderexp.outbox));
SELECT orderexp.set_close_policy('shop_orders', interval '1 hour') IS NOT NULL AS registered;
SELECT closed_last_hour FROM orderexp.monitor_closes WHERE order_table = 'public.shop_orders';
SELECT count(*) AS recount FROM orderexp.outbox
 WHERE kind = 'closed' AND order_table = 'shop_orders'::regclass AND created_at >= now() - interval '1 hour';
SELECT sum(made) AS made_last_day FROM orderexp.delivery_health
 WHERE period = '1 day' AND kind = 'closed' AND channel = 'email';
SELECT count(*) AS recount FROM orderexp.outbox
 WHERE kind = 'closed' AND channel = 'email' AND created_at >= now() - interval '1 day';

\c :regress_db
DROP DATABASE orderexp_delivery;
