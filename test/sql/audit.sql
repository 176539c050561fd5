--
-- audit: every state change orderexp makes leaves one audit row, written in
-- the same transaction, saying why and by whom; history() lists them oldest
-- first with the ids and delivery state of the events, and keeps working
-- when the events are gone.
--
\set SHOW_CONTEXT never
CREATE SCHEMA aud;

CREATE TABLE aud.orders (
	id			integer PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL
);
SELECT orderexp.set_close_policy('aud.orders', '1 hour', remind_before => '15 minutes',
		extend_by => '30 minutes', max_extensions => 2, channels => '{email,webhook}') AS pol \gset
SELECT version AS v1 FROM orderexp.policies WHERE id = :pol \gset

INSERT INTO aud.orders VALUES
	(1, 'unpaid', now() - interval '3 hours'),	-- closed at its deadline
	(2, 'unpaid', now()),						-- cancelled
	(3, 'unpaid', now()),						-- extended by the operator, then by the customer
	(4, 'unpaid', now()),						-- cancelled in bulk
	(5, 'unpaid', now()),						-- cancelled in bulk
	(6, 'unpaid', now());						-- paid (not audited), so left alone by the bulk cancel

-- a change of the policy is a new version; orders tracked from now on carry it
SELECT orderexp.set_close_policy('aud.orders', '2 hours', remind_before => '15 minutes',
		extend_by => '30 minutes', max_extensions => 2) = :pol AS same_policy;
SELECT version - :v1 AS versions_later FROM orderexp.policies WHERE id = :pol;
INSERT INTO aud.orders VALUES (7, 'unpaid', now() - interval '3 hours');	-- closed under version 2
SELECT order_key, policy_version - :v1 AS version_offset FROM orderexp.timers
 WHERE order_table = 'aud.orders'::regclass AND order_key IN ('1', '7') ORDER BY 1;

SELECT * FROM orderexp.run_due();
SELECT orderexp.cancel_order('aud.orders', 2, 'customer changed their mind');
SELECT orderexp.extend_order('aud.orders', 3, '10 minutes') - created_at AS deadline_after_created
  FROM aud.orders WHERE id = 3;
SELECT orderexp.extend_order_by_token(orderexp.extension_token('aud.orders', 3))
       - created_at AS deadline_after_created
  FROM aud.orders WHERE id = 3;
UPDATE aud.orders SET status = 'paid' WHERE id = 6;
SELECT orderexp.cancel_orders('aud.orders', ARRAY[4, 5, 6], 'fraud check');

-- one row per change, nothing for the payment
SELECT order_key, action, via, actor = current_user AS by_me, reason,
       policy_id = :pol AS right_policy, policy_version - :v1 AS version_offset,
       deadline - o.created_at AS deadline_after_created,
       previous_deadline - o.created_at AS previous_after_created
  FROM orderexp.audit a
  JOIN aud.orders o ON o.id = a.order_key::integer
 WHERE a.order_table = 'aud.orders'::regclass
 ORDER BY a.id;

-- each change wrote its events in the same transaction: history finds them
SELECT h.action, h.via, cardinality(h.event_ids) AS events, h.delivered,
       (SELECT array_agg(DISTINCT o.kind) FROM orderexp.outbox o WHERE o.id = ANY (h.event_ids)) AS kinds
  FROM orderexp.history('aud.orders', 3) h;

-- support's one query: why was order 1 closed?
SELECT action, via, actor, policy_id = :pol AS right_policy, policy_version - :v1 AS version_offset,
       deadline < now() AS deadline_had_passed, cardinality(event_ids) AS events, delivered
  FROM orderexp.history('aud.orders', 1);

-- delivery state: one channel delivered is not delivered
UPDATE orderexp.outbox SET delivered_at = now()
 WHERE order_table = 'aud.orders'::regclass AND order_key = '1' AND channel = 'email';
SELECT delivered FROM orderexp.history('aud.orders', 1);
UPDATE orderexp.outbox SET delivered_at = now()
 WHERE order_table = 'aud.orders'::regclass AND order_key = '1';
SELECT delivered FROM orderexp.history('aud.orders', 1);

