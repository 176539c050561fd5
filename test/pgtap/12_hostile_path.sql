-- Operators, functions and tables a role plants where a superuser's
-- statements look first stand in for nothing of orderexp's.
--
-- In public: an operator for every pair of the types orderexp works with
-- and every operator name it uses, and functions named like the built-ins
-- it calls, each of which counts its call in a sequence (nextval is not
-- undone by a rollback) and raises.  In pg_temp, which is searched first
-- for relations unless named: tables named like the catalogs and
-- orderexp's tables.  Then, as a superuser whose search_path puts public
-- before pg_catalog, every function and view of orderexp is used, the
-- triggers fire and run_due() closes an order.  Nothing may be reached:
-- each call succeeds as it would on a clean path, the sequence is untouched
-- and the temporary tables stay empty.
--
-- All of it is one transaction, rolled back: a claim() in it sees the
-- events it wrote only as rows, since an event of the stream of batches
-- joins a batch once its transaction has committed.  So the events here are
-- rows (orderexp.batch_delivery off for this transaction), and claim(),
-- ack() and fail() take the row-by-row path under the hostile path.
BEGIN;
SET LOCAL orderexp.batch_delivery = off;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(5);

CREATE SEQUENCE public.pgtap_ox_hijacks;
CREATE TABLE public.pgtap_ox_hostile_results (n serial, call text, outcome text);

-- a statement under the hostile path; its first value as text, or the error
CREATE FUNCTION public.pgtap_ox_hostile(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', true);
	BEGIN
		EXECUTE sql INTO v;
		IF v IS NULL THEN
			v := 'ok';
		END IF;
	EXCEPTION WHEN OTHERS THEN
		v := pg_catalog.format('ERROR %s: %s', SQLSTATE, SQLERRM);
	END;
	PERFORM pg_catalog.set_config('search_path', 'pg_catalog, public', true);
	RETURN v;
END $$;

DO $$
DECLARE
	types text[] := ARRAY['text', 'name', 'bigint', 'integer', 'numeric', 'double precision',
						  'boolean', 'timestamptz', 'interval', 'jsonb', 'regclass', 'oid',
						  'text[]', 'bigint[]'];
	ops text[] := ARRAY['=', '<>', '<', '>', '<=', '>=', '+', '-', '*', '/', '||', '->>',
						'->', '~~', '@>'];
	funcs text[] := ARRAY['now()', 'clock_timestamp()', 'random()', 'md5(text)', 'lower(text)',
						  'length(text)', 'quote_ident(text)', 'quote_literal(text)',
						  'octet_length(text)', 'cardinality(anyarray)',
						  'array_length(anyarray, integer)', 'to_jsonb(anyelement)',
						  'jsonb_typeof(jsonb)', 'hashtext(text)', 'pg_has_role(name, oid, text)',
						  'has_table_privilege(name, oid, text)', 'current_setting(text)',
						  'set_config(text, text, boolean)', 'format(text)', 'concat_ws(text, text)',
						  'date_part(text, timestamptz)',
						  'make_interval(integer)', 'pg_notify(text, text)'];
	l text;
	r text;
	o text;
	f text;
	n integer := 0;
BEGIN
	FOREACH l IN ARRAY types LOOP
		FOREACH r IN ARRAY types LOOP
			n := n + 1;
			EXECUTE format($f$CREATE FUNCTION public.pgtap_ox_hostile_op_%s(%s, %s) RETURNS boolean
							   LANGUAGE plpgsql SET search_path = pg_catalog
							   AS 'BEGIN PERFORM nextval(''public.pgtap_ox_hijacks''); RAISE EXCEPTION ''hijacked''; END'$f$,
						   n, l, r);
			FOREACH o IN ARRAY ops LOOP
				BEGIN
					EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.pgtap_ox_hostile_op_%s)',
								   o, l, r, n);
				EXCEPTION WHEN duplicate_function OR duplicate_object THEN
					NULL;
				END;
			END LOOP;
		END LOOP;
	END LOOP;
	FOREACH f IN ARRAY funcs LOOP
		EXECUTE format($f$CREATE FUNCTION public.%s RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
						   AS 'BEGIN PERFORM nextval(''public.pgtap_ox_hijacks''); RAISE EXCEPTION ''hijacked''; END'$f$,
					   f);
	END LOOP;
