--
-- explain: explain_order(), record_feedback() and set_explanation_template()
--
-- One shop's orders, each with a different history, made within one
-- minute, in three transactions (the first one's now() is kept as t0): a
-- closed order, one extended by the customer's link and by the staff (its
-- reminders one delivered, one withheld because its deadline moved), a
-- reopened one with feedback, cancelled ones, one whose reminder is dead, a
-- paid one.
-- explain_order() of each, with every time
-- shown relative to t0 (so that the expected text does not depend on the
-- day the test runs); the same text, byte for byte, whatever the session's
-- DateStyle, TimeZone and IntervalStyle.  Templates per language; errors
-- with their SQLSTATEs and nothing changed after them; privileges; feedback
-- in history(), policy_stats, experiment_stats and forget_before().
-- (Steps of one transaction are told in the order of their kind: order 3's
-- feedback, recorded before the reopen in the same transaction, comes after
-- it, as in history().)
--
\set SHOW_CONTEXT never
CREATE SCHEMA ex;
CREATE TABLE ex.orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
						created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('ex.orders', '30 minutes', remind_before => '10 minutes',
								 extend_by => '1 hour', max_extensions => 2,
								 channels => '{ex_email,ex_sms}') AS policy_id \gset
CREATE TABLE ex.t0 (t0 timestamptz NOT NULL);

