-- Identifiers and values from a registration are always quoted: a table,
-- its columns and its status values named with quotes, semicolons, dollar
-- quotes, format() directives and SQL work through every function, the
-- worker's statements included, and inject nothing (the canary table lives).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(18);

CREATE TABLE public.pgtap_canary (x int);
INSERT INTO public.pgtap_canary VALUES (1);
CREATE SCHEMA "pgtap sch'ema; DROP TABLE public.pgtap_canary; --";
CREATE TABLE "pgtap sch'ema; DROP TABLE public.pgtap_canary; --"."Or""ders); DROP TABLE public.pgtap_canary; --" (
	"id"";DROP TABLE public.pgtap_canary;--"	bigint PRIMARY KEY,
	"st'atus $$ %I %s"							text NOT NULL,
	"created"") OR true; --"					timestamptz NOT NULL DEFAULT now(),
	"cat$1"										text,
	"pay""load'); DELETE FROM public.pgtap_canary; --"	text DEFAULT 'x''y'
);
SELECT '"pgtap sch''ema; DROP TABLE public.pgtap_canary; --"."Or""ders); DROP TABLE public.pgtap_canary; --"'::regclass AS t \gset

SELECT lives_ok(format($$SELECT orderexp.set_close_policy(%L, '1 hour', remind_before => '10 minutes',
		extend_by => '5 minutes', max_extensions => 1,
		key_column => %L, status_column => %L, created_column => %L, category_column => %L,
		unpaid_value => %L, closed_value => %L, cancelled_value => %L, payload_columns => %L,
		channels => %L)$$,
		:'t', 'id";DROP TABLE public.pgtap_canary;--', 'st''atus $$ %I %s', 'created") OR true; --',
		'cat$1', 'un''paid; DELETE FROM public.pgtap_canary; --', 'clo$$sed', 'can"celled %s',
		ARRAY['pay"load''); DELETE FROM public.pgtap_canary; --'], ARRAY['_e-mail_2']),
		'a table whose every other name is hostile registers');
-- a channel name is a routing name, not quoted anywhere: since 1.3 it must
-- be identifier-like, so a hostile one is refused (registering again keeps
-- the mappings above) and the registration keeps its channel
SELECT throws_ok(format($$SELECT orderexp.set_close_policy(%L, '1 hour', channels => %L)$$,
						:'t', ARRAY['e''mail"; --']),
				 '22023', 'channel names must be identifier-like and at most 63 bytes',
				 'a hostile channel name is refused');
SELECT is((SELECT channels FROM orderexp.tables WHERE order_table = :'t'::regclass),
		  ARRAY['_e-mail_2'], 'and the registration keeps its channel');
SELECT lives_ok(format($$SELECT orderexp.set_close_policy(%L, '2 hours', category => %L)$$,
					   :'t', 'c''at; --'),
				'and gets a category policy with a hostile category');

-- orders: 1-3 overdue, 4-6 not yet due (one of the category)
INSERT INTO :t VALUES
	(1, 'un''paid; DELETE FROM public.pgtap_canary; --', now() - interval '3 hours', NULL, DEFAULT),
	(2, 'un''paid; DELETE FROM public.pgtap_canary; --', now() - interval '3 hours', NULL, DEFAULT),
	(3, 'un''paid; DELETE FROM public.pgtap_canary; --', now() - interval '3 hours', 'c''at; --', DEFAULT),
	(4, 'un''paid; DELETE FROM public.pgtap_canary; --', now(), NULL, DEFAULT),
	(5, 'un''paid; DELETE FROM public.pgtap_canary; --', now(), 'c''at; --', DEFAULT),
	(6, 'un''paid; DELETE FROM public.pgtap_canary; --', now() - interval '55 minutes', NULL, DEFAULT);
SELECT is((SELECT count(*) FROM orderexp.timers WHERE order_table = :'t'::regclass), 6::bigint,
		  'the timer trigger tracks the orders');
SELECT is((SELECT count(*) FROM orderexp.pending WHERE order_table = :'t'::regclass), 6::bigint,
		  'orderexp.pending lists them');
SELECT is((SELECT closed FROM orderexp.run_due()), 3::bigint, 'run_due closes the overdue ones');
SELECT is((SELECT array_agg(o."id"";DROP TABLE public.pgtap_canary;--" ORDER BY 1) FROM :t o
			WHERE o."st'atus $$ %I %s" = 'clo$$sed'),
		  ARRAY[1, 2, 3]::bigint[], 'with the hostile closed value');
SELECT is((SELECT count(*) FROM orderexp.outbox WHERE order_table = :'t'::regclass AND kind = 'reminder'),
		  1::bigint, 'and sent the due reminder');
SELECT is((SELECT payload->'order'->>'pay"load''); DELETE FROM public.pgtap_canary; --'
			 FROM orderexp.outbox WHERE order_table = :'t'::regclass AND kind = 'closed' LIMIT 1),
		  'x''y', 'events carry the hostile payload column');
SELECT ok(orderexp.extend_order(:'t', 4) > now(), 'extend_order works');
SELECT ok(orderexp.extend_order_by_token(orderexp.extension_token(:'t', 6)) > now(),
		  'tokens work');
SELECT ok(orderexp.cancel_order(:'t', 4, 'x''); DROP TABLE public.pgtap_canary; --'), 'cancel_order works');
SELECT is(orderexp.cancel_orders(:'t', ARRAY['5', '1']), 1, 'cancel_orders works');
SELECT is((SELECT array_agg(o."st'atus $$ %I %s" ORDER BY 1) FROM :t o
			WHERE o."id"";DROP TABLE public.pgtap_canary;--" IN (4, 5)),
		  ARRAY['can"celled %s', 'can"celled %s'], 'with the hostile cancelled value');
SELECT lives_ok(format('SELECT orderexp.drop_close_policy(%L, %L)', :'t', 'c''at; --'),
				'the category policy is dropped');
SELECT lives_ok(format('SELECT orderexp.drop_close_policy(%L)', :'t'), 'and the table');
SELECT is((SELECT count(*) FROM public.pgtap_canary), 1::bigint, 'the canary lives: nothing was injected');

SELECT * FROM finish();
ROLLBACK;
