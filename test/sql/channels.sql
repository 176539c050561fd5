--
-- channels: the customer's channels, contact checks and fallback.
--
-- set_close_policy(channels_column, contact_columns, fallback_before): a
-- customer who chose channels gets one reminder, on the first of them that
-- the table offers and whose contact is good; a missing or malformed
-- contact writes no event on its channel but a row in orderexp.unreachable
-- (one per order and channel), and the next channel takes over; no channel
-- left, no reminder.  A reminder refused for good (fail(retryable =>
-- false)) or out of attempts (claim()) falls back to the next channel, with
-- the same extension link and an audit row, while fallback_before is left
-- before the deadline.
--
-- No worker runs here: the test calls run_due().  Reminders are made due
-- by giving orders a created-at in the past.  Nothing printed depends on
-- the clock, on serial ids or on the secret.
--
\set SHOW_CONTEXT never
CREATE SCHEMA ch;

-- this test's events: without the parts that depend on the clock, ids or
-- the secret
CREATE FUNCTION ch.events(tbl regclass)
RETURNS TABLE (order_key text, kind text, channel text, contact text, fallback jsonb,
			   fallback_from jsonb, has_token boolean)
LANGUAGE sql AS $$
	SELECT o.order_key, o.kind, o.channel, o.payload->>'contact', o.payload->'fallback',
		   (o.payload->'fallback_from') - 'event_id',
		   o.payload->>'extension_token' IS NOT NULL
	  FROM orderexp.outbox o
	 WHERE o.order_table = tbl
	 ORDER BY length(o.order_key), o.order_key COLLATE "C", o.id
$$;

-- the reader's unreachable orders, of one table
CREATE FUNCTION ch.unreachable(tbl regclass)
RETURNS TABLE (order_key text, channel text, contact text, why text)
LANGUAGE sql AS $$
	SELECT u.order_key, u.channel, u.contact, u.why
	  FROM orderexp.unreachable u
	 WHERE u.order_table = tbl
	 ORDER BY length(u.order_key), u.order_key COLLATE "C", u.channel NULLS LAST
$$;

-- claim every due reminder on a channel (other tests' rows too: they are
-- not shown) and return this table's
CREATE FUNCTION ch.claim(tbl regclass, chan text)
RETURNS TABLE (id bigint, order_key text)
LANGUAGE sql AS $$
	SELECT c.id, c.order_key
	  FROM orderexp.claim(10000, '1 min', '{reminder}', ARRAY[chan]) c
	 WHERE c.order_table = tbl
	 ORDER BY c.id
$$;

CREATE TABLE ch.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	email		text,
	phone		text,
	mobile		text,
	prefers		text[],
	prefers_csv	text,
	n			integer
);

-- ---------------------------------------------------------------------------
-- registration: the defaults, the new arguments, their errors
-- ---------------------------------------------------------------------------

-- a call of 1.2 works as it did; a new table's contacts default to the
-- columns "email" and "phone" of the channels it uses
SELECT orderexp.set_close_policy('ch.orders', '1 hour', remind_before => '55 minutes',
								 extend_by => '1 day', max_extensions => 1,
								 channels => '{email,sms,push}') > 0 AS registered;
SELECT channels_column, contact_channels, contact_columns, fallback_before
  FROM orderexp.policy_config WHERE order_table = 'ch.orders'::regclass;

-- the customer's channels and the contacts, mapped
SELECT orderexp.set_close_policy('ch.orders', '1 hour', remind_before => '55 minutes',
								 extend_by => '1 day', max_extensions => 1,
								 channels_column => 'prefers',
								 contact_columns => '{email=email,sms=mobile}') > 0 AS changed;
SELECT channels_column, contact_channels, contact_columns, fallback_before
  FROM orderexp.policy_config WHERE order_table = 'ch.orders'::regclass;

-- errors, each before anything changes
CREATE TABLE ch.config_before AS
	SELECT * FROM orderexp.policy_config WHERE order_table = 'ch.orders'::regclass;
DO $$
DECLARE
	c text;
	st text;
	msg text;
