--
-- reminders: a policy's remind_before makes run_due() write one 'reminder'
-- event per channel when the reminder time of an order passes: with the
-- payload columns, the deadline, the reminder time and, when the customer
-- may still extend, a signed extension token.  Exactly once per deadline;
-- never for an order that is paid, cancelled, closed or past its deadline;
-- re-armed when the deadline moves (extend_order, extend_order_by_token,
-- set_close_policy(reschedule => true)); at once when the reminder time had
-- already passed at registration or insert; never without remind_before.
--
-- The background worker does not run in this database, so nothing happens
-- unless the test calls run_due().  Reminder times are made due by giving
-- orders a created-at in the past.  Nothing printed depends on the clock:
-- timestamps are compared, not shown, and tokens are never shown.
--
\set SHOW_CONTEXT never
CREATE SCHEMA rem;

-- events of a table without the parts that depend on the clock, on serial
-- ids or on the secret (those are checked separately)
CREATE FUNCTION rem.events(tbl regclass, only_kind text DEFAULT NULL)
RETURNS TABLE (kind text, order_key text, channel text, payload jsonb, has_token boolean)
LANGUAGE sql AS $$
	SELECT o.kind, o.order_key, o.channel,
	       o.payload - '{close_at,remind_at,previous_close_at,policy_id,extension_token,extended_by_role}'::text[],
	       o.payload->>'extension_token' IS NOT NULL
	  FROM orderexp.outbox o
	 WHERE o.order_table = tbl AND (only_kind IS NULL OR o.kind = only_kind)
	 ORDER BY length(o.order_key), o.order_key COLLATE "C", o.id
$$;

-- checks of the clock- and secret-dependent parts of the reminders written
-- after the outbox id "since" (called right after the run_due that wrote
-- them, while the timers still hold the deadline they were written for):
-- the deadline, the reminder time and the policy are the timer's, and the
-- token is the one extension_token() makes for that deadline and opens to
-- this order, or null when the customer may not extend
CREATE FUNCTION rem.check_reminders(tbl regclass, since bigint)
RETURNS TABLE (order_key text, channel text, close_at_is_deadline boolean,
               remind_at_right boolean, policy_right boolean, token_right boolean)
LANGUAGE sql AS $$
	SELECT e.order_key, e.channel,
	       (e.payload->>'close_at')::timestamptz = t.close_at,
	       (e.payload->>'remind_at')::timestamptz = t.close_at - p.remind_before,
	       (e.payload->>'policy_id')::int = t.policy_id,
	       CASE WHEN p.extend_by IS NOT NULL AND p.max_extensions > t.token_extensions
	            THEN e.payload->>'extension_token' = orderexp.extension_token(tbl, e.order_key)
	                 AND (SELECT c.order_table = tbl AND c.order_key = e.order_key
	                             AND c.close_at = t.close_at AND c.extensions = t.extensions
	                        FROM orderexp._token_open(e.payload->>'extension_token') c)
	            ELSE e.payload->>'extension_token' IS NULL
	       END
	  FROM orderexp.outbox e
	  JOIN orderexp.timers t ON t.order_table = e.order_table AND t.order_key = e.order_key
	  JOIN orderexp.policies p ON p.id = t.policy_id
	 WHERE e.order_table = tbl AND e.kind = 'reminder' AND e.id > since
	 ORDER BY length(e.order_key), e.order_key COLLATE "C", e.id
$$;

-- reminder timers of a table: whether a reminder is still to come, and how
-- long before the deadline
CREATE FUNCTION rem.timers(tbl regclass)
RETURNS TABLE (order_key text, reminder_armed boolean, remind_before interval,
               reminder_due boolean, extensions integer, token_extensions integer)
LANGUAGE sql AS $$
	SELECT t.order_key, t.remind_at IS NOT NULL, t.close_at - t.remind_at,
	       t.remind_at <= now(), t.extensions, t.token_extensions
	  FROM orderexp.timers t
	 WHERE t.order_table = tbl
	 ORDER BY length(t.order_key), t.order_key COLLATE "C"
$$;

CREATE FUNCTION rem.last_event_id()
RETURNS bigint
LANGUAGE sql AS $$
	SELECT coalesce(max(id), 0) FROM orderexp.outbox
$$;

