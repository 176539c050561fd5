--
-- tokens: the whole life of an extension token.  extension_token() signs
-- the order's current deadline and extension count; extend_order_by_token()
-- extends the order once with it.  Every damaged, truncated, foreign,
-- outdated or no longer applicable token is refused and changes nothing;
-- only a role that may update the orders table gets a token or uses one,
-- and the secret and the functions that read it are the extension owner's.
--
-- Tokens contain a random secret's signature and a table OID, so they are
-- never printed: they are kept in psql variables or in tok.saved, and only
-- their properties, the SQLSTATEs and the differences they make are shown.
-- After each refused call, regress.unchanged() shows that orderexp's
-- catalog, timers and outbox and the orders are as regress.mark() saw them.
--
\set SHOW_CONTEXT never
CREATE SCHEMA tok;

CREATE TABLE tok.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL,
	created_at	timestamptz NOT NULL,
	amount		numeric NOT NULL,
	plan		text
);
-- default: a customer may extend three times by a day
SELECT orderexp.set_close_policy('tok.orders', '1 hour', extend_by => '1 day', max_extensions => 3,
                                 category_column => 'plan', payload_columns => '{amount}',
                                 channels => '{email,sms}') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('tok.orders', '1 hour', extend_by => '1 day', max_extensions => 1,
                                 category => 'one') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('tok.orders', '1 hour', category => 'noext') IS NOT NULL AS registered;
SELECT orderexp.set_close_policy('tok.orders', '1 hour', extend_by => '1 day', max_extensions => 0,
                                 category => 'maxzero') IS NOT NULL AS registered;
INSERT INTO tok.orders
SELECT id, 'unpaid', now(), id * 10, NULL
  FROM unnest(ARRAY[1, 2, 3, 8, 9, 10, 11, 13, 14, 15, 100]) AS id;
INSERT INTO tok.orders VALUES
	(4, 'unpaid', now() - interval '2 hours', 40, NULL),	-- deadline passed, not swept yet
	(5, 'unpaid', now(), 50, 'one'),
	(6, 'unpaid', now(), 60, 'noext'),
	(7, 'unpaid', now(), 70, 'maxzero');

-- a second registered table, with a category policy only: kind 'y' is not tracked
CREATE TABLE tok.other (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL, kind text);
SELECT orderexp.set_close_policy('tok.other', '1 hour', extend_by => '2 hours', max_extensions => 2,
                                 category => 'x', category_column => 'kind') IS NOT NULL AS registered;
