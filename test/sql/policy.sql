--
-- policy: registering tables with set_close_policy, key types, odd
-- identifiers, custom status words, categories, policy changes,
-- drop_close_policy, and the policy_config view.
--
-- Deadlines are printed relative to each order's created-at (regress.deadlines)
-- so that nothing printed depends on the clock.  Only hours and minutes are
-- used as intervals, so that daylight saving time cannot shift a difference.
--
CREATE SCHEMA pol;

--
-- bigint key and all the defaults; a table that already has orders
--
CREATE TABLE pol.big (
	id			bigint PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz
);
INSERT INTO pol.big VALUES
	(1, 'unpaid', now() - interval '3 hours'),		-- old: overdue once registered
	(2, 'unpaid', now() - interval '10 minutes'),	-- young
	(3, 'paid',   now() - interval '3 hours'),		-- paid: never tracked
	(4, 'closed', now() - interval '3 hours'),
	(5, 'unpaid', NULL);							-- no created-at: timed from now

BEGIN;
SELECT orderexp.set_close_policy('pol.big', '1 hour') IS NOT NULL AS registered;
-- the row without created-at is timed from the moment it was tracked
SELECT t.close_at = now() + interval '1 hour' AS timed_from_now
  FROM orderexp.timers t WHERE t.order_table = 'pol.big'::regclass AND t.order_key = '5';
COMMIT;

-- the mapping defaults: primary key, status, created_at, no category,
-- unpaid/closed/cancelled, no payload columns, {email}
SELECT order_table, category, close_after, remind_before, extend_by, max_extensions,
       key_column, key_type, status_column, created_column, category_column,
       unpaid_value, closed_value, cancelled_value, payload_columns, channels,
       last_error
  FROM orderexp.policy_config WHERE order_table = 'pol.big'::regclass;
-- the returned id is the policy's id
SELECT orderexp.set_close_policy('pol.big', '1 hour') AS big_policy \gset
SELECT :big_policy = (SELECT id FROM orderexp.policies
                       WHERE order_table = 'pol.big'::regclass AND category IS NULL) AS returns_policy_id;

SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'pol.big'::regclass AND NOT tgisinternal ORDER BY 1;

-- existing unpaid rows got deadlines from their created-at; paid and closed ones none
SELECT * FROM regress.deadlines('pol.big') WHERE order_key <> '5';

-- a new unpaid order gets a timer; a new paid order does not
INSERT INTO pol.big VALUES (6, 'unpaid', now() - interval '20 minutes'),
                           (7, 'paid', now() - interval '20 minutes');
SELECT * FROM regress.deadlines('pol.big') WHERE order_key <> '5';

-- the old order is overdue and is closed by the next sweep; the others are not
SELECT * FROM orderexp.run_due();
SELECT id, status FROM pol.big ORDER BY id;
SELECT order_key FROM orderexp.timers WHERE order_table = 'pol.big'::regclass ORDER BY 1;

-- an order set back to unpaid outside orderexp is tracked again
UPDATE pol.big SET status = 'unpaid', created_at = now() - interval '5 minutes' WHERE id = 7;
SELECT * FROM regress.deadlines('pol.big') WHERE order_key = '7';
-- a payment does not touch the timer (it is dropped lazily by the sweep)
UPDATE pol.big SET status = 'paid' WHERE id = 7;
SELECT count(*) AS timer_of_paid_order
  FROM orderexp.timers WHERE order_table = 'pol.big'::regclass AND order_key = '7';

--
-- integer, text, varchar and uuid keys
--
CREATE TABLE pol.int_key (id integer PRIMARY KEY, status text, created_at timestamptz);
CREATE TABLE pol.text_key (code text PRIMARY KEY, status text, created_at timestamptz);
CREATE TABLE pol.uuid_key (id uuid PRIMARY KEY, status text, created_at timestamptz);
INSERT INTO pol.int_key VALUES (10, 'unpaid', now() - interval '30 minutes'),
                               (11, 'paid', now() - interval '30 minutes');