CREATE TABLE rem.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL,
	amount		numeric NOT NULL,
	plan		text
);
-- default: remind 10 minutes before a 1-hour deadline; the customer may
-- extend twice by 2 minutes
SELECT orderexp.set_close_policy('rem.orders', '1 hour', remind_before => '10 minutes',
                                 extend_by => '2 minutes', max_extensions => 2,
                                 category_column => 'plan', payload_columns => '{amount}',
                                 channels => '{email,sms}') IS NOT NULL AS registered;
-- 'day': once by a day
SELECT orderexp.set_close_policy('rem.orders', '1 hour', remind_before => '10 minutes',
                                 extend_by => '1 day', max_extensions => 1,
                                 category => 'day') IS NOT NULL AS registered;
-- 'noext': reminded 15 minutes before, no extensions
SELECT orderexp.set_close_policy('rem.orders', '1 hour', remind_before => '15 minutes',
                                 category => 'noext') IS NOT NULL AS registered;
-- 'maxzero': an extend_by, but no extensions for the customer
SELECT orderexp.set_close_policy('rem.orders', '1 hour', remind_before => '10 minutes',
                                 extend_by => '1 day', max_extensions => 0,
                                 category => 'maxzero') IS NOT NULL AS registered;
-- 'noremind': no remind_before, so no reminders at all
SELECT orderexp.set_close_policy('rem.orders', '1 hour', extend_by => '1 day',
                                 max_extensions => 1, category => 'noremind') IS NOT NULL AS registered;

INSERT INTO rem.orders VALUES
	(1,  'unpaid', now() - interval '58 minutes', 10,  NULL),		-- reminder due, deadline in 2 minutes
	(2,  'unpaid', now(),                         20,  NULL),		-- reminder in 50 minutes
	(3,  'unpaid', now() - interval '55 minutes', 30,  NULL),		-- paid below
	(4,  'unpaid', now() - interval '55 minutes', 40,  NULL),		-- cancelled below
	(5,  'unpaid', now() - interval '2 hours',    50,  NULL),		-- deadline passed: closed, not reminded
	(6,  'unpaid', now() - interval '55 minutes', 60,  NULL),		-- closed by hand below
	(7,  'unpaid', now() - interval '55 minutes', 70,  'day'),
	(8,  'unpaid', now() - interval '50 minutes', 80,  'noext'),		-- 15 minutes before: due
	(9,  'unpaid', now() - interval '55 minutes', 90,  'maxzero'),
	(10, 'unpaid', now() - interval '55 minutes', 100, 'noremind'),
	(11, 'paid',   now() - interval '55 minutes', 110, NULL),		-- paid from the start: not tracked
	(12, 'unpaid', now() - interval '55 minutes', 120, NULL);		-- deleted below
UPDATE rem.orders SET status = 'paid' WHERE id = 3;
SELECT orderexp.cancel_order('rem.orders', 4);
UPDATE rem.orders SET status = 'closed' WHERE id = 6;
DELETE FROM rem.orders WHERE id = 12;

-- the reminder time of each timer: close_at - remind_before of its policy;
-- none for the 'noremind' order
SELECT * FROM regress.deadlines('rem.orders');
SELECT * FROM rem.timers('rem.orders');
SELECT order_key, close_at - remind_at AS remind_before, remind_at <= now() AS reminder_due
  FROM orderexp.pending WHERE order_table = 'rem.orders'::regclass
 ORDER BY length(order_key), order_key;

--
-- run_due: one reminder per channel for the unpaid orders whose reminder
-- time has passed and whose deadline has not; the overdue order is closed
--
SELECT rem.last_event_id() AS ev0 \gset
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.orders');
-- every reminder has the same keys, extension_token included (null when
-- the customer may not extend)
SELECT DISTINCT (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(payload) k) AS reminder_keys
  FROM orderexp.outbox WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder';
-- the deadline, the reminder time, the policy and the token are right
SELECT * FROM rem.check_reminders('rem.orders', :ev0);
-- the token is URL-safe and is the same in every channel's event
SELECT order_key, count(DISTINCT payload->>'extension_token') AS distinct_tokens,
       bool_and(payload->>'extension_token' ~ '^[A-Za-z0-9_-]+$') AS url_safe
  FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder'
   AND payload->>'extension_token' IS NOT NULL
 GROUP BY order_key ORDER BY order_key;
-- the deadline of the reminded orders has not passed; the reminder was
-- written when it was due
SELECT DISTINCT (payload->>'close_at')::timestamptz > created_at AS before_deadline,
       (payload->>'remind_at')::timestamptz <= created_at AS after_remind_at
  FROM orderexp.outbox WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder';
