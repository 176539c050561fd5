--
-- reopen: reopen_order sets an order orderexp closed or cancelled back to
-- unpaid with a fresh deadline, a re-armed reminder and a 'reopened' event;
-- everything else is an error with its SQLSTATE that changes nothing.
--
-- After each failing call, ":'SQLSTATE'" is printed with
-- regress.unchanged() (orderexp's catalog, timers, outbox, the orders) and
-- reopen.audit_unchanged() (the audit trail and the outcomes).
--
\set SHOW_CONTEXT never
CREATE SCHEMA reopen;

CREATE TABLE reopen.orders (
	id			bigint PRIMARY KEY,
	status		text,
	created_at	timestamptz NOT NULL,
	cat			text
);
-- no default policy: category "a" and category "free", whose policy is
-- dropped below, so that its orders are no longer tracked
SELECT orderexp.set_close_policy('reopen.orders', '30 minutes', remind_before => '10 minutes',
		category => 'a', category_column => 'cat', channels => '{email,sms}') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('reopen.orders', '1 hour', category => 'free') IS NOT NULL AS registered;

INSERT INTO reopen.orders VALUES
	(1, 'unpaid', now() - interval '2 hours', 'a'),	-- closed by the sweep below
	(2, 'unpaid', now(), 'a'),						-- cancelled with cancel_order
	(3, 'unpaid', now(), 'a'),						-- paid
	(4, 'unpaid', now(), 'a'),						-- stays unpaid
	(5, 'unpaid', now(), 'a'),						-- closed by the application itself
	(6, 'unpaid', now(), 'a'),						-- cancelled with cancel_orders
	(7, 'unpaid', now() - interval '2 hours', 'a'),	-- closed by the sweep, then a round trip outside orderexp
	(8, 'unpaid', now() - interval '2 hours', 'free');	-- closed by the sweep, then its policy goes
SELECT * FROM orderexp.run_due();
SELECT orderexp.cancel_order('reopen.orders', 2, 'customer called');
UPDATE reopen.orders SET status = 'paid' WHERE id = 3;
UPDATE reopen.orders SET status = 'closed' WHERE id = 5;
SELECT orderexp.cancel_orders('reopen.orders', ARRAY[6], 'duplicate');
UPDATE reopen.orders SET status = 'unpaid' WHERE id = 7;
UPDATE reopen.orders SET status = 'closed' WHERE id = 7;
SELECT orderexp.drop_close_policy('reopen.orders', 'free');
SELECT id, status FROM reopen.orders ORDER BY id;

CREATE FUNCTION reopen.trail_state() RETURNS text LANGUAGE sql AS $$
	SELECT md5(concat_ws('#',
		(SELECT string_agg(a::text, ';' ORDER BY a.id) FROM orderexp.audit a),
		(SELECT string_agg(o::text, ';' ORDER BY o::text) FROM orderexp.outcomes o)))
$$;
CREATE TABLE reopen.baseline AS SELECT reopen.trail_state() AS s;
CREATE FUNCTION reopen.audit_unchanged() RETURNS boolean LANGUAGE sql AS $$
	SELECT reopen.trail_state() = s FROM reopen.baseline
$$;
CREATE FUNCTION reopen.remark() RETURNS void LANGUAGE sql AS $$
	UPDATE reopen.baseline SET s = reopen.trail_state();
	SELECT regress.mark('reopen.orders');
$$;
SELECT reopen.remark();

--
-- errors, each changing nothing
--
-- paid (55000)
SELECT orderexp.reopen_order('reopen.orders', 3);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- unpaid (55000)
SELECT orderexp.reopen_order('reopen.orders', 4);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- closed by the application, not by orderexp (55000)
SELECT orderexp.reopen_order('reopen.orders', 5);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- closed by orderexp, but set back to unpaid and closed again outside orderexp since (55000)
SELECT orderexp.reopen_order('reopen.orders', 7);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- closed by orderexp, but no policy applies to it any more (55000)
SELECT orderexp.reopen_order('reopen.orders', 8);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- unknown key (P0002)
SELECT orderexp.reopen_order('reopen.orders', 99);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- a key that is no bigint (22P02)
SELECT orderexp.reopen_order('reopen.orders', 'one'::text);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- NULLs (22004)
SELECT orderexp.reopen_order('reopen.orders', NULL::bigint);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
SELECT orderexp.reopen_order(NULL, 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- a table orderexp does not know (55000)
SELECT orderexp.reopen_order('regress.baseline', 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
-- close_after not positive, or absurd (22023)
SELECT orderexp.reopen_order('reopen.orders', 1, '0 minutes');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();
SELECT orderexp.reopen_order('reopen.orders', 1, '200 years');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged(), reopen.audit_unchanged();

--
-- reopening the order the sweep closed: the policy's 30 minutes from now,
-- reminder 10 minutes before, one event per channel, one audit row
--
SELECT orderexp.reopen_order('reopen.orders', 1, reason => 'ticket 4711') - now() AS new_deadline_in;
SELECT status FROM reopen.orders WHERE id = 1;
SELECT close_at - now() BETWEEN interval '29 minutes' AND interval '30 minutes' AS in_30_minutes,
       close_at - remind_at AS remind_before, reopened,
       reminded_for IS NULL AS reminder_armed, extensions
  FROM orderexp.timers WHERE order_table = 'reopen.orders'::regclass AND order_key = '1';
SELECT kind, channel, payload->>'previous_status' AS previous_status, payload->>'reason' AS reason,
       payload->>'reopened_by' = current_user AS by_me,
       (payload->>'close_at')::timestamptz = t.close_at AS names_new_deadline
  FROM orderexp.outbox
  LEFT JOIN orderexp.timers t USING (order_table, order_key)
 WHERE kind = 'reopened' AND order_table = 'reopen.orders'::regclass AND order_key = '1'
 ORDER BY id;
SELECT h.action, h.via, h.actor = current_user AS by_me, h.reason,
       h.deadline = t.close_at AS deadline_is_timer, h.deadline < now() AS deadline_passed,
       h.previous_deadline = (SELECT a.deadline FROM orderexp.audit a
                               WHERE a.order_table = 'reopen.orders'::regclass AND a.order_key = '1'
                                 AND a.action = 'closed') AS previous_is_closed_one,
       cardinality(h.event_ids) AS events, h.delivered
  FROM orderexp.history('reopen.orders', 1) h
  LEFT JOIN orderexp.timers t ON t.order_table = 'reopen.orders'::regclass AND t.order_key = '1';
-- reopened once: now it is unpaid, and a second reopen is refused
SELECT orderexp.reopen_order('reopen.orders', 1);
SELECT :'SQLSTATE' AS sqlstate;

-- a cancelled order, with a close_after of its own
SELECT orderexp.reopen_order('reopen.orders', 2, '2 hours') - now() AS new_deadline_in;
SELECT close_at - remind_at AS remind_before FROM orderexp.timers
 WHERE order_table = 'reopen.orders'::regclass AND order_key = '2';
-- cancelled in bulk; a close_after shorter than remind_before arms no reminder
SELECT orderexp.reopen_order('reopen.orders', 6::bigint, '5 minutes') - now() AS new_deadline_in;
SELECT remind_at IS NULL AS no_reminder FROM orderexp.timers
 WHERE order_table = 'reopen.orders'::regclass AND order_key = '6';

-- the sweep closes the reopened order again when its new deadline passes;
-- then it can be reopened once more
UPDATE orderexp.timers SET close_at = now() - interval '1 second'
 WHERE order_table = 'reopen.orders'::regclass AND order_key = '1';
SELECT * FROM orderexp.run_due();
SELECT status FROM reopen.orders WHERE id = 1;
SELECT orderexp.reopen_order('reopen.orders', 1) - now() AS new_deadline_in;
SELECT action, via FROM orderexp.history('reopen.orders', 1);

-- an outcome of a reopened order is marked as such (kept out of policy_stats);
-- the sweep's closes are counted, one row per batch and reopened or not
UPDATE reopen.orders SET status = 'paid' WHERE id = 1;
SELECT order_key, outcome, reopened, order_count FROM orderexp.outcomes
 WHERE order_table = 'reopen.orders'::regclass ORDER BY decided_at, order_key, outcome, reopened, order_count;
