-- Extension tokens, their whole life: extension_token() signs the order's
-- current deadline and extension count, URL-safe; extend_order_by_token()
-- extends once by the policy's extend_by and writes an 'extended' event per
-- channel via 'token'; the same token again, any one-character change of
-- it, a truncated, empty, garbage or NULL token, a token made before
-- rotate_secret(), after payment, after the deadline or with no extensions
-- left is refused and changes nothing.  Only a role that may UPDATE the
-- orders table gets or uses a token (it needs nothing on orderexp's
-- tables); the secret and the functions that read it are the owner's.
--
-- Everything runs in one transaction, so now() does not move: an order
-- whose created-at is two hours old is past its one-hour deadline.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(77);

-- the interface
SELECT has_function('orderexp', 'extension_token', ARRAY['regclass', 'anyelement'],
                    'orderexp.extension_token(regclass, anyelement) exists');
SELECT function_returns('orderexp', 'extension_token', ARRAY['regclass', 'anyelement'], 'text',
                        'extension_token returns text');
SELECT has_function('orderexp', 'extend_order_by_token', ARRAY['text'],
                    'orderexp.extend_order_by_token(text) exists');
SELECT function_returns('orderexp', 'extend_order_by_token', ARRAY['text'], 'timestamp with time zone',
                        'extend_order_by_token returns the new deadline');
SELECT has_function('orderexp', 'rotate_secret', ARRAY[]::text[], 'orderexp.rotate_secret() exists');