INSERT INTO pol.text_key VALUES ('A-1', 'unpaid', now() - interval '30 minutes'),
                                ('b 2', 'unpaid', now() - interval '40 minutes');
INSERT INTO pol.uuid_key VALUES ('00000000-0000-0000-0000-00000000000a', 'unpaid', now() - interval '30 minutes');
SELECT orderexp.set_close_policy('pol.int_key', '2 hours') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('pol.text_key', '90 minutes') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('pol.uuid_key', '45 minutes') IS NOT NULL AS registered;
INSERT INTO pol.int_key VALUES (12, 'unpaid', now());
INSERT INTO pol.text_key VALUES ('c''3', 'unpaid', now());
INSERT INTO pol.uuid_key VALUES ('00000000-0000-0000-0000-00000000000B', 'unpaid', now());
SELECT order_table, key_column, key_type FROM orderexp.policy_config
 WHERE order_table IN ('pol.int_key'::regclass, 'pol.text_key'::regclass, 'pol.uuid_key'::regclass)
 ORDER BY order_table::text;
SELECT * FROM regress.deadlines('pol.int_key');
SELECT * FROM regress.deadlines('pol.text_key');
SELECT * FROM regress.deadlines('pol.uuid_key');

-- a unique non-primary-key column named with key_column, of type varchar
CREATE TABLE pol.varchar_key (
	internal_id	integer PRIMARY KEY,
	ref			varchar(20) NOT NULL UNIQUE,
	status		varchar(12) NOT NULL,
	created_at	timestamptz NOT NULL
);
INSERT INTO pol.varchar_key VALUES (1, 'R-1', 'unpaid', now() - interval '10 minutes');
SELECT orderexp.set_close_policy('pol.varchar_key', '1 hour', key_column => 'ref') IS NOT NULL AS registered;
SELECT key_column, key_type FROM orderexp.policy_config WHERE order_table = 'pol.varchar_key'::regclass;
SELECT * FROM regress.deadlines('pol.varchar_key');

--
-- a partitioned table: orders inserted into any partition are tracked under
-- the registered (partitioned) table
--
CREATE TABLE pol.parted (id int PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL)
	PARTITION BY RANGE (id);
CREATE TABLE pol.parted_1 PARTITION OF pol.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE pol.parted_2 PARTITION OF pol.parted FOR VALUES FROM (100) TO (200);
INSERT INTO pol.parted VALUES (1, 'unpaid', now() - interval '10 minutes');
SELECT orderexp.set_close_policy('pol.parted', '1 hour') IS NOT NULL AS registered;
INSERT INTO pol.parted VALUES (2, 'unpaid', now()), (150, 'unpaid', now());
SELECT * FROM regress.deadlines('pol.parted');
SELECT count(*) AS timers_of_partitions FROM orderexp.timers
 WHERE order_table IN ('pol.parted_1'::regclass, 'pol.parted_2'::regclass);

--
-- quoted identifiers, custom status words in an enum, timestamp without time
-- zone, a category column and per-category policies
--
CREATE SCHEMA "My Shop";
CREATE TYPE "My Shop"."Pay State" AS ENUM ('new', 'settled', 'expired', 'voided');
CREATE TABLE "My Shop"."Orders" (
	"Order ID"			bigint PRIMARY KEY,
	"Pay Status"		"My Shop"."Pay State" NOT NULL,
	"Created At"		timestamp NOT NULL,
	"Product Category"	text,
	"Total €"			numeric NOT NULL
);
INSERT INTO "My Shop"."Orders" VALUES
	(1, 'new',     localtimestamp - interval '20 minutes', 'books', 10),
	(2, 'new',     localtimestamp - interval '20 minutes', 'music', 20),
	(3, 'new',     localtimestamp - interval '20 minutes', NULL,    30),
	(4, 'settled', localtimestamp - interval '20 minutes', 'books', 40);
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '1 hour',
		status_column => 'Pay Status', created_column => 'Created At',
		category_column => 'Product Category',
		unpaid_value => 'new', closed_value => 'expired', cancelled_value => 'voided',
		payload_columns => '{"Total €","Product Category"}',
		channels => '{email,sms}') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '3 hours', category => 'books') IS NOT NULL AS registered;