BEGIN
	FOREACH c IN ARRAY ARRAY[
		$c$channels_column => 'nope'$c$,
		$c$channels_column => 'n'$c$,
		$c$contact_columns => '{email}'$c$,
		$c$contact_columns => '{email=}'$c$,
		$c$contact_columns => '{=email}'$c$,
		$c$contact_columns => ARRAY[NULL]::text[]$c$,
		$c$contact_columns => '{fax=phone}'$c$,
		$c$contact_columns => '{sms=phone,sms=mobile}'$c$,
		$c$contact_columns => '{email=nope}'$c$,
		$c$fallback_before => '-1 minute'$c$,
		$c$fallback_before => '1 hour -61 minutes'$c$,
		$c$fallback_before => '1 day -1 hour'$c$]
	LOOP
		BEGIN
			EXECUTE format('SELECT orderexp.set_close_policy(%L, %L, remind_before => %L, %s)',
						   'ch.orders', '2 hours', '1 hour', c);
			RAISE NOTICE '%: no error', c;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			RAISE NOTICE '%: % %', c, st, msg;
		END;
	END LOOP;
END
$$;
SELECT (SELECT count(*) FROM (SELECT * FROM ch.config_before
							  EXCEPT ALL
							  SELECT * FROM orderexp.policy_config
							   WHERE order_table = 'ch.orders'::regclass) d) AS changed_rows;

-- '' clears the channels column
SELECT orderexp.set_close_policy('ch.orders', '1 hour', channels_column => '') > 0 AS cleared;
SELECT channels_column FROM orderexp.policy_config WHERE order_table = 'ch.orders'::regclass;
SELECT orderexp.set_close_policy('ch.orders', '1 hour', remind_before => '55 minutes',
								 extend_by => '1 day', max_extensions => 1,
								 channels_column => 'prefers') > 0 AS again;

-- a mapped column is followed when renamed and may not be dropped
ALTER TABLE ch.orders RENAME COLUMN mobile TO cell;
SELECT contact_columns FROM orderexp.policy_config WHERE order_table = 'ch.orders'::regclass;
ALTER TABLE ch.orders DROP COLUMN cell;
ALTER TABLE ch.orders DROP COLUMN prefers;
ALTER TABLE ch.orders RENAME COLUMN cell TO mobile;

-- ---------------------------------------------------------------------------
-- reminders on the customer's channels
-- ---------------------------------------------------------------------------

-- created 10 minutes ago: the reminder is due, 50 minutes are left
INSERT INTO ch.orders (id, created_at, email, mobile, prefers) VALUES
	(1, now() - interval '10 minutes', 'ann@example.com', '+4917012345601', '{sms,email}'),	-- prefers SMS
	(2, now() - interval '10 minutes', 'bob@example.com', '+4917012345602', '{email,sms}'),	-- e-mail, SMS behind
	(3, now() - interval '10 minutes', 'cy@example.com',  '+4917012345603', NULL),			-- no choice: every channel
	(4, now() - interval '10 minutes', 'dee@example.com', '+4917012345604', '{fax,email}'),	-- fax is not offered
	(5, now() - interval '10 minutes', 'eve@example.com', '0170 1234',      '{sms,email}'),	-- malformed phone
	(6, now() - interval '10 minutes', NULL,              '+4917012345606', '{email,sms}'),	-- no e-mail address
	(7, now() - interval '10 minutes', 'not an address',  NULL,             '{email,sms}'),	-- nothing good
	(8, now() - interval '10 minutes', 'fay@example.com', '+4917012345608', '{}'),			-- empty choice
	(9, now() - interval '10 minutes', 'gus@example',     '+4917012345609', '{email}');		-- undotted domain
SELECT orderexp.run_due() AS "run_due (reminded, closed)";
SELECT * FROM ch.events('ch.orders');
SELECT * FROM ch.unreachable('ch.orders');