END $$;

-- relations a statement might name unqualified, planted in pg_temp
CREATE TEMP TABLE pg_class (oid oid, relname name, relowner oid, relnamespace oid, relkind "char");
CREATE TEMP TABLE pg_namespace (oid oid, nspname name);
CREATE TEMP TABLE pg_roles (rolname name, rolsuper boolean, oid oid);
CREATE TEMP TABLE pg_proc (oid oid, proname name);
CREATE TEMP TABLE tables (order_table regclass);
CREATE TEMP TABLE timers (order_table regclass, order_key text);
CREATE TEMP TABLE outbox (id bigint, order_table regclass);
CREATE TEMP TABLE policies (id integer, order_table regclass);
CREATE TEMP TABLE audit (id bigint);
CREATE TEMP TABLE outcomes (order_table regclass);
CREATE TEMP TABLE orders (id bigint PRIMARY KEY, status text, created_at timestamptz);

CREATE SCHEMA pgtap_hostile;
CREATE TABLE pgtap_hostile.orders (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
								   created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
								   cat text, email text);

-- every function and view, as the superuser, under the hostile path (the
-- calls themselves use no unqualified operator: they are the caller's own
-- code)
DO $$
DECLARE
	calls text[] := ARRAY[
		$c$INSERT INTO pgtap_hostile.orders (id, created_at, cat, email)
		   VALUES (1, '2020-01-01', 'a', 'a@example.com'), (2, '2020-01-01', 'a', 'b@example.com')
		   RETURNING id$c$,
		$c$SELECT orderexp.set_close_policy('pgtap_hostile.orders', '1 hour', remind_before => '10 minutes',
			extend_by => '30 minutes', max_extensions => 2, category_column => 'cat',
			payload_columns => '{email}', channels => '{email,sms}')$c$,
		$c$SELECT orderexp.set_close_policy('pgtap_hostile.orders', '2 hours', category => 'b')$c$,
		$c$INSERT INTO pgtap_hostile.orders (id, cat, email)
		   SELECT g, 'a', 'x@example.com' FROM generate_series(3, 12) g RETURNING id$c$,
		$c$UPDATE pgtap_hostile.orders SET status = 'paid' WHERE id OPERATOR(pg_catalog.=) 3 RETURNING id$c$,
		$c$SELECT orderexp.cancel_order('pgtap_hostile.orders', 4, 'asked')$c$,
		$c$SELECT orderexp.cancel_order('pgtap_hostile.orders', '5'::text, 'asked')$c$,
		$c$SELECT orderexp.cancel_orders('pgtap_hostile.orders', ARRAY[6, 7]::bigint[], 'asked')$c$,
		$c$SELECT orderexp.extend_order('pgtap_hostile.orders', 8, '10 minutes')$c$,
		$c$SELECT orderexp.reopen_order('pgtap_hostile.orders', 4, '1 hour', 'by mistake')$c$,
		$c$SELECT count(*) FROM orderexp.history('pgtap_hostile.orders', 4)$c$,
		$c$SELECT orderexp.history_json('pgtap_hostile.orders', 4)$c$,
		$c$SELECT orderexp.record_feedback('pgtap_hostile.orders', 4, 'complaint', 'too early')$c$,
		$c$SELECT orderexp.set_explanation_template('placed', 'Order {order}, {at}.', 'de')$c$,
		$c$SELECT orderexp.extend_order_by_token(orderexp.extension_token('pgtap_hostile.orders', 9))$c$,
		$c$SELECT orderexp.assign_variant('9', '{1,2}', 42)$c$,
		$c$SELECT orderexp.start_experiment('pgtap_hostile.orders', '{1 hour, 2 hours}')$c$,
		$c$INSERT INTO pgtap_hostile.orders (id, cat) VALUES (13, 'a'), (14, 'a') RETURNING id$c$,
		$c$SELECT orderexp.end_experiment('pgtap_hostile.orders', 2)$c$,
		$c$SELECT closed FROM orderexp.run_due()$c$,
		$c$SELECT count(*) FROM orderexp.claim(100, '1 minute')$c$,
		$c$SELECT orderexp.ack(ARRAY(SELECT o.id FROM orderexp.outbox o ORDER BY o.id LIMIT 3))$c$,
		$c$SELECT orderexp.fail((SELECT max(o.id) FROM orderexp.outbox o), 'no', false)$c$,
		$c$SELECT orderexp.explain_order('pgtap_hostile.orders', 4, 'de-AT')$c$,
		$c$SELECT orderexp.explain_order('pgtap_hostile.orders', 9)$c$,
		$c$SELECT orderexp.requeue()$c$,
		$c$SELECT count(*) FROM orderexp.pending$c$,
		$c$SELECT orderexp.pending_json()$c$,
		$c$SELECT count(*) FROM orderexp.policy_config$c$,
		$c$SELECT count(*) FROM orderexp.policy_stats$c$,
		$c$SELECT count(*) FROM orderexp.experiment_stats$c$,
		$c$SELECT count(*) FROM orderexp.dead_letters$c$,
		$c$SELECT count(*) FROM orderexp.delivery_stats$c$,
		$c$SELECT audit_rows FROM orderexp.forget_before('2000-01-01')$c$,
		$c$SELECT orderexp.rotate_secret()$c$,
		$c$SELECT orderexp._actor()$c$,
		$c$SELECT orderexp.drop_close_policy('pgtap_hostile.orders', 'b')$c$];
	c text;