SELECT order_table, category, close_after, key_column, key_type, status_column,
       created_column, category_column, unpaid_value, closed_value, cancelled_value,
       payload_columns, channels
  FROM orderexp.policy_config WHERE order_table = '"My Shop"."Orders"'::regclass
 ORDER BY category NULLS FIRST;
-- the triggers quote the identifiers; they take no arguments (1.3: the
-- functions read the registration) and have no WHEN clause (1.2: the
-- functions compare the status)
SELECT tgname, regexp_replace(pg_get_triggerdef(oid), '''[0-9]{4,}''', '''<oid>''') AS def FROM pg_trigger
 WHERE tgrelid = '"My Shop"."Orders"'::regclass AND NOT tgisinternal ORDER BY 1;
-- books: its own policy (taken over from the default at once); music has no
-- policy of its own and NULL is no category: both the default
SELECT * FROM regress.deadlines('"My Shop"."Orders"');
-- new orders: per category, with created-at converted from timestamp
INSERT INTO "My Shop"."Orders" VALUES
	(5, 'new', localtimestamp - interval '1 minute', 'books', 50),
	(6, 'new', localtimestamp - interval '1 minute', 'toys', 60),
	(7, 'new', localtimestamp - interval '1 minute', NULL, 70),
	(8, 'settled', localtimestamp - interval '1 minute', 'toys', 80);
SELECT * FROM regress.deadlines('"My Shop"."Orders"');
SELECT order_key, category FROM orderexp.pending
 WHERE order_table = '"My Shop"."Orders"'::regclass ORDER BY order_key COLLATE "C";

--
-- changing a policy: existing deadlines stay unless reschedule => true
--
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '2 hours') IS NOT NULL AS changed;
-- the mapping is kept: NULL mapping arguments keep the table's mapping
SELECT status_column, created_column, category_column, unpaid_value, closed_value,
       cancelled_value, payload_columns, channels
  FROM orderexp.policy_config
 WHERE order_table = '"My Shop"."Orders"'::regclass AND category IS NULL;
SELECT * FROM regress.deadlines('"My Shop"."Orders"');
-- a new order uses the changed policy
INSERT INTO "My Shop"."Orders" VALUES (9, 'new', localtimestamp, 'music', 90);
SELECT * FROM regress.deadlines('"My Shop"."Orders"') WHERE order_key = '9';

--
-- the row triggers take no arguments: they read the table's registration
-- (through a cache in each backend), so a changed mapping counts from the
-- next statement on
--
CREATE TABLE pol.remap (id int PRIMARY KEY, status text NOT NULL,
						created_at timestamptz NOT NULL DEFAULT now(), kind text);
SELECT orderexp.set_close_policy('pol.remap', '1 hour') IS NOT NULL AS registered;
SELECT tgname, tgnargs FROM pg_trigger
 WHERE tgrelid = 'pol.remap'::regclass AND NOT tgisinternal ORDER BY 1;
INSERT INTO pol.remap (id, status) VALUES (1, 'unpaid'), (2, 'unpaid'), (3, 'unpaid');
-- this session reads the registration here
UPDATE pol.remap SET status = 'cancelled' WHERE id = 1;
SELECT orderexp.set_close_policy('pol.remap', '1 hour', cancelled_value => 'void',
								 category_column => 'kind') IS NOT NULL AS remapped;
-- 'void' is the cancelled value now; 'cancelled' is just another status, a payment
UPDATE pol.remap SET status = 'void' WHERE id = 2;
UPDATE pol.remap SET status = 'cancelled' WHERE id = 3;
SELECT order_key, outcome, status FROM orderexp.outcomes
 WHERE order_table = 'pol.remap'::regclass ORDER BY order_key;