-- the secret
SELECT has_table('orderexp', 'secret', 'table orderexp.secret exists');
SELECT is((SELECT count(*) FROM orderexp.secret), 1::bigint, 'the secret has one row');
SELECT ok((SELECT length(secret) >= 32 FROM orderexp.secret), 'of at least 32 bytes');
SELECT ok(NOT has_table_privilege('public', 'orderexp.secret', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'),
          'PUBLIC has no privilege on orderexp.secret');
SELECT ok(NOT has_function_privilege('public', f, 'EXECUTE'), 'PUBLIC cannot execute ' || f)
  FROM unnest(ARRAY['orderexp._token_make(regclass, text, timestamptz, integer, bigint)',
                    'orderexp._token_open(text)',
                    'orderexp._extension_token(regclass, text)',
                    'orderexp._extend_order_by_token(text, name)',
                    'orderexp.rotate_secret()']) AS f;

-- a shop
CREATE SCHEMA pgtap_tok;
CREATE TABLE pgtap_tok.orders (
	id			bigint PRIMARY KEY,
	status		text NOT NULL DEFAULT 'unpaid',
	created_at	timestamptz NOT NULL DEFAULT now(),
	total		numeric,
	plan		text
);
SELECT orderexp.set_close_policy('pgtap_tok.orders', '1 hour', extend_by => '1 day', max_extensions => 2,
                                 category_column => 'plan', payload_columns => '{total}',
                                 channels => '{email,sms}');
SELECT orderexp.set_close_policy('pgtap_tok.orders', '1 hour', category => 'noext');
SELECT orderexp.set_close_policy('pgtap_tok.orders', '1 hour', extend_by => '1 day', max_extensions => 0,
                                 category => 'maxzero');
SELECT orderexp.set_close_policy('pgtap_tok.orders', '1 hour', extend_by => '1 day', max_extensions => 1,
                                 category => 'one');
INSERT INTO pgtap_tok.orders (id, total) SELECT g, g FROM unnest(ARRAY[1, 2, 3, 7, 8, 10, 11, 100]) AS g;
INSERT INTO pgtap_tok.orders (id, total, plan, created_at) VALUES
	(4, 4, NULL, now() - interval '2 hours'),		-- past its deadline, not swept
	(5, 5, 'noext', now()),
	(6, 6, 'maxzero', now()),
	(9, 9, 'one', now());
CREATE TABLE pgtap_tok.unreg (id bigint PRIMARY KEY, status text, created_at timestamptz);
INSERT INTO pgtap_tok.unreg VALUES (1, 'unpaid', now());

CREATE TABLE pgtap_tok.tokens (name text PRIMARY KEY, token text NOT NULL);
CREATE FUNCTION pgtap_tok.token(token_name text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT t.token FROM pgtap_tok.tokens t WHERE t.name = token_name $$;

-- the state a refused call must leave alone
CREATE FUNCTION pgtap_tok.fingerprint() RETURNS text
LANGUAGE sql AS $$
	SELECT md5(concat_ws('#',
		(SELECT string_agg(t::text, ';' ORDER BY t.order_key) FROM orderexp.timers t
		  WHERE t.order_table = 'pgtap_tok.orders'::regclass),
		(SELECT string_agg(e::text, ';' ORDER BY e.id) FROM orderexp.outbox e),
		(SELECT string_agg(o::text, ';' ORDER BY o.id) FROM pgtap_tok.orders o)))
$$;
CREATE TABLE pgtap_tok.mark (fp text);
CREATE FUNCTION pgtap_tok.mark() RETURNS void
LANGUAGE sql AS $$ DELETE FROM pgtap_tok.mark; INSERT INTO pgtap_tok.mark SELECT pgtap_tok.fingerprint() $$;
CREATE FUNCTION pgtap_tok.unchanged() RETURNS boolean
LANGUAGE sql AS $$ SELECT m.fp = pgtap_tok.fingerprint() FROM pgtap_tok.mark m $$;

-- a token's SQLSTATE ('accepted' if it worked; the extension is undone)
CREATE FUNCTION pgtap_tok.attempt(token text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM orderexp.extend_order_by_token(token);
	RAISE EXCEPTION 'accepted' USING ERRCODE = 'OXACC';
EXCEPTION WHEN OTHERS THEN
	RETURN CASE WHEN SQLSTATE = 'OXACC' THEN 'accepted' ELSE SQLSTATE END;
END;
$$;

-- the SQLSTATEs of every one-character change of a token: each position
-- replaced by every other base64url character (case flips included)
CREATE FUNCTION pgtap_tok.tampered(token text) RETURNS TABLE (result text)
LANGUAGE sql AS $$
	SELECT pgtap_tok.attempt(overlay(token PLACING a.c FROM p.i FOR 1))
	  FROM generate_series(1, length(token)) AS p(i)
	 CROSS JOIN regexp_split_to_table('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', '') AS a(c)
	 WHERE a.c <> substr(token, p.i, 1)
$$;

--
-- a token's life
--
INSERT INTO pgtap_tok.tokens VALUES ('t1', orderexp.extension_token('pgtap_tok.orders', 1));
SELECT matches(pgtap_tok.token('t1'), '^[A-Za-z0-9_-]+$', 'a token is URL-safe: base64url characters only');
SELECT is(strpos(pgtap_tok.token('t1'), '='), 0, 'and no padding');
SELECT is(orderexp.extension_token('pgtap_tok.orders', '1'::text), pgtap_tok.token('t1'),
          'the same order and deadline give the same token, whatever the key''s type');
CREATE TABLE pgtap_tok.before AS
SELECT t.order_key, t.close_at FROM orderexp.timers t WHERE t.order_table = 'pgtap_tok.orders'::regclass;
CREATE TABLE pgtap_tok.result AS SELECT orderexp.extend_order_by_token(pgtap_tok.token('t1')) AS new_close;
SELECT is((SELECT new_close FROM pgtap_tok.result),
          (SELECT close_at + interval '1 day' FROM pgtap_tok.before WHERE order_key = '1'),
          'extend_order_by_token returns the old deadline plus extend_by');
SELECT is((SELECT close_at FROM orderexp.timers WHERE order_table = 'pgtap_tok.orders'::regclass AND order_key = '1'),
          (SELECT new_close FROM pgtap_tok.result), 'the timer has the new deadline');
SELECT bag_eq($$SELECT channel, payload->>'via' AS via, payload->>'extended_by' AS extended_by,
                       (payload->>'extensions_left')::int AS extensions_left,
                       (payload->>'close_at')::timestamptz AS close_at,
                       (payload->>'previous_close_at')::timestamptz AS previous_close_at
                  FROM orderexp.outbox
                 WHERE order_table = 'pgtap_tok.orders'::regclass AND kind = 'extended' AND order_key = '1'$$,
              $$SELECT ch, 'token' AS via, 'P1D' AS extended_by, 1 AS extensions_left, r.new_close, b.close_at
                  FROM unnest(ARRAY['email', 'sms']) AS ch, pgtap_tok.result r, pgtap_tok.before b
                 WHERE b.order_key = '1'$$,
              'one extended event per channel: via token, extend_by, extensions left, new and previous deadline');
SELECT pgtap_tok.mark();
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t1'))$$, '55000',
                 'extension token has already been used or is outdated', 'the same token again is refused');
SELECT ok(pgtap_tok.unchanged(), 'and nothing changed');
INSERT INTO pgtap_tok.tokens VALUES ('t1b', orderexp.extension_token('pgtap_tok.orders', 1));
SELECT isnt(pgtap_tok.token('t1b'), pgtap_tok.token('t1'), 'the new deadline has a new token');
SELECT lives_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t1b'))$$, 'which works');

--
-- tampering: keys of 1, 2 and 3 characters (tokens of 50, 51, 52 bytes,
-- every shape of base64url tail)
--
INSERT INTO pgtap_tok.tokens
SELECT 't' || g, orderexp.extension_token('pgtap_tok.orders', g) FROM unnest(ARRAY[2, 10, 100]) AS g;
SELECT pgtap_tok.mark();
SELECT is((SELECT count(*) FILTER (WHERE result <> '22023') FROM pgtap_tok.tampered(pgtap_tok.token(n))),
          0::bigint, format('every one-character change of a %s-character token is refused with 22023',
                            length(pgtap_tok.token(n))))
  FROM unnest(ARRAY['t2', 't10', 't100']) AS n;
SELECT ok(pgtap_tok.unchanged(), 'tampered tokens change nothing');
SELECT is((SELECT count(*) FROM pgtap_tok.tokens t WHERE t.name IN ('t2', 't10', 't100')
             AND orderexp.extend_order_by_token(t.token) IS NOT NULL),
          3::bigint, 'the unaltered tokens work');

--
-- malformed tokens
--
INSERT INTO pgtap_tok.tokens VALUES ('t7', orderexp.extension_token('pgtap_tok.orders', 7));
SELECT pgtap_tok.mark();
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(left(pgtap_tok.token('t7'), -1))$$, '22023',
                 'invalid extension token', 'a token without its last character is invalid');
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(left(pgtap_tok.token('t7'), length(pgtap_tok.token('t7')) / 2))$$,
                 '22023', 'invalid extension token', 'half a token is invalid');