-- every due reminder was dealt with: remind_at is cleared for the reminded,
-- paid, closed and deleted orders; order 2's reminder is still to come
SELECT * FROM rem.timers('rem.orders');
SELECT id, status FROM rem.orders ORDER BY id;

-- exactly once: a second run_due writes no reminder
SELECT * FROM orderexp.run_due();
SELECT count(*) AS reminder_events FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder';

-- never for an order that is paid, cancelled, closed (by hand or by the
-- sweep), deleted, or whose policy has no remind_before
SELECT id, (SELECT string_agg(DISTINCT e.kind, ',') FROM orderexp.outbox e
             WHERE e.order_table = 'rem.orders'::regclass AND e.order_key = o.id::text) AS events
  FROM (VALUES (3), (4), (5), (6), (10), (11), (12)) AS o(id)
 ORDER BY id;

--
-- re-armed when the deadline moves: a new reminder for the new deadline
--
-- 1. extend_order_by_token with the token of the reminder
SELECT rem.last_event_id() AS ev1 \gset
SELECT close_at AS close1 FROM orderexp.timers
 WHERE order_table = 'rem.orders'::regclass AND order_key = '1' \gset
SELECT payload->>'extension_token' AS token1 FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND order_key = '1' AND channel = 'email' \gset
SELECT orderexp.extend_order_by_token(:'token1') - :'close1'::timestamptz AS extended_by;
SELECT * FROM rem.timers('rem.orders') WHERE order_key = '1';
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.orders') WHERE order_key = '1';
SELECT * FROM rem.check_reminders('rem.orders', :ev1);
SELECT (payload->>'close_at')::timestamptz - :'close1'::timestamptz AS new_deadline_minus_old
  FROM orderexp.outbox WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND id > :ev1;
-- the first token has been used: it is refused, and its reminder is not repeated
SELECT orderexp.extend_order_by_token(:'token1');
SELECT * FROM orderexp.run_due();