BEGIN
	FOREACH c IN ARRAY calls LOOP
		INSERT INTO public.pgtap_ox_hostile_results (call, outcome)
		VALUES (c, public.pgtap_ox_hostile(c));
	END LOOP;
END $$;

-- what reached the planted tables; then the hostile objects go, before
-- pgTAP looks at anything (with a path that does not reach them)
SET LOCAL search_path = pg_catalog;
SET LOCAL client_min_messages = warning;	-- a "drop cascades" line per operator otherwise
CREATE TABLE public.pgtap_ox_temp_rows AS
	SELECT (SELECT count(*) FROM pg_temp.tables) + (SELECT count(*) FROM pg_temp.timers)
		   + (SELECT count(*) FROM pg_temp.outbox) + (SELECT count(*) FROM pg_temp.policies)
		   + (SELECT count(*) FROM pg_temp.audit) + (SELECT count(*) FROM pg_temp.outcomes)
		   + (SELECT count(*) FROM pg_temp.orders) + (SELECT count(*) FROM pg_temp.pg_class)
		   + (SELECT count(*) FROM pg_temp.pg_namespace) + (SELECT count(*) FROM pg_temp.pg_roles)
		   + (SELECT count(*) FROM pg_temp.pg_proc) AS n;
DROP TABLE pg_temp.pg_class, pg_temp.pg_namespace, pg_temp.pg_roles, pg_temp.pg_proc,
	pg_temp.tables, pg_temp.timers, pg_temp.outbox, pg_temp.policies, pg_temp.audit,
	pg_temp.outcomes, pg_temp.orders;
DROP FUNCTION public.pgtap_ox_hostile_op_1(text, text) CASCADE;
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'public'::regnamespace
				AND (p.proname LIKE 'pgtap\_ox\_hostile\_op\_%'
					 OR p.prosrc LIKE '%pgtap_ox_hijacks%')
	LOOP
		EXECUTE format('DROP FUNCTION %s CASCADE', f);
	END LOOP;
END $$;
RESET search_path;

SELECT is(ARRAY(SELECT call || ' => ' || outcome FROM public.pgtap_ox_hostile_results
				 WHERE outcome LIKE 'ERROR%' ORDER BY n),
		  '{}'::text[], 'every call succeeds under the hostile path');
SELECT is((SELECT count(*)::integer FROM public.pgtap_ox_hostile_results), 37,
		  'all 37 calls were made');
SELECT ok(NOT (SELECT is_called FROM public.pgtap_ox_hijacks),
		  'no hostile operator or function was called');
SELECT is((SELECT n::integer FROM public.pgtap_ox_temp_rows), 0,
		  'no statement wrote into the planted temporary tables');
SELECT is((SELECT status FROM pgtap_hostile.orders WHERE id = 1), 'closed',
		  'and the work was done: run_due() closed the overdue order');

SELECT * FROM finish();
ROLLBACK;
