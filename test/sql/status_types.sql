--
-- The triggers of 1.2 test the status in C, not in a WHEN clause: every
-- string type and enums compare as the values were checked at registration
-- (as text: a char(n) column's padding does not count).  For each type: an
-- order inserted unpaid gets a timer, one inserted paid does not; a paid
-- order set back to unpaid gets one again; the sweep's close, a cancel and
-- a payment each give one outcome of the right kind.
--
CREATE SCHEMA st2;
CREATE TYPE st2.state AS ENUM ('open', 'done', 'expired', 'void');

CREATE TABLE st2.o_char (id int PRIMARY KEY, status char(10) NOT NULL,
						 created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE st2.o_varchar (id int PRIMARY KEY, status varchar(20) NOT NULL,
							created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE st2.o_text (id int PRIMARY KEY, status text,
						 created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE st2.o_enum (id int PRIMARY KEY, status st2.state NOT NULL,
						 created_at timestamptz NOT NULL DEFAULT now());

SELECT orderexp.set_close_policy(t, '1 hour', unpaid_value => 'open', closed_value => 'expired',
								 cancelled_value => 'void') IS NOT NULL AS registered
  FROM unnest('{st2.o_char, st2.o_varchar, st2.o_text, st2.o_enum}'::regclass[]) t;

-- no WHEN clause on the row triggers
SELECT tgrelid::regclass, tgname, tgqual IS NULL AS no_when
  FROM pg_trigger
 WHERE tgrelid IN ('st2.o_char'::regclass, 'st2.o_enum'::regclass)
   AND tgname IN ('orderexp_timer_insert', 'orderexp_timer_unpaid', 'orderexp_outcome', 'orderexp_status')
 ORDER BY 1, 2;

-- 1 and 2 open and due, 3 open and not due, 4 done, 5 NULL (text only)
DO $$
DECLARE
	t regclass;
BEGIN
	FOREACH t IN ARRAY '{st2.o_char, st2.o_varchar, st2.o_text, st2.o_enum}'::regclass[] LOOP
		EXECUTE format($q$INSERT INTO %s VALUES
			(1, 'open', now() - interval '2 hours'), (2, 'open', now() - interval '2 hours'),
			(3, 'open', now()), (4, 'done', now())$q$, t);
	END LOOP;
	INSERT INTO st2.o_text VALUES (5, NULL, now());
END;
$$;
SELECT order_table, string_agg(order_key, ',' ORDER BY order_key) AS tracked
  FROM orderexp.timers WHERE order_table::text LIKE 'st2.%' GROUP BY 1 ORDER BY 1;

-- done back to open: tracked again; open to open (no change): nothing new
UPDATE st2.o_char SET status = 'open' WHERE id = 4;
UPDATE st2.o_enum SET status = 'open' WHERE id = 4;
UPDATE st2.o_text SET status = 'open' WHERE id IN (4, 5);
SELECT order_table, string_agg(order_key, ',' ORDER BY order_key) AS tracked
  FROM orderexp.timers WHERE order_table::text LIKE 'st2.%' GROUP BY 1 ORDER BY 1;

-- close 1 and 2 (due), cancel 3, pay 4
SELECT * FROM orderexp.run_due();
SELECT orderexp.cancel_order(t, 3) FROM unnest('{st2.o_char, st2.o_varchar, st2.o_text, st2.o_enum}'::regclass[]) t;
UPDATE st2.o_char SET status = 'done' WHERE id = 4;
UPDATE st2.o_enum SET status = 'done' WHERE id = 4;
UPDATE st2.o_text SET status = 'done' WHERE id = 4;
-- the application closes an order itself: an outcome 'closed' (the trigger's)
INSERT INTO st2.o_char VALUES (6, 'open', now());
UPDATE st2.o_char SET status = 'expired' WHERE id = 6;
-- (the sweep's closes are counted: 'closed x2', one row for the batch)
SELECT order_table,
       string_agg(coalesce(order_key || ':' || outcome, outcome || ' x' || order_count), ','
                  ORDER BY order_key) AS outcomes
  FROM orderexp.outcomes WHERE order_table::text LIKE 'st2.%' GROUP BY 1 ORDER BY 1;

SELECT orderexp.drop_close_policy(t)
  FROM unnest('{st2.o_char, st2.o_varchar, st2.o_text, st2.o_enum}'::regclass[]) t;
DROP SCHEMA st2 CASCADE;