SELECT throws_ok($$SELECT orderexp.extend_order_by_token('')$$, '22023', 'invalid extension token',
                 'an empty token is invalid');
SELECT throws_ok($$SELECT orderexp.extend_order_by_token('garbage')$$, '22023', 'invalid extension token',
                 'garbage is invalid');
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(overlay(pgtap_tok.token('t7') PLACING '+' FROM 5 FOR 1))$$,
                 '22023', 'invalid extension token', 'a token with a character outside base64url is invalid');
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t7') || '=')$$,
                 '22023', 'invalid extension token', 'a padded token is invalid');
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(NULL)$$, '22004', NULL, 'a NULL token: 22004');
SELECT ok(pgtap_tok.unchanged(), 'malformed tokens change nothing');

--
-- rotate_secret: earlier tokens stop working
--
SELECT lives_ok($$SELECT orderexp.rotate_secret()$$, 'the owner rotates the secret');
SELECT is((SELECT count(*) FROM orderexp.secret), 1::bigint, 'still one secret');
SELECT pgtap_tok.mark();
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t7'))$$, '22023',
                 'invalid extension token', 'a token made before the rotation is invalid');
SELECT ok(pgtap_tok.unchanged(), 'and changes nothing');
SELECT lives_ok($$SELECT orderexp.extend_order_by_token(orderexp.extension_token('pgtap_tok.orders', 7))$$,
                'a token made after the rotation works');

--
-- tokens that no longer apply, and extension_token's refusals
--
INSERT INTO pgtap_tok.tokens VALUES ('t3', orderexp.extension_token('pgtap_tok.orders', 3)),
                                    ('t9', orderexp.extension_token('pgtap_tok.orders', 9));
UPDATE pgtap_tok.orders SET status = 'paid' WHERE id = 3;
SELECT pgtap_tok.mark();
SELECT throws_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t3'))$$, '55000',
                 'cannot extend order 3 in table pgtap_tok.orders: order is not unpaid',
                 'a token of an order paid since is refused');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', 3)$$, '55000', NULL,
                 'no token for a paid order');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', 4)$$, '55000',
                 'cannot make an extension token for order 4 in table pgtap_tok.orders: the deadline of the order has passed',
                 'no token for an order past its deadline');