-- the contact checks themselves
SELECT c.channel, c.contact, orderexp._contact_problem(c.channel, c.contact) AS problem
  FROM (VALUES ('email', 'a.b+c@mail.example.org'), ('email', 'a@b.co'), ('email', 'a@b'),
			   ('email', 'a b@example.com'), ('email', 'a@@example.com'), ('email', 'a@example..com'),
			   ('email', '.a@example.com'), ('email', 'a@-example.com'), ('email', 'a@example.c0m1'),
			   ('email', repeat('a', 65) || '@example.com'), ('email', 'a@' || repeat('b', 64) || '.com'),
			   ('email', 'a@' || repeat('b.', 130) || 'com'), ('email', ''), ('email', NULL),
			   ('sms', '+4917012345678'), ('sms', '+12345678'), ('sms', '+1234567'),
			   ('sms', '+1234567890123456'), ('sms', '+0123456789'), ('sms', '4917012345678'),
			   ('sms', '+49 170 1234567'), ('push', 'token'), ('push', ' ')) AS c(channel, contact);

-- a comma-separated text column works alike
CREATE TABLE ch.csv (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
					 created_at timestamptz NOT NULL DEFAULT now(), mail text, phone text,
					 prefers text);
SELECT orderexp.set_close_policy('ch.csv', '1 hour', remind_before => '55 minutes',
								 channels => '{email,sms}', channels_column => 'prefers',
								 contact_columns => '{email=mail}') > 0 AS registered;
SELECT contact_channels, contact_columns FROM orderexp.policy_config
 WHERE order_table = 'ch.csv'::regclass;
INSERT INTO ch.csv VALUES
	(1, 'unpaid', now() - interval '10 minutes', 'hal@example.com', 'whatever', ' sms , email'),
	(2, 'unpaid', now() - interval '10 minutes', 'ida@example.com', NULL, 'email,sms'),
	(3, 'unpaid', now() - interval '10 minutes', 'bad', NULL, 'email,sms'),
	(4, 'unpaid', now() - interval '10 minutes', 'jo@example.com', NULL, ',,');
SELECT orderexp.run_due() AS "run_due (reminded, closed)";
SELECT * FROM ch.events('ch.csv');
SELECT * FROM ch.unreachable('ch.csv');

-- names that need quoting, and a contact column that is not text
CREATE TABLE ch."Or""ders; --" (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
								created_at timestamptz NOT NULL DEFAULT now(),
								"Pre fers" varchar[], "e=mail" text, "ph""one" bigint);
SELECT orderexp.set_close_policy('ch."Or""ders; --"', '1 hour', remind_before => '55 minutes',
								 channels => '{email,sms}', channels_column => 'Pre fers',
								 contact_columns => ARRAY['email=e=mail', 'sms=ph"one']) > 0 AS registered;
SELECT contact_channels, contact_columns FROM orderexp.policy_config
 WHERE order_table = 'ch."Or""ders; --"'::regclass;
INSERT INTO ch."Or""ders; --" VALUES
	(1, 'unpaid', now() - interval '10 minutes', '{sms,email}', 'kay@example.com', 4917012345601),
	(2, 'unpaid', now() - interval '10 minutes', '{email}', 'lu@example.com', NULL);
SELECT orderexp.run_due() AS "run_due (reminded, closed)";
SELECT * FROM ch.events('ch."Or""ders; --"');
SELECT * FROM ch.unreachable('ch."Or""ders; --"');
SELECT orderexp.drop_close_policy('ch."Or""ders; --"');

-- the next reminder (after an extension) updates an order's rows in
-- unreachable, never duplicates them, and clears them once a channel works
UPDATE ch.orders SET mobile = '+4917012345605' WHERE id = 5;
UPDATE ch.orders SET email = 'still bad' WHERE id = 7;
SELECT orderexp.extend_order('ch.orders', 5, '1 minute') IS NOT NULL AS extended,
	   orderexp.extend_order('ch.orders', 7, '1 minute') IS NOT NULL AS extended;
UPDATE orderexp.timers SET remind_at = now() - interval '1 second'
 WHERE order_table = 'ch.orders'::regclass AND order_key IN ('5', '7');
SELECT orderexp.run_due() AS "run_due (reminded, closed)";
SELECT * FROM ch.events('ch.orders') WHERE order_key IN ('5', '7');
SELECT * FROM ch.unreachable('ch.orders') WHERE order_key IN ('5', '7');