-- explain_order() with its times as minutes from t0, and without the
-- policy ids and the name of the superuser that runs the tests
CREATE FUNCTION ex.explain(tbl regclass, k bigint, lang text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	t text := orderexp.explain_order(tbl, k, lang);
	t0 timestamptz := (SELECT x.t0 FROM ex.t0 x);
	m text;
BEGIN
	t := regexp_replace(t, '(close policy|experiment) \d+', '\1 N', 'g');
	t := regexp_replace(t, '\m' || (SELECT rolname FROM pg_roles WHERE oid = 10) || '\M', '<superuser>', 'g');
	/* explain_order's times, and those of a withheld reminder's reason (with seconds) */
	FOR m IN SELECT DISTINCT x[1]
			   FROM regexp_matches(t, '(\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC)', 'g') x
	LOOP
		t := replace(t, m, format('<t0%s min>',
				to_char(extract(epoch FROM date_trunc('minute', (replace(m, ' UTC', '') || '+00')::timestamptz)
										   - date_trunc('minute', t0)) / 60, 'FMSG9999')));
	END LOOP;
	RETURN t;
END $$;

-- The story is told in three transactions, since a relay takes events only
-- once the transaction that wrote them has committed (with
-- orderexp.batch_delivery on, the default, an event joins the stream of
-- batches at its commit).  They take a second or two; started at most 50
-- seconds into a minute, they all happen within t0's minute, so that
-- clock_timestamp() stamps (ack, fail, claim, a batch's finish) and the
-- later transactions' now() show as t0's minute.
DO $$
BEGIN
	IF extract(second FROM clock_timestamp()) > 50 THEN
		PERFORM pg_sleep(60.5 - extract(second FROM clock_timestamp()));
	END IF;
END $$;
BEGIN;
INSERT INTO ex.t0 VALUES (now());
INSERT INTO ex.orders (id, created_at) VALUES
	(1, now() - interval '40 minutes'),		-- closed at once
	(2, now() - interval '25 minutes'),		-- reminded, then extended twice
	(3, now() - interval '40 minutes'),		-- closed, feedback, reopened
	(4, now()),								-- cancelled with a reason
	(5, now()),								-- cancelled without
	(6, now() - interval '25 minutes'),		-- reminded; the reminder dies
	(7, now() - interval '5 minutes');		-- paid
SELECT * FROM orderexp.run_due();
COMMIT;
BEGIN;
-- the reminders of 2 and 6 go to a relay: 2's email is delivered, 6's email is dead
SELECT count(*) AS claimed
  FROM orderexp.claim(100, '1 hour', channels => '{ex_email}');
SELECT orderexp.ack(ARRAY(SELECT id FROM orderexp.outbox
						   WHERE order_table = 'ex.orders'::regclass AND order_key = '2'
							 AND kind = 'reminder' AND channel = 'ex_email'));
SELECT orderexp.fail(id, 'mailbox does not exist', false) IS NULL AS dead
  FROM orderexp.outbox
 WHERE order_table = 'ex.orders'::regclass AND order_key = '6' AND kind = 'reminder'
   AND channel = 'ex_email';
-- 2: the customer's link, then the staff
SELECT orderexp.extend_order_by_token(payload ->> 'extension_token') IS NOT NULL AS extended_by_token
  FROM orderexp.outbox
 WHERE order_table = 'ex.orders'::regclass AND order_key = '2' AND kind = 'reminder'
   AND channel = 'ex_sms';
SELECT orderexp.extend_order('ex.orders', 2, '30 minutes') IS NOT NULL AS extended_by_staff;
COMMIT;
BEGIN;
-- the text messages go to a relay now: 2's reminder announces a deadline that
-- has moved, so claim() withholds it; 6's goes out (and stays leased)
SELECT count(*) AS claimed FROM orderexp.claim(100, '1 hour', channels => '{ex_sms}');
-- 3: feedback, then reopened
SELECT orderexp.record_feedback('ex.orders', 3, 'closed too early',
								'I was entering my card number {at} that moment') > 0 AS recorded;
SELECT orderexp.reopen_order('ex.orders', 3, reason => 'goodwill') IS NOT NULL AS reopened;
SELECT orderexp.cancel_order('ex.orders', 4, 'customer changed their mind');
SELECT orderexp.cancel_order('ex.orders', 5);
UPDATE ex.orders SET status = 'paid' WHERE id = 7;
COMMIT;

SELECT k AS order, ex.explain('ex.orders', k) AS explanation
  FROM generate_series(1, 7) k ORDER BY k;

-- the same text in every session: DateStyle, TimeZone, IntervalStyle do not matter
CREATE TEMP TABLE texts AS
	SELECT k, orderexp.explain_order('ex.orders', k) AS t FROM generate_series(1, 7) k;
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Kathmandu';
SET IntervalStyle = 'postgres_verbose';
SELECT count(*) AS orders,
	   count(*) FILTER (WHERE orderexp.explain_order('ex.orders', k) = t) AS same_text
  FROM texts;
SET DateStyle = 'German';
SET TimeZone = 'America/St_Johns';
SET IntervalStyle = 'iso_8601';
SELECT count(*) AS orders,
	   count(*) FILTER (WHERE orderexp.explain_order('ex.orders', k) = t) AS same_text
  FROM texts;
RESET DateStyle;
RESET TimeZone;
RESET IntervalStyle;

-- history() shows the feedback among the changes, in order
SELECT action, via, actor = current_user AS by_me, reason, policy_version
  FROM orderexp.history('ex.orders', 3);

--
-- Templates: the shop's words, per language
--
SELECT orderexp.set_explanation_template('placed', 'Bestellung {order} vom {at}.', 'de');
SELECT orderexp.set_explanation_template('closed',
	'Am {at} wurde sie geschlossen, weil sie bis {deadline} nicht bezahlt war.', 'de');
SELECT orderexp.set_explanation_template('policy', 'We keep unpaid orders for {timeout} ({timeout_iso}).');
SELECT ex.explain('ex.orders', 1, 'de') AS de;
SELECT ex.explain('ex.orders', 1, 'de-AT') AS de_at;		-- the language without its region
SELECT ex.explain('ex.orders', 1, 'fr') AS fr;				-- the shop's '*', then orderexp's
SELECT ex.explain('ex.orders', 1) AS shop;
SELECT step, lang, template FROM orderexp.explanation_templates
 WHERE lang <> 'default' ORDER BY step, lang;
-- a NULL template removes the override
SELECT orderexp.set_explanation_template('policy', NULL);
SELECT orderexp.set_explanation_template('closed', NULL, 'de');
SELECT ex.explain('ex.orders', 1, 'de') AS de;
-- every step has a default template, and every default uses only its step's placeholders
SELECT s.step, t.template IS NOT NULL AS has_default,
	   (SELECT coalesce(array_agg(m[1]), '{}') FROM regexp_matches(t.template, '\{([^{}]*)\}', 'g') m
		 WHERE m[1] <> ALL (s.placeholders)) AS unknown_placeholders
  FROM orderexp._explanation_steps() s
  LEFT JOIN orderexp.explanation_templates t ON t.step = s.step AND t.lang = 'default'
 ORDER BY s.rank, s.step;

--
-- Errors: each with its SQLSTATE, and nothing changed
--
SELECT regress.mark('ex.orders');
SELECT orderexp.set_explanation_template('shipped', 'Shipped on {at}.');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template('placed', 'Order {order} placed on {when}.');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template('placed', 'Order {order} {}.');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template('paid', 'Paid {deadline}.');	-- another step's placeholder
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template(NULL, 'x');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template('paid', 'Paid.', 'default');	-- orderexp's own
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template('paid', 'Paid.', 'de DE');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.set_explanation_template('paid', ' ');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.explain_order(NULL, 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.explain_order('ex.orders', NULL::bigint);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.explain_order('ex.orders', 99);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.explain_order('ex.orders', 1, 'de; DROP');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.explain_order('ex.t0', 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.record_feedback('ex.orders', 99, 'complaint', 'where is it');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.record_feedback('ex.orders', 1, 'praise', 'great shop');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.record_feedback('ex.orders', 1, NULL, 'x');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.record_feedback('ex.orders', 1, 'other', NULL);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.record_feedback('ex.orders', 1, 'other', '   ');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SET orderexp.max_reason_length = 64;
SELECT orderexp.record_feedback('ex.orders', 1, 'other', repeat('x', 65));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.record_feedback('ex.orders', 1, 'other', repeat('x', 64)) > 0 AS at_the_limit;
RESET orderexp.max_reason_length;
SELECT NOT regress.unchanged() AS the_feedback_at_the_limit_was_recorded;
DELETE FROM orderexp.feedback WHERE body = repeat('x', 64);

--
-- Privileges: explain_order() and record_feedback() like history(), the
-- templates the administrator's
--
CREATE ROLE regress_ex_clerk LOGIN IN ROLE orderexp_app;
CREATE ROLE regress_ex_reader LOGIN IN ROLE orderexp_app;
CREATE ROLE regress_ex_outsider LOGIN;
GRANT USAGE ON SCHEMA ex TO regress_ex_clerk, regress_ex_reader, regress_ex_outsider;
GRANT SELECT, UPDATE ON ex.orders TO regress_ex_clerk, regress_ex_outsider;
GRANT SELECT ON ex.orders TO regress_ex_reader;
GRANT SELECT ON ex.t0 TO regress_ex_clerk;
SELECT regress.mark('ex.orders');
SET SESSION AUTHORIZATION regress_ex_reader;		-- orderexp_app, but no UPDATE on the table
SELECT orderexp.explain_order('ex.orders', 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.record_feedback('ex.orders', 1, 'complaint', 'no');
SELECT :'SQLSTATE' AS sqlstate;
SET SESSION AUTHORIZATION regress_ex_outsider;	-- UPDATE on the table, but not orderexp_app
SELECT orderexp.explain_order('ex.orders', 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.record_feedback('ex.orders', 1, 'complaint', 'no');
SELECT :'SQLSTATE' AS sqlstate;
SET SESSION AUTHORIZATION regress_ex_clerk;		-- both: works, and the feedback names the clerk
SELECT orderexp.set_explanation_template('paid', 'Paid.');
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM orderexp.feedback;
SELECT :'SQLSTATE' AS sqlstate;
RESET SESSION AUTHORIZATION;
SELECT regress.unchanged();
SET SESSION AUTHORIZATION regress_ex_clerk;
SELECT orderexp.record_feedback('ex.orders', 6, 'reminder not received', 'no email came') > 0 AS recorded;
SELECT ex.explain('ex.orders', 6)
		 ~ 'On <t0\+\d+ min> regress_ex_clerk recorded feedback \(reminder not received\): "no email came"\. It is unpaid'
	   AS told;
RESET SESSION AUTHORIZATION;
SELECT recorded_by, topic, policy_id = :policy_id AS policy, policy_version FROM orderexp.feedback
 WHERE order_key = '6';

--
-- Feedback per policy version and per experiment variant
--
-- version 2 of the policy: one order closed under it, with a complaint
SELECT orderexp.set_close_policy('ex.orders', '20 minutes', remind_before => '10 minutes',
								 extend_by => '1 hour', max_extensions => 2) = :policy_id AS same_policy;
INSERT INTO ex.orders (id, created_at) VALUES (8, now() - interval '1 hour');
SELECT * FROM orderexp.run_due();
SELECT orderexp.record_feedback('ex.orders', 8, 'complaint', 'too short') > 0 AS recorded;
SELECT policy_version, close_after, orders, closed, cancelled, feedback, feedback_per_100_closed
  FROM orderexp.policy_stats WHERE order_table = 'ex.orders'::regclass ORDER BY policy_version;

-- an experiment on another table: each variant's feedback (which order falls
-- into which variant depends on the experiment's id: only checks are shown)
CREATE TABLE ex.orders_ab (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
						   created_at timestamptz NOT NULL DEFAULT now());
SELECT orderexp.set_close_policy('ex.orders_ab', '1 hour', channels => '{ex_email}') > 0 AS registered;
SELECT orderexp.start_experiment('ex.orders_ab', '{20 minutes, 40 minutes}') AS experiment \gset
BEGIN;
UPDATE ex.t0 SET t0 = now();
INSERT INTO ex.orders_ab (id, created_at) SELECT g, now() - interval '2 hours' FROM generate_series(1, 10) g;
SELECT * FROM orderexp.run_due();
SELECT count(*) AS feedback
  FROM ex.orders_ab o, orderexp.record_feedback('ex.orders_ab', o.id, 'closed too early', 'too soon') f
 WHERE o.id <= 3;
SELECT f.variant = orderexp.assign_variant(f.order_key, '{1,1}', :experiment) AS variant_of_the_order,
	   count(*)
  FROM orderexp.feedback f WHERE f.order_table = 'ex.orders_ab'::regclass GROUP BY 1;
COMMIT;
SELECT e.variant,
	   e.orders = (SELECT count(*) FROM generate_series(1, 10) g
					WHERE orderexp.assign_variant(g::text, '{1,1}', :experiment) = e.variant) AS orders_as_assigned,
	   e.feedback = (SELECT count(*) FROM generate_series(1, 3) g
					  WHERE orderexp.assign_variant(g::text, '{1,1}', :experiment) = e.variant) AS feedback_as_assigned,
	   e.feedback_per_100_closed IS NOT DISTINCT FROM round(100.0 * e.feedback / nullif(e.orders, 0), 2)
		   AS per_100_closed
  FROM orderexp.experiment_stats e WHERE e.experiment_id = :experiment ORDER BY e.variant;
SELECT sum(e.orders) AS orders, sum(e.feedback) AS feedback
  FROM orderexp.experiment_stats e WHERE e.experiment_id = :experiment;
-- and explain_order() names the variant
SELECT regexp_replace(regexp_replace(ex.explain('ex.orders_ab', k),
							'variant \d+ of experiment N and had \d+ minutes',
							'variant V of experiment N and had (its variant''s) minutes'),
					  'deadline, <t0-\d+ min>', 'deadline, (its variant''s)') AS explanation,
	   ex.explain('ex.orders_ab', k) ~ format('variant %s of experiment N and had %s minutes',
											  orderexp.assign_variant(k::text, '{1,1}', :experiment),
											  orderexp.assign_variant(k::text, '{1,1}', :experiment) * 20)
		   AS the_orders_variant
  FROM generate_series(1, 2) k ORDER BY k;

--
-- Retention: forget_before() takes the feedback with the audit trail
--
BEGIN;
SELECT (SELECT count(*) FROM orderexp.feedback) > 0 AS has_feedback;
SELECT audit_rows > 0 AS audit_forgotten FROM orderexp.forget_before(now());
SELECT count(*) AS feedback_left FROM orderexp.feedback;
ROLLBACK;

-- clean up
SELECT orderexp.end_experiment('ex.orders_ab', 1);
SELECT orderexp.drop_close_policy('ex.orders');
SELECT orderexp.drop_close_policy('ex.orders_ab');
DELETE FROM orderexp.explanation_templates WHERE lang <> 'default';
DROP SCHEMA ex CASCADE;
DROP ROLE regress_ex_clerk, regress_ex_reader, regress_ex_outsider;