SELECT throws_ok(format('SELECT orderexp.extend_order_by_token(%L)',
                        (SELECT orderexp._token_make(t.order_table, t.order_key, t.close_at, t.extensions, t.generation)
                           FROM orderexp.timers t
                          WHERE t.order_table = 'pgtap_tok.orders'::regclass AND t.order_key = '4')),
                 '55000', 'cannot extend order 4 in table pgtap_tok.orders: the deadline of the order has passed',
                 'a correctly signed token for a passed deadline is refused');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', 5)$$, '55000', NULL,
                 'no token when the policy has no extend_by');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', 6)$$, '55000', NULL,
                 'no token when the policy has max_extensions 0');
SELECT ok(pgtap_tok.unchanged(), 'the refusals change nothing');
SELECT lives_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t9'))$$,
                'the one customer extension of policy ''one''');
SELECT pgtap_tok.mark();
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', 9)$$, '55000',
                 'cannot make an extension token for order 9 in table pgtap_tok.orders: the order has no extensions left',
                 'then no more tokens');
SELECT throws_ok(format('SELECT orderexp.extend_order_by_token(%L)',
                        (SELECT orderexp._token_make(t.order_table, t.order_key, t.close_at, t.extensions, t.generation)
                           FROM orderexp.timers t
                          WHERE t.order_table = 'pgtap_tok.orders'::regclass AND t.order_key = '9')),
                 '55000', 'cannot extend order 9 in table pgtap_tok.orders: the order has no extensions left',
                 'and a correctly signed token for the current deadline is refused');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', 999)$$, 'P0002', NULL,
                 'extension_token of an unknown order: P0002');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.unreg', 1)$$, '55000', NULL,
                 'extension_token of an unregistered table: 55000');
SELECT throws_ok($$SELECT orderexp.extension_token(NULL, 1)$$, '22004', NULL, 'extension_token with a NULL table: 22004');
SELECT throws_ok($$SELECT orderexp.extension_token('pgtap_tok.orders', NULL::bigint)$$, '22004', NULL,
                 'extension_token with a NULL key: 22004');
SELECT ok(pgtap_tok.unchanged(), 'and nothing changed');

-- a used token stays used when the order is paid and set back to unpaid,
-- which tracks it again with the deadline it had when the token was made
INSERT INTO pgtap_tok.tokens VALUES ('t11', orderexp.extension_token('pgtap_tok.orders', 11));
SELECT lives_ok($$SELECT orderexp.extend_order_by_token(pgtap_tok.token('t11'))$$, 'order 11 extended with its token');
UPDATE pgtap_tok.orders SET status = 'paid' WHERE id = 11;
UPDATE pgtap_tok.orders SET status = 'unpaid' WHERE id = 11;
SELECT is(pgtap_tok.attempt(pgtap_tok.token('t11')), '55000',
          'the used token is refused after the order was paid and set back to unpaid');

--
-- privileges
--
CREATE ROLE pgtap_ox_tok_reader NOLOGIN IN ROLE orderexp_app;	-- may read the orders, not update them
CREATE ROLE pgtap_ox_tok_app NOLOGIN IN ROLE orderexp_app;		-- may update them; nothing on orderexp's tables
GRANT USAGE ON SCHEMA orderexp, pgtap_tok TO pgtap_ox_tok_reader, pgtap_ox_tok_app;
GRANT SELECT ON pgtap_tok.orders, pgtap_tok.tokens TO pgtap_ox_tok_reader, pgtap_ox_tok_app;
GRANT UPDATE ON pgtap_tok.orders TO pgtap_ox_tok_app;