-- and a new order's timer has the category column of the new mapping
SELECT orderexp.set_close_policy('pol.remap', '10 minutes', category => 'gift') IS NOT NULL AS gift_policy;
INSERT INTO pol.remap VALUES (4, 'unpaid', now(), 'gift');
SELECT order_key, close_at - (SELECT created_at FROM pol.remap WHERE id = 4) AS after
  FROM orderexp.timers WHERE order_table = 'pol.remap'::regclass AND order_key = '4';
-- a trigger of orderexp on a table that is not registered refuses, and the
-- row is not written
CREATE TABLE pol.unregistered (id int PRIMARY KEY, status text, created_at timestamptz);
CREATE TRIGGER orderexp_timer_insert AFTER INSERT ON pol.unregistered
	FOR EACH ROW EXECUTE FUNCTION orderexp.timer_trigger();
INSERT INTO pol.unregistered VALUES (1, 'unpaid', now());
SELECT count(*) AS rows FROM pol.unregistered;
DROP TABLE pol.unregistered, pol.remap;
-- reschedule: the default policy's orders (not the books ones) from created-at
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '2 hours', reschedule => true) IS NOT NULL AS rescheduled;
SELECT * FROM regress.deadlines('"My Shop"."Orders"');
-- the books policy changed and rescheduled: only books orders move
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '4 hours', category => 'books',
                                 reschedule => true) IS NOT NULL AS rescheduled;
SELECT * FROM regress.deadlines('"My Shop"."Orders"');

--
-- a new category policy takes over the orders of its category
--
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '30 minutes', category => 'toys') IS NOT NULL AS registered;
SELECT * FROM regress.deadlines('"My Shop"."Orders"');
INSERT INTO "My Shop"."Orders" VALUES (10, 'new', localtimestamp, 'toys', 100);
SELECT * FROM regress.deadlines('"My Shop"."Orders"') WHERE order_key = '10';
SELECT category, close_after FROM orderexp.policy_config
 WHERE order_table = '"My Shop"."Orders"'::regclass ORDER BY category NULLS FIRST;

--
-- an overdue order of this table is closed with the custom status word, and
-- its events carry the oddly named payload columns, once per channel
--
INSERT INTO "My Shop"."Orders" VALUES (20, 'new', localtimestamp - interval '5 hours', 'music', 200);
SELECT * FROM orderexp.run_due();
SELECT "Order ID", "Pay Status" FROM "My Shop"."Orders" WHERE "Order ID" = 20;
SELECT * FROM regress.events('"My Shop"."Orders"');
SELECT (o.payload->>'close_at')::timestamptz = r."Created At"::timestamptz + interval '2 hours' AS close_at_right,
       (o.payload->>'policy_id')::int = p.id AS policy_id_right
  FROM orderexp.outbox o
  JOIN "My Shop"."Orders" r ON r."Order ID"::text = o.order_key
  JOIN orderexp.policies p ON p.order_table = o.order_table AND p.category IS NULL
 WHERE o.order_table = '"My Shop"."Orders"'::regclass;
SELECT count(*) AS timer_left FROM orderexp.timers
 WHERE order_table = '"My Shop"."Orders"'::regclass AND order_key = '20';

--
-- drop_close_policy for a category: its orders fall back to the default policy
--
SELECT orderexp.drop_close_policy('"My Shop"."Orders"', 'books');
SELECT * FROM regress.deadlines('"My Shop"."Orders"');
INSERT INTO "My Shop"."Orders" VALUES (11, 'new', localtimestamp, 'books', 110);
SELECT * FROM regress.deadlines('"My Shop"."Orders"') WHERE order_key = '11';
SELECT category, close_after FROM orderexp.policy_config
 WHERE order_table = '"My Shop"."Orders"'::regclass ORDER BY category NULLS FIRST;