-- 2. extend_order (an operator's extension: not counted against the
-- customer's extensions, but it outdates the token of the last reminder)
SELECT rem.last_event_id() AS ev2 \gset
SELECT payload->>'extension_token' AS token2 FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND id > :ev1 AND channel = 'email' \gset
SELECT orderexp.extend_order('rem.orders', 1) - :'close1'::timestamptz AS moved_since_first_reminder;
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.orders', 'reminder') WHERE order_key = '1';
SELECT * FROM rem.check_reminders('rem.orders', :ev2);
SELECT orderexp.extend_order_by_token(:'token2');

-- 3. the last customer extension: its reminder offers no more
SELECT rem.last_event_id() AS ev3 \gset
SELECT payload->>'extension_token' AS token3 FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND id > :ev2 AND channel = 'email' \gset
SELECT orderexp.extend_order_by_token(:'token3') - :'close1'::timestamptz AS moved_since_first_reminder;
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.orders', 'reminder') WHERE order_key = '1' AND has_token IS FALSE;
SELECT * FROM rem.check_reminders('rem.orders', :ev3);
SELECT * FROM rem.timers('rem.orders') WHERE order_key = '1';

-- 4. an extension that moves the reminder time into the future: armed, not due
SELECT payload->>'extension_token' AS token7 FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND order_key = '7' AND channel = 'email' \gset
SELECT orderexp.extend_order_by_token(:'token7') IS NOT NULL AS extended;
SELECT * FROM rem.timers('rem.orders') WHERE order_key = '7';
SELECT * FROM orderexp.run_due();

-- 5. set_close_policy(reschedule => true) that moves the deadline re-arms
-- the reminder: 'noext' now closes after 70 minutes, reminding 25 before
SELECT rem.last_event_id() AS ev5 \gset
SELECT close_at AS close8 FROM orderexp.timers
 WHERE order_table = 'rem.orders'::regclass AND order_key = '8' \gset
SELECT orderexp.set_close_policy('rem.orders', '70 minutes', remind_before => '25 minutes',
                                 category => 'noext', reschedule => true) IS NOT NULL AS rescheduled;
SELECT * FROM rem.timers('rem.orders') WHERE order_key = '8';
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.orders', 'reminder') WHERE order_key = '8';
SELECT * FROM rem.check_reminders('rem.orders', :ev5);
SELECT (payload->>'close_at')::timestamptz - :'close8'::timestamptz AS new_deadline_minus_old
  FROM orderexp.outbox WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND id > :ev5;

-- 6. a reschedule that leaves the deadline where it was is no new deadline:
-- no second reminder ('maxzero' unchanged, order 9 already reminded)
SELECT orderexp.set_close_policy('rem.orders', '1 hour', remind_before => '10 minutes',
                                 extend_by => '1 day', max_extensions => 0,
                                 category => 'maxzero', reschedule => true) IS NOT NULL AS rescheduled;
SELECT * FROM orderexp.run_due();
SELECT count(*) AS reminder_events_of_order_9 FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder' AND order_key = '9';

-- 7. remind_before NULL: an extension arms nothing either
SELECT orderexp.extend_order('rem.orders', 10) IS NOT NULL AS extended;
SELECT * FROM rem.timers('rem.orders') WHERE order_key = '10';
SELECT * FROM orderexp.run_due();

-- exactly once per deadline, per channel
SELECT order_key,
       count(*) FILTER (WHERE channel = 'email') AS email,
       count(*) FILTER (WHERE channel = 'sms') AS sms,
       count(DISTINCT payload->>'close_at') AS deadlines
  FROM orderexp.outbox
 WHERE order_table = 'rem.orders'::regclass AND kind = 'reminder'
 GROUP BY order_key ORDER BY length(order_key), order_key;

--
-- a reminder time that has already passed when the order is registered or
-- inserted: one reminder at once
--
CREATE TABLE rem.late (id integer PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO rem.late VALUES
	(1, 'unpaid', now() - interval '55 minutes'),		-- deadline in 5 minutes, reminder 5 minutes ago
	(2, 'unpaid', now() - interval '52 minutes'),		-- reminder 2 minutes ago
	(3, 'unpaid', now()),								-- not due
	(4, 'paid',   now() - interval '55 minutes');		-- not tracked
SELECT orderexp.set_close_policy('rem.late', '1 hour', remind_before => '10 minutes') IS NOT NULL AS registered;
SELECT * FROM rem.timers('rem.late');
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.late');
SELECT * FROM orderexp.run_due();
-- inserted with a deadline nearer than remind_before
INSERT INTO rem.late VALUES (5, 'unpaid', now() - interval '59 minutes');
SELECT * FROM rem.timers('rem.late') WHERE order_key = '5';
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.late') WHERE order_key = '5';
SELECT * FROM orderexp.run_due();
-- an order set back to unpaid by hand is tracked again, with its reminder
UPDATE rem.late SET status = 'paid' WHERE id = 3;
UPDATE rem.late SET status = 'unpaid', created_at = now() - interval '51 minutes' WHERE id = 3;
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.late') WHERE order_key = '3';

-- the sweep closes an overdue order without reminding it first, even when
-- its reminder was never sent
INSERT INTO rem.late VALUES (6, 'unpaid', now() - interval '3 hours');
SELECT * FROM orderexp.run_due();
SELECT * FROM rem.events('rem.late') WHERE order_key = '6';

--
-- an order whose key is too long for an extension token (text keys may be
-- longer than the 1024 bytes a token holds) still gets its reminder, and
-- does not hold up the reminders and closes of the other orders of its table
--
CREATE TABLE rem.textkeys (k text PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('rem.textkeys', '1 hour', remind_before => '10 minutes',
                                 extend_by => '1 hour', max_extensions => 1) IS NOT NULL AS registered;
INSERT INTO rem.textkeys VALUES
	(repeat('k', 1100), 'unpaid', now() - interval '55 minutes'),	-- reminder due
	('short',           'unpaid', now() - interval '55 minutes'),	-- reminder due
	('overdue',         'unpaid', now() - interval '2 hours');		-- to be closed
SELECT * FROM orderexp.run_due();
SELECT length(k) AS key_length, status FROM rem.textkeys ORDER BY length(k), k;
SELECT length(order_key) AS key_length, kind, count(*) AS events
  FROM orderexp.outbox WHERE order_table = 'rem.textkeys'::regclass
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT payload->>'extension_token' IS NOT NULL AS short_key_has_token
  FROM orderexp.outbox
 WHERE order_table = 'rem.textkeys'::regclass AND kind = 'reminder' AND order_key = 'short';
SELECT last_error FROM orderexp.tables WHERE order_table = 'rem.textkeys'::regclass;

--
-- clean up
--
SET client_min_messages = warning;
DROP SCHEMA rem CASCADE;
RESET client_min_messages;
DELETE FROM orderexp.outbox;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers;