-- ---------------------------------------------------------------------------
-- fallback
-- ---------------------------------------------------------------------------

-- order 2's e-mail is refused for good with 10 minutes left: one SMS
-- reminder with the same link, in history(), and the address listed
UPDATE orderexp.timers SET close_at = now() + interval '10 minutes'
 WHERE order_table = 'ch.orders'::regclass AND order_key = '2';
UPDATE orderexp.outbox o SET payload = jsonb_set(o.payload, '{close_at}', to_jsonb(t.close_at))
  FROM orderexp.timers t
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '2'
   AND t.order_table = o.order_table AND t.order_key = o.order_key;
SELECT order_key FROM ch.claim('ch.orders', 'email');
SELECT orderexp.fail(o.id, '550 5.1.1 no such user', retryable => false) AS retry_at
  FROM orderexp.outbox o
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '2' AND o.channel = 'email'
   AND o.kind = 'reminder';
SELECT * FROM ch.events('ch.orders') WHERE order_key = '2';
SELECT (SELECT count(DISTINCT o.payload->>'extension_token') FROM orderexp.outbox o
		 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '2') AS distinct_tokens,
	   (SELECT (s.payload->'fallback_from'->>'event_id')::bigint = e.id
		  FROM orderexp.outbox s, orderexp.outbox e
		 WHERE s.order_table = 'ch.orders'::regclass AND s.order_key = '2' AND s.channel = 'sms'
		   AND e.order_table = s.order_table AND e.order_key = s.order_key AND e.channel = 'email')
		   AS names_the_failed_event;
SELECT action, via, actor, reason, deadline = (SELECT close_at FROM orderexp.timers
												WHERE order_table = 'ch.orders'::regclass
												  AND order_key = '2') AS deadline_right,
	   event_ids = ARRAY[(SELECT id FROM orderexp.outbox WHERE order_table = 'ch.orders'::regclass
						   AND order_key = '2' AND channel = 'sms')] AS names_the_sms,
	   delivered
  FROM orderexp.history('ch.orders', 2);
SELECT * FROM ch.unreachable('ch.orders') WHERE order_key = '2';

-- requeued and refused again: no second SMS
SELECT orderexp.requeue(ARRAY(SELECT id FROM orderexp.outbox WHERE order_table = 'ch.orders'::regclass
								AND order_key = '2' AND channel = 'email'
								AND kind = 'reminder')) AS requeued;
SELECT order_key FROM ch.claim('ch.orders', 'email');
SELECT orderexp.fail(o.id, '550 5.1.1 no such user', retryable => false) AS retry_at
  FROM orderexp.outbox o
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '2' AND o.channel = 'email'
   AND o.kind = 'reminder';
SELECT count(*) AS sms_reminders FROM orderexp.outbox
 WHERE order_table = 'ch.orders'::regclass AND order_key = '2' AND channel = 'sms';

-- the fallback is a reminder like the others: order 2 is paid before a
-- relay asks for it, and the next claim() withholds it (below)
UPDATE ch.orders SET status = 'paid' WHERE id = 2;

-- order 1's SMS is refused with 3 minutes left, less than fallback_before
-- (5 minutes): no e-mail; the number is listed as refused
UPDATE orderexp.timers SET close_at = now() + interval '3 minutes'
 WHERE order_table = 'ch.orders'::regclass AND order_key = '1';
UPDATE orderexp.outbox o SET payload = jsonb_set(o.payload, '{close_at}', to_jsonb(t.close_at))
  FROM orderexp.timers t
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '1'
   AND t.order_table = o.order_table AND t.order_key = o.order_key;
SELECT order_key FROM ch.claim('ch.orders', 'sms');
SELECT orderexp.fail(o.id, '21211 invalid number', retryable => false) AS retry_at
  FROM orderexp.outbox o
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '1' AND o.channel = 'sms'
   AND o.kind = 'reminder';