-- the trail does not depend on delivery: pruning takes the events but not
-- the records of changes (1.3: the first event of each change), so history
-- stays and still names the events each change wrote
DELETE FROM orderexp.outbox WHERE order_table = 'aud.orders'::regclass AND via IS NULL;
SELECT count(*) AS records_kept FROM orderexp.outbox
 WHERE order_table = 'aud.orders'::regclass AND via IS NOT NULL;
SELECT a.order_key, h.action, h.via, cardinality(h.event_ids) AS events, h.delivered
  FROM orderexp.audit a, LATERAL orderexp.history('aud.orders', a.order_key) h
 WHERE a.order_table = 'aud.orders'::regclass AND a.order_key IN ('1', '3') AND h.id = a.id
 ORDER BY a.id;

-- the key in any type the key column takes; nothing for an order never touched
SELECT count(*) FROM orderexp.history('aud.orders', '3'::text);
SELECT count(*) FROM orderexp.history('aud.orders', 6);
SELECT count(*) FROM orderexp.history('aud.orders', 12345);

-- errors
SELECT * FROM orderexp.history(NULL, 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM orderexp.history('aud.orders', NULL::integer);
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM orderexp.history('regress.baseline', 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM orderexp.history('aud.orders', 'x'::text);
SELECT :'SQLSTATE' AS sqlstate;

-- a failed change writes no audit row
SELECT count(*) AS audit_rows FROM orderexp.audit WHERE order_table = 'aud.orders'::regclass \gset
SELECT orderexp.cancel_order('aud.orders', 6);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.extend_order('aud.orders', 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT count(*) - :audit_rows AS new_audit_rows FROM orderexp.audit
 WHERE order_table = 'aud.orders'::regclass;

-- retention: rows older than the cutoff go (two made old here)
UPDATE orderexp.audit SET at = at - interval '2 days'
 WHERE order_table = 'aud.orders'::regclass AND order_key = '2';
UPDATE orderexp.outcomes SET decided_at = decided_at - interval '2 days'
 WHERE order_table = 'aud.orders'::regclass AND order_key = '2';
SELECT * FROM orderexp.forget_before(now() - interval '1 day');
SELECT count(*) FROM orderexp.history('aud.orders', 2);
-- a settled record goes whole; a record whose event is still to be
-- delivered only stops being a record and stays an event for the relays
UPDATE orderexp.outbox SET created_at = created_at - interval '2 days', delivered_at = NULL
 WHERE order_table = 'aud.orders'::regclass AND order_key = '3' AND via IS NOT NULL;
UPDATE orderexp.outbox SET delivered_at = now()
 WHERE id = (SELECT min(id) FROM orderexp.outbox
			  WHERE order_table = 'aud.orders'::regclass AND order_key = '3' AND via IS NOT NULL);
SELECT * FROM orderexp.forget_before(now() - interval '1 day');
SELECT kind, channel IS NOT NULL AS has_channel, via, actor, reason, event_ids,
	   delivered_at IS NULL AS undelivered, next_attempt_at <= now() AS claimable
  FROM orderexp.outbox WHERE order_table = 'aud.orders'::regclass AND order_key = '3';
SELECT count(*) FROM orderexp.history('aud.orders', 3);
SELECT * FROM orderexp.forget_before(NULL);
SELECT :'SQLSTATE' AS sqlstate;

-- an order's records are found by the hash index outbox_history (of part
-- 0, which holds them), which the other events are not in, reminders
-- excepted (in the current rotating part, 1 here)
\i test/sql/include/plan_uses.sql
SET enable_seqscan = off;
SELECT pg_temp.plan_uses($$SELECT a.id FROM orderexp.audit a
						  WHERE a.order_table = 'aud.orders'::regclass AND a.order_key = '1'$$,
						'outbox_0_history') AS audit_by_outbox_history;
-- and so are its reminders, which explain_order() tells (its query)
SELECT pg_temp.plan_uses($$SELECT x.id FROM orderexp.outbox x
						  WHERE x.kind = 'reminder' AND x.order_table = 'aud.orders'::regclass
						    AND x.order_key = '1' AND x.obsolete_at IS NULL$$,
						'outbox_1_history') AS reminders_by_outbox_history;
RESET enable_seqscan;