--
-- a table with category policies only: other categories are not tracked
-- until a default policy appears
--
CREATE TABLE pol.cat_only (id int PRIMARY KEY, status text, created_at timestamptz, kind text);
INSERT INTO pol.cat_only VALUES (1, 'unpaid', now() - interval '10 minutes', 'food'),
                                (2, 'unpaid', now() - interval '10 minutes', 'tools'),
                                (3, 'unpaid', now() - interval '10 minutes', NULL);
SELECT orderexp.set_close_policy('pol.cat_only', '15 minutes', category => 'food',
                                 category_column => 'kind') IS NOT NULL AS registered;
INSERT INTO pol.cat_only VALUES (4, 'unpaid', now(), 'food'), (5, 'unpaid', now(), 'tools');
SELECT * FROM regress.deadlines('pol.cat_only');
SELECT orderexp.set_close_policy('pol.cat_only', '1 hour') IS NOT NULL AS default_added;
SELECT * FROM regress.deadlines('pol.cat_only');
-- dropping the category policy: its orders fall back to the new default
SELECT orderexp.drop_close_policy('pol.cat_only', 'food');
SELECT * FROM regress.deadlines('pol.cat_only');

--
-- drop_close_policy for the whole table: triggers, policies and timers go
--
SELECT orderexp.drop_close_policy('"My Shop"."Orders"');
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid = '"My Shop"."Orders"'::regclass AND NOT tgisinternal;
SELECT (SELECT count(*) FROM orderexp.tables WHERE order_table = '"My Shop"."Orders"'::regclass) AS tables,
       (SELECT count(*) FROM orderexp.policies WHERE order_table = '"My Shop"."Orders"'::regclass) AS policies,
       (SELECT count(*) FROM orderexp.timers WHERE order_table = '"My Shop"."Orders"'::regclass) AS timers,
       (SELECT count(*) FROM orderexp.pending WHERE order_table = '"My Shop"."Orders"'::regclass) AS pending;
-- the events written so far stay
SELECT count(*) AS events_kept FROM orderexp.outbox WHERE order_table = '"My Shop"."Orders"'::regclass;
-- new orders are not tracked any more, and the orders themselves are untouched
INSERT INTO "My Shop"."Orders" VALUES (12, 'new', localtimestamp - interval '5 hours', 'music', 120);
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = '"My Shop"."Orders"'::regclass;
SELECT "Pay Status", count(*) FROM "My Shop"."Orders" GROUP BY 1 ORDER BY 1;
-- and it can be registered again
SELECT orderexp.set_close_policy('"My Shop"."Orders"', '1 hour',
		status_column => 'Pay Status', created_column => 'Created At',
		unpaid_value => 'new', closed_value => 'expired', cancelled_value => 'voided') IS NOT NULL AS registered;
SELECT count(*) AS timers FROM orderexp.timers WHERE order_table = '"My Shop"."Orders"'::regclass;

--
-- policy_config: one row per policy, with the mapping of its table
--
SELECT order_table::text COLLATE "C" AS order_table, category, close_after, remind_before,
       extend_by, max_extensions, key_column, status_column, unpaid_value
  FROM orderexp.policy_config
 ORDER BY 1, category NULLS FIRST;
SELECT orderexp.set_close_policy('pol.int_key', '2 hours', remind_before => '30 minutes',
                                 extend_by => '1 hour', max_extensions => 2) IS NOT NULL AS changed;
SELECT category, close_after, remind_before, extend_by, max_extensions
  FROM orderexp.policy_config WHERE order_table = 'pol.int_key'::regclass;
-- remind_before applies to orders timed from now on (and on reschedule)
INSERT INTO pol.int_key VALUES (13, 'unpaid', now());
SELECT * FROM regress.deadlines('pol.int_key');

--
-- clean up: dropping the tables forgets them
--
SET client_min_messages = warning;
DROP SCHEMA pol CASCADE;
DROP SCHEMA "My Shop" CASCADE;
RESET client_min_messages;
DELETE FROM orderexp.outbox;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers;