SELECT * FROM ch.events('ch.orders') WHERE order_key = '1';
SELECT * FROM ch.unreachable('ch.orders') WHERE order_key = '1';
SELECT count(*) AS audit_rows FROM orderexp.history('ch.orders', 1);
SELECT action, via, reason FROM orderexp.history('ch.orders', 2);

-- order 10's e-mail fails, retryably: no fallback while it is retried;
-- then its last lease expires and claim() makes it dead: one SMS
INSERT INTO ch.orders (id, created_at, email, mobile, prefers) VALUES
	(10, now() - interval '10 minutes', 'kim@example.com', '+4917012345610', '{email,sms}');
SELECT orderexp.run_due() AS "run_due (reminded, closed)";
SELECT order_key FROM ch.claim('ch.orders', 'email');
SELECT orderexp.fail(o.id, '451 try again later') IS NOT NULL AS retried
  FROM orderexp.outbox o
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '10' AND o.channel = 'email'
   AND o.kind = 'reminder';
SELECT * FROM ch.events('ch.orders') WHERE order_key = '10';
UPDATE orderexp.outbox SET attempts = orderexp._max_attempts(), claimed_by = session_user,
		leased_until = now() - interval '1 second', next_attempt_at = now() - interval '1 second'
 WHERE order_table = 'ch.orders'::regclass AND order_key = '10' AND channel = 'email';
SELECT count(*) AS claimed FROM ch.claim('ch.orders', 'email') c WHERE c.order_key = '10';
SELECT * FROM ch.events('ch.orders') WHERE order_key = '10';
SELECT action, via, left(reason, 60) AS reason FROM orderexp.history('ch.orders', 10);
SELECT * FROM ch.unreachable('ch.orders') WHERE order_key = '10';

-- a fallback is sent only while the order keeps the deadline its reminder
-- was for (not once it is extended, closed, cancelled or reopened): order
-- 11 is extended while its e-mail is out
INSERT INTO ch.orders (id, created_at, email, mobile, prefers) VALUES
	(11, now() - interval '10 minutes', 'lee@example.com', '+4917012345611', '{email,sms}');
SELECT orderexp.run_due() AS "run_due (reminded, closed)";
SELECT order_key FROM ch.claim('ch.orders', 'email');
SELECT orderexp.extend_order('ch.orders', 11, '1 minute') IS NOT NULL AS extended;
SELECT orderexp.fail(o.id, '550 no such user', retryable => false) AS retry_at
  FROM orderexp.outbox o
 WHERE o.order_table = 'ch.orders'::regclass AND o.order_key = '11' AND o.channel = 'email'
   AND o.kind = 'reminder';
SELECT * FROM ch.events('ch.orders') WHERE order_key = '11';

-- ---------------------------------------------------------------------------
-- the view: orderexp_admin sees its own tables only
-- ---------------------------------------------------------------------------
CREATE ROLE ch_other_admin;
GRANT orderexp_admin TO ch_other_admin;
SET ROLE ch_other_admin;
SELECT count(*) AS others_rows FROM orderexp.unreachable;
SELECT count(*) FROM orderexp.unreachable_contacts;
RESET ROLE;
ALTER TABLE ch.csv OWNER TO ch_other_admin;
SET ROLE ch_other_admin;
SELECT DISTINCT order_table FROM orderexp.unreachable;
-- forget_before() forgets them too, of the caller's tables
SELECT audit_rows >= 0 AS forgot FROM orderexp.forget_before(now());
SELECT count(*) AS csv_rows FROM orderexp.unreachable;
RESET ROLE;
SELECT count(*) > 0 AS others_kept FROM orderexp.unreachable WHERE order_table = 'ch.orders'::regclass;
ALTER TABLE ch.csv OWNER TO CURRENT_USER;
DROP ROLE ch_other_admin;

-- unregistering or dropping a table forgets its rows
SELECT orderexp.drop_close_policy('ch.csv');
DROP TABLE ch.orders;
SELECT count(*) AS left_over FROM orderexp.unreachable_contacts
 WHERE order_table::text LIKE 'ch.%' OR order_table::oid NOT IN (SELECT oid FROM pg_class);