-- run a statement as a role (a SECURITY DEFINER function it owns); its first value as text
CREATE FUNCTION public.pgtap_ox_tok_as_reader(sql text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE r text;
BEGIN
	IF current_user <> 'pgtap_ox_tok_reader' THEN
		RAISE EXCEPTION 'not running as the reader role';
	END IF;
	EXECUTE sql INTO r;
	RETURN r;
END $$;
ALTER FUNCTION public.pgtap_ox_tok_as_reader(text) OWNER TO pgtap_ox_tok_reader;
CREATE FUNCTION public.pgtap_ox_tok_as_app(sql text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE r text;
BEGIN
	IF current_user <> 'pgtap_ox_tok_app' THEN
		RAISE EXCEPTION 'not running as the application role';
	END IF;
	EXECUTE sql INTO r;
	RETURN r;
END $$;
ALTER FUNCTION public.pgtap_ox_tok_as_app(text) OWNER TO pgtap_ox_tok_app;

INSERT INTO pgtap_tok.tokens VALUES ('t8', orderexp.extension_token('pgtap_tok.orders', 8));
SELECT pgtap_tok.mark();
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_reader('SELECT orderexp.extension_token(''pgtap_tok.orders'', 8)')$$,
                 '42501', NULL, 'a role without UPDATE on the orders table gets no token');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_reader('SELECT orderexp.extend_order_by_token(pgtap_tok.token(''t8''))')$$,
                 '42501', NULL, 'nor extends with a valid token');
SELECT ok(pgtap_tok.unchanged(), 'and changes nothing');
SELECT ok(NOT has_table_privilege('pgtap_ox_tok_app', 'orderexp.' || t, 'SELECT, INSERT, UPDATE, DELETE'),
          'the application role has no privilege on orderexp.' || t)
  FROM unnest(ARRAY['timers', 'outbox', 'secret']) AS t;
SELECT is(public.pgtap_ox_tok_as_app('SELECT orderexp.extension_token(''pgtap_tok.orders'', 8)'),
          pgtap_tok.token('t8'), 'a role with UPDATE on the orders table gets the token');
SELECT is(public.pgtap_ox_tok_as_app('SELECT orderexp.extend_order_by_token(pgtap_tok.token(''t8''))')::timestamptz
            - (SELECT o.created_at FROM pgtap_tok.orders o WHERE o.id = 8),
          interval '1 day 1 hour', 'and extends with it');
SELECT is((SELECT array_agg(DISTINCT payload->>'extended_by_role') FROM orderexp.outbox
            WHERE order_table = 'pgtap_tok.orders'::regclass AND order_key = '8'),
          ARRAY['pgtap_ox_tok_app'], 'the event names the role');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_app('SELECT count(*) FROM orderexp.secret')$$,
                 '42501', NULL, 'the application role cannot read the secret');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_app('SELECT orderexp._token_make(''pgtap_tok.orders'', ''8'', now(), 0, 1)')$$,
                 '42501', NULL, 'nor sign a token itself');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_app('SELECT orderexp._token_open(pgtap_tok.token(''t8''))')$$,
                 '42501', NULL, 'nor open one');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_app('SELECT orderexp._extension_token(''pgtap_tok.orders'', ''8'')')$$,
                 '42501', NULL, 'nor call _extension_token');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_app('SELECT orderexp._extend_order_by_token(pgtap_tok.token(''t8''), ''x'')')$$,
                 '42501', NULL, 'nor call _extend_order_by_token');
SELECT throws_ok($$SELECT public.pgtap_ox_tok_as_app('SELECT orderexp.rotate_secret()')$$,
                 '42501', NULL, 'nor rotate the secret');

--
-- the token of a reminder extends the order
--
CREATE TABLE pgtap_tok.reminded (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL);
SELECT orderexp.set_close_policy('pgtap_tok.reminded', '1 hour', remind_before => '10 minutes',
                                 extend_by => '30 minutes', max_extensions => 1);
INSERT INTO pgtap_tok.reminded VALUES (1, 'unpaid', now() - interval '55 minutes');
SELECT is((SELECT reminded FROM orderexp.run_due()), 1::bigint, 'run_due writes the reminder');
SELECT is((SELECT payload->>'extension_token' FROM orderexp.outbox
            WHERE order_table = 'pgtap_tok.reminded'::regclass AND kind = 'reminder'),
          orderexp.extension_token('pgtap_tok.reminded', 1), 'with the order''s token');
SELECT is(orderexp.extend_order_by_token((SELECT payload->>'extension_token' FROM orderexp.outbox
                                           WHERE order_table = 'pgtap_tok.reminded'::regclass AND kind = 'reminder'))
            - (SELECT created_at FROM pgtap_tok.reminded WHERE id = 1),
          interval '90 minutes', 'which extends the order by extend_by');

SELECT * FROM finish();
ROLLBACK;