INSERT INTO tok.other VALUES (1, 'unpaid', now(), 'x'), (2, 'unpaid', now(), 'x'), (3, 'unpaid', now(), 'y');
-- not registered
CREATE TABLE tok.unreg (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO tok.unreg VALUES (1, 'unpaid', now());

-- tokens are kept here, never shown
CREATE TABLE tok.saved (name text PRIMARY KEY, token text NOT NULL);
CREATE FUNCTION tok.token(token_name text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT s.token FROM tok.saved s WHERE s.name = token_name $$;

-- the deadline of an order
CREATE FUNCTION tok.deadline(tbl regclass, k text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
	SELECT t.close_at FROM orderexp.timers t WHERE t.order_table = tbl AND t.order_key = k
$$;

-- try a token: its SQLSTATE and message if refused, 'accepted' if it
-- worked (and then undo the extension, so that every try sees the same state)
CREATE FUNCTION tok.attempt(token text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM orderexp.extend_order_by_token(token);
	RAISE EXCEPTION 'accepted' USING ERRCODE = 'OXACC';
EXCEPTION WHEN OTHERS THEN
	RETURN CASE WHEN SQLSTATE = 'OXACC' THEN 'accepted' ELSE SQLSTATE || ': ' || SQLERRM END;
END;
$$;

-- every one-character alteration of a token: each position replaced by
-- each other base64url character, and each letter with its case flipped
CREATE FUNCTION tok.tamper(token text)
RETURNS TABLE (variant text, every_position_tried boolean, accepted bigint,
               refused_55000 bigint, other_error bigint, all_invalid_22023 boolean)
LANGUAGE sql AS $$
	WITH alphabet AS (
		SELECT c FROM regexp_split_to_table(
			'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', '') AS c),
	pos AS (
		SELECT i, substr(token, i, 1) AS orig FROM generate_series(1, length(token)) AS i),
	variants AS (
		SELECT 'replace each character' AS variant, overlay(token PLACING a.c FROM p.i FOR 1) AS t
		  FROM pos p CROSS JOIN alphabet a
		 WHERE a.c <> p.orig
		UNION ALL
		SELECT 'flip the case of each letter',
		       overlay(token PLACING CASE WHEN p.orig = upper(p.orig) THEN lower(p.orig)
		                                  ELSE upper(p.orig) END FROM p.i FOR 1)
		  FROM pos p
		 WHERE p.orig ~ '[A-Za-z]'),
	tried AS (
		SELECT v.variant, left(tok.attempt(v.t), 5) AS st FROM variants v)
	SELECT t.variant,
	       count(*) = CASE WHEN t.variant = 'replace each character' THEN 63 * length(token)
	                       ELSE length(regexp_replace(token, '[^A-Za-z]', '', 'g')) END,
	       count(*) FILTER (WHERE t.st = 'accep'),
	       count(*) FILTER (WHERE t.st = '55000'),
	       count(*) FILTER (WHERE t.st NOT IN ('accep', '55000', '22023')),
	       count(*) = count(*) FILTER (WHERE t.st = '22023')
	  FROM tried t
	 GROUP BY t.variant
	 ORDER BY t.variant DESC
$$;

-- the claims part of a token (everything but the signature), decoded
CREATE FUNCTION tok.claims(token text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
	SELECT substr(b, 1, length(b) - 32)
	  FROM decode(translate(token, '-_', '+/') || repeat('=', (4 - length(token) % 4) % 4), 'base64') AS b
$$;

SELECT regress.mark('tok.orders', 'tok.other');

--
-- 1. a token's life: made, used once, refused the second time
--
INSERT INTO tok.saved VALUES ('t1', orderexp.extension_token('tok.orders', 1));
-- making a token changes nothing
SELECT regress.unchanged();
-- URL-safe: base64url without padding
SELECT token ~ '^[A-Za-z0-9_-]+$' AS url_safe, strpos(token, '=') = 0 AS no_padding
  FROM tok.saved WHERE name = 't1';
-- it names the order, its deadline and its extension count (the owner can read it)
SELECT c.order_table, c.order_key, c.close_at = tok.deadline('tok.orders', '1') AS close_at_is_deadline,
       c.extensions
  FROM orderexp._token_open(tok.token('t1')) c;
-- the same order, deadline and count give the same token, whatever the key's type
SELECT orderexp.extension_token('tok.orders', 1) = tok.token('t1') AS same_again,
       orderexp.extension_token('tok.orders', 1::bigint) = tok.token('t1') AS same_from_bigint,
       orderexp.extension_token('tok.orders', '1'::text) = tok.token('t1') AS same_from_text;

-- used: the new deadline is the old one plus the policy's extend_by
SELECT tok.deadline('tok.orders', '1') AS close1 \gset
SELECT orderexp.extend_order_by_token(tok.token('t1')) - :'close1'::timestamptz AS new_minus_old;
SELECT tok.deadline('tok.orders', '1') - :'close1'::timestamptz AS timer_moved_by;
SELECT * FROM regress.deadlines('tok.orders') WHERE order_key = '1';
SELECT extensions, token_extensions FROM orderexp.timers
 WHERE order_table = 'tok.orders'::regclass AND order_key = '1';
SELECT id, status FROM tok.orders WHERE id = 1;
-- one 'extended' event per channel, via the token
SELECT * FROM regress.events('tok.orders');
SELECT channel,
       (payload->>'close_at')::timestamptz = tok.deadline('tok.orders', '1') AS close_at_is_new_deadline,
       (payload->>'previous_close_at')::timestamptz = :'close1'::timestamptz AS previous_close_at_right,
       payload->>'extended_by_role' = current_user AS extended_by_caller
  FROM orderexp.outbox WHERE order_table = 'tok.orders'::regclass ORDER BY id;

-- the same token again: refused, nothing changes
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t1'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- a token for the new deadline works, once
INSERT INTO tok.saved VALUES ('t1b', orderexp.extension_token('tok.orders', 1));
SELECT tok.token('t1b') <> tok.token('t1') AS new_token;
SELECT orderexp.extend_order_by_token(tok.token('t1b')) - :'close1'::timestamptz AS new_minus_first;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t1b'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extend_order_by_token(tok.token('t1'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT count(*) AS extended_events FROM orderexp.outbox WHERE order_table = 'tok.orders'::regclass;

--
-- 2. tampering: every one-character change of a valid token is refused
-- (22023: the signature does not match) and changes nothing.  Keys of 1, 2
-- and 3 characters give tokens of 50, 51 and 52 bytes: the three shapes of
-- a base64url tail.
--
INSERT INTO tok.saved
SELECT 't' || id, orderexp.extension_token('tok.orders', id) FROM unnest(ARRAY[2, 10, 100]) AS id;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT s.name, length(s.token) AS token_length, t.*
  FROM tok.saved s CROSS JOIN LATERAL tok.tamper(s.token) t
 WHERE s.name IN ('t2', 't10', 't100')
 ORDER BY length(s.token), t.variant DESC;
SELECT regress.unchanged();
-- the unaltered tokens still work
SELECT name, orderexp.extend_order_by_token(token) - now() > interval '1 day' AS extended
  FROM tok.saved WHERE name IN ('t2', 't10', 't100') ORDER BY name;

--
-- 3. malformed tokens: 22023 (NULL: 22004), nothing changes
--
INSERT INTO tok.saved VALUES ('t1c', orderexp.extension_token('tok.orders', 1));
SELECT regress.mark('tok.orders', 'tok.other');
SELECT v.variant, tok.attempt(v.token) AS result
  FROM tok.saved s CROSS JOIN LATERAL (VALUES
	('drop the last character',   left(s.token, -1)),
	('drop the last two',         left(s.token, -2)),
	('drop the first character',  substr(s.token, 2)),
	('keep the first half',       left(s.token, length(s.token) / 2)),
	('keep the second half',      substr(s.token, length(s.token) / 2)),
	('append a character',        s.token || 'A'),
	('append "=" padding',        s.token || '='),
	('append "==" padding',       s.token || '=='),
	('twice',                     s.token || s.token),
	('reversed',                  reverse(s.token)),
	('lower case',                lower(s.token)),
	('upper case',                upper(s.token)),
	('"+" inside',                overlay(s.token PLACING '+' FROM 10 FOR 1)),
	('"/" inside',                overlay(s.token PLACING '/' FROM 10 FOR 1)),
	('"." inside',                overlay(s.token PLACING '.' FROM 10 FOR 1)),
	('"~" inside',                overlay(s.token PLACING '~' FROM 10 FOR 1)),
	('"%2D" inside',              overlay(s.token PLACING '%2D' FROM 10 FOR 1)),
	('non-ASCII inside',          overlay(s.token PLACING 'é' FROM 10 FOR 1)),
	('space inside',              overlay(s.token PLACING ' ' FROM 10 FOR 1)),
	('spaces around',             ' ' || s.token || ' '),
	('newline after',             s.token || E'\n'),
	('empty',                     ''),
	('garbage',                   'garbage'),
	('a sentence',                'not a token at all'),
	('base64 of a word',          'aGVsbG8'),
	('only letters',              repeat('A', 68)),
	('very long',                 repeat('A', 100000))) AS v(variant, token)
 WHERE s.name = 't1c';
SELECT regress.unchanged();
SELECT orderexp.extend_order_by_token(NULL);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- the token itself still works
SELECT orderexp.extend_order_by_token(tok.token('t1c')) IS NOT NULL AS extended;

--
-- 4. tokens that were valid and no longer apply: 55000, nothing changes
--
INSERT INTO tok.saved
SELECT 't' || id, orderexp.extension_token('tok.orders', id) FROM unnest(ARRAY[3, 5, 9, 11, 13]) AS id;

-- after payment (the detail names the status)
UPDATE tok.orders SET status = 'paid' WHERE id = 3;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t3'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.orders', 3);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- after a cancel
SELECT orderexp.cancel_order('tok.orders', 9);
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t9'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- closed by hand
UPDATE tok.orders SET status = 'closed' WHERE id = 11;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t11'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- max_extensions used up: policy 'one' allows one customer extension
SELECT orderexp.extend_order_by_token(tok.token('t5')) IS NOT NULL AS extended;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extension_token('tok.orders', 5);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- the token just used
SELECT orderexp.extend_order_by_token(tok.token('t5'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- even a correctly signed token for the current deadline (made by the owner)
SELECT orderexp._token_make(t.order_table, t.order_key, t.close_at, t.extensions, t.generation) AS signed5
  FROM orderexp.timers t WHERE t.order_table = 'tok.orders'::regclass AND t.order_key = '5' \gset
SELECT orderexp.extend_order_by_token(:'signed5');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- an operator's extension is not the customer's: it works, and still no token
SELECT orderexp.extend_order('tok.orders', 5) IS NOT NULL AS extended;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extension_token('tok.orders', 5);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- a policy without extend_by, or with max_extensions 0: no token (the
-- detail names the policy id, which depends on earlier tests: terse)
\set VERBOSITY terse
SELECT orderexp.extension_token('tok.orders', 6);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.orders', 7);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- and a correctly signed token does not help
SELECT orderexp._token_make(t.order_table, t.order_key, t.close_at, t.extensions, t.generation) AS signed7
  FROM orderexp.timers t WHERE t.order_table = 'tok.orders'::regclass AND t.order_key = '7' \gset
SELECT orderexp.extend_order_by_token(:'signed7');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- after the deadline (the detail names it: terse).  Order 4's deadline has
-- passed, but no sweep has closed it yet.
SELECT orderexp.extension_token('tok.orders', 4);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp._token_make(t.order_table, t.order_key, t.close_at, t.extensions, t.generation) AS signed4
  FROM orderexp.timers t WHERE t.order_table = 'tok.orders'::regclass AND t.order_key = '4' \gset
SELECT orderexp.extend_order_by_token(:'signed4');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- a token made shortly before the deadline and used after it
INSERT INTO tok.orders VALUES (12, 'unpaid', now() - interval '1 hour' + interval '2 seconds', 120, NULL);
INSERT INTO tok.saved VALUES ('t12', orderexp.extension_token('tok.orders', 12));
DO $$
BEGIN
	PERFORM pg_sleep(greatest(0, extract(epoch FROM tok.deadline('tok.orders', '12') - clock_timestamp())) + 0.1);
END;
$$;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t12'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
\set VERBOSITY default
-- once the sweep has closed them, the detail names the status
SELECT * FROM orderexp.run_due();
SELECT id, status FROM tok.orders WHERE id IN (4, 12) ORDER BY id;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t12'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.orders', 4);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

-- a used token stays used when the order is paid and set back to unpaid
-- (tracked again) with the deadline it had when the token was made
SELECT orderexp.extend_order_by_token(tok.token('t13')) IS NOT NULL AS extended;
UPDATE tok.orders SET status = 'paid' WHERE id = 13;
UPDATE tok.orders SET status = 'unpaid' WHERE id = 13;
SELECT order_key, after_created FROM regress.deadlines('tok.orders') WHERE order_key = '13';
SELECT regress.mark('tok.orders', 'tok.other');
SELECT split_part(tok.attempt(tok.token('t13')), ':', 1) AS used_token_again;
SELECT regress.unchanged();

--
-- 5. extension_token's own errors, nothing changes
--
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extension_token('tok.orders', 999);				-- no such order
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.unreg', 1);					-- not registered
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.other', 3);					-- no policy for its category
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token(NULL, 1);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.orders', NULL::bigint);
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT orderexp.extension_token('tok.orders', 'one'::text);		-- not a valid key
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- 6. tokens are URL-safe for every key: text keys of 1 to 40 characters
-- (every length of base64url tail) and with characters that URLs escape
--
CREATE TABLE tok.keys (k text PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('tok.keys', '1 hour', extend_by => '1 hour', max_extensions => 1) IS NOT NULL AS registered;
INSERT INTO tok.keys
SELECT k, 'unpaid', now()
  FROM (SELECT repeat('k', n) FROM generate_series(1, 40) n
        UNION ALL VALUES ('A-17'), ('a/b+c=d'), ('x y'), ('?&#%'), ('ü'), ('日本'), ('😀')) AS v(k);
SELECT count(*) AS tokens,
       bool_and(t ~ '^[A-Za-z0-9_-]+$') AS url_safe,
       bool_and(strpos(t, '=') = 0) AS no_padding,
       count(DISTINCT length(t) % 4) AS tail_shapes,
       bool_and((orderexp._token_open(t)).order_key = k) AS name_their_key,
       count(DISTINCT t) AS distinct_tokens
  FROM (SELECT k, orderexp.extension_token('tok.keys', k) AS t FROM tok.keys) s;

--
-- 7. a token acts on the table it names
--
INSERT INTO tok.saved VALUES ('other1', orderexp.extension_token('tok.other', 1)),
                             ('other2', orderexp.extension_token('tok.other', 2));
SELECT tok.deadline('tok.orders', '1') AS orders1, tok.deadline('tok.other', '1') AS other1 \gset
SELECT orderexp.extend_order_by_token(tok.token('other1')) - :'other1'::timestamptz AS other_1_moved_by;
SELECT tok.deadline('tok.orders', '1') = :'orders1'::timestamptz AS orders_1_unchanged;
SELECT * FROM regress.events('tok.other');

--
-- 8. privileges: the caller needs the role orderexp_app and UPDATE on the
-- orders table, nothing on orderexp's tables; the secret and the internal
-- functions are the owner's
--
CREATE ROLE regress_ox_tok_reader IN ROLE orderexp_app;	-- may read the orders, not update them
CREATE ROLE regress_ox_tok_app IN ROLE orderexp_app;	-- may update the orders; nothing in orderexp
-- (USAGE on the schemas, to name the functions and tables)
GRANT USAGE ON SCHEMA orderexp, tok TO regress_ox_tok_reader, regress_ox_tok_app;
GRANT SELECT ON tok.orders, tok.other, tok.saved TO regress_ox_tok_reader, regress_ox_tok_app;
GRANT UPDATE ON tok.orders TO regress_ox_tok_app;
GRANT INSERT ON tok.saved TO regress_ox_tok_app;
INSERT INTO tok.saved VALUES ('t14', orderexp.extension_token('tok.orders', 14));

SELECT regress.mark('tok.orders', 'tok.other');
SET ROLE regress_ox_tok_reader;
SELECT orderexp.extension_token('tok.orders', 14);
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.extend_order_by_token(tok.token('t14'));
SELECT :'SQLSTATE' AS sqlstate;
RESET ROLE;
SELECT regress.unchanged();

SET ROLE regress_ox_tok_app;
-- no privilege on any table, view or sequence of orderexp
SELECT count(*) > 0 AS has_relations,
       count(*) FILTER (WHERE CASE WHEN c.relkind = 'S'
                                   THEN has_sequence_privilege(c.oid, 'USAGE, SELECT, UPDATE')
                                   ELSE has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
                              END) AS privileged_on
  FROM pg_class c WHERE c.relnamespace = 'orderexp'::regnamespace AND c.relkind IN ('r', 'v', 'S');
INSERT INTO tok.saved VALUES ('t14app', orderexp.extension_token('tok.orders', 14));
SELECT tok.token('t14app') = tok.token('t14') AS same_token_as_the_owners, current_user;
SELECT orderexp.extend_order_by_token(tok.token('t14app')) IS NOT NULL AS extended, current_user;
-- still itself, also after an error in the part that runs as the owner
DO $$
BEGIN
	PERFORM orderexp.extend_order_by_token(tok.token('t14app'));
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'refused with %, now running as %', SQLSTATE, current_user;
END;
$$;
SELECT current_user, session_user = current_user AS is_session_user;
SELECT count(*) FROM orderexp.secret;
SELECT :'SQLSTATE' AS sqlstate;
SELECT count(*) FROM orderexp.timers;
SELECT :'SQLSTATE' AS sqlstate;
-- a token of a table it may not update
SELECT orderexp.extend_order_by_token(tok.token('other2'));
SELECT :'SQLSTATE' AS sqlstate;
-- the internal functions and the secret are the owner's
SELECT orderexp._token_make('tok.orders', '14', now(), 0, 1);
SELECT :'SQLSTATE' AS sqlstate;
SELECT * FROM orderexp._token_open(tok.token('t14'));
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp._extension_token('tok.orders', '14');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp._extend_order_by_token(tok.token('t14'), 'someone');
SELECT :'SQLSTATE' AS sqlstate;
SELECT orderexp.rotate_secret();
SELECT :'SQLSTATE' AS sqlstate;
INSERT INTO orderexp.secret (secret) VALUES (decode(repeat('00', 32), 'hex'));
SELECT :'SQLSTATE' AS sqlstate;
RESET ROLE;
-- the event names the role that extended
SELECT channel, payload->>'via' AS via, payload->>'extended_by_role' AS extended_by_role
  FROM orderexp.outbox WHERE order_table = 'tok.orders'::regclass AND order_key = '14' ORDER BY id;
-- PUBLIC
SELECT has_table_privilege('public', 'orderexp.secret', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
           AS public_on_secret;
SELECT f AS function, has_function_privilege('public', f, 'EXECUTE') AS public_may_execute
  FROM unnest(ARRAY['orderexp._token_make(regclass, text, timestamptz, integer, bigint)',
                    'orderexp._token_open(text)',
                    'orderexp._extension_token(regclass, text)',
                    'orderexp._extend_order_by_token(text, name)',
                    'orderexp.rotate_secret()',
                    'orderexp._secret_single_row()']) AS f;

--
-- 9. the secret: one row of 32 random bytes; after rotate_secret() every
-- earlier token is refused with 22023; a token of another database too
--
SELECT count(*) AS rows, bool_and(length(secret) = 32) AS bytes_32 FROM orderexp.secret;
CREATE TABLE tok.old_secret AS SELECT secret FROM orderexp.secret;
INSERT INTO tok.saved VALUES ('t8', orderexp.extension_token('tok.orders', 8));
SELECT orderexp.rotate_secret();
SELECT count(*) AS rows, bool_and(length(secret) = 32) AS bytes_32,
       bool_and(secret <> (SELECT o.secret FROM tok.old_secret o)) AS changed
  FROM orderexp.secret;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('t8'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
-- a token made now is a different one, and works
INSERT INTO tok.saved VALUES ('t8b', orderexp.extension_token('tok.orders', 8));
SELECT tok.token('t8b') <> tok.token('t8') AS different,
       tok.claims(tok.token('t8b')) = tok.claims(tok.token('t8')) AS same_claims;
SELECT orderexp.extend_order_by_token(tok.token('t8b')) IS NOT NULL AS extended;
-- rotating again, or inserting a secret as a restore does, keeps one row
SELECT orderexp.rotate_secret();
INSERT INTO orderexp.secret (secret) VALUES (orderexp._new_secret());
SELECT count(*) AS rows FROM orderexp.secret;
-- a too short secret is refused (the detail shows the row: terse)
\set VERBOSITY terse
INSERT INTO orderexp.secret (secret) VALUES ('\x00'::bytea);
SELECT :'SQLSTATE' AS sqlstate, (SELECT count(*) FROM orderexp.secret) AS rows;
\set VERBOSITY default

-- another database: the same claims signed there, and a token of its own
SELECT current_database() AS regress_db,
       t.order_table::oid AS orders_oid, t.close_at AS close15, t.extensions AS ext15,
       t.generation AS gen15
  FROM orderexp.timers t WHERE t.order_table = 'tok.orders'::regclass AND t.order_key = '15' \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regression_orderexp_tokens;
RESET client_min_messages;
CREATE DATABASE regression_orderexp_tokens;
\c regression_orderexp_tokens
CREATE EXTENSION orderexp;
SELECT orderexp._token_make(:orders_oid::oid::regclass, '15', :'close15'::timestamptz, :ext15, :gen15) AS foreign15 \gset
CREATE TABLE o (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('o', '1 hour', extend_by => '1 day', max_extensions => 1) IS NOT NULL AS registered;
INSERT INTO o VALUES (15, 'unpaid', now());
SELECT orderexp.extension_token('o', 15) AS foreign_own \gset
\c :regress_db
\set SHOW_CONTEXT never
DROP DATABASE regression_orderexp_tokens;
INSERT INTO tok.saved VALUES ('t15', orderexp.extension_token('tok.orders', 15));
SELECT tok.claims(:'foreign15') = tok.claims(tok.token('t15')) AS same_claims,
       :'foreign15' <> tok.token('t15') AS different_signature;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(:'foreign15');
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
SELECT split_part(tok.attempt(:'foreign_own'), ':', 1) AS foreign_own_token;
SELECT regress.unchanged();
SELECT orderexp.extend_order_by_token(tok.token('t15')) IS NOT NULL AS own_token_works;

--
-- 10. the table a token names is unregistered or dropped: 22023
--
INSERT INTO tok.saved VALUES ('other2b', orderexp.extension_token('tok.other', 2));
SELECT orderexp.drop_close_policy('tok.other');
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('other2b'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();
CREATE TABLE tok.dropped (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('tok.dropped', '1 hour', extend_by => '1 day', max_extensions => 1) IS NOT NULL AS registered;
INSERT INTO tok.dropped VALUES (1, 'unpaid', now());
INSERT INTO tok.saved VALUES ('dropped1', orderexp.extension_token('tok.dropped', 1));
DROP TABLE tok.dropped;
SELECT regress.mark('tok.orders', 'tok.other');
SELECT orderexp.extend_order_by_token(tok.token('dropped1'));
SELECT :'SQLSTATE' AS sqlstate, regress.unchanged();

--
-- clean up
--
SET client_min_messages = warning;
DROP SCHEMA tok CASCADE;
DROP OWNED BY regress_ox_tok_reader, regress_ox_tok_app;
DROP ROLE regress_ox_tok_reader, regress_ox_tok_app;
RESET client_min_messages;
DELETE FROM orderexp.outbox;
SELECT (SELECT count(*) FROM orderexp.tables) AS tables,
       (SELECT count(*) FROM orderexp.policies) AS policies,
       (SELECT count(*) FROM orderexp.timers) AS timers,
       (SELECT count(*) FROM orderexp.secret) AS secret;
