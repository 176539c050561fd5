/*
 * Privileges, last of the 1.1 fragments, so that they hold whatever the
 * fragments before it created or replaced.
 *
 * Nothing that changes orders or reads orderexp's tables is left to PUBLIC:
 *
 *   orderexp_admin   set_close_policy, drop_close_policy (gates that want
 *                    the caller to own the table), rotate_secret, and the
 *                    views pending and policy_config
 *   orderexp_app     the order gates: cancel_order(s), extend_order,
 *                    extension_token, extend_order_by_token (and those the
 *                    other fragments add); each still wants UPDATE on the
 *                    orders table
 *   PUBLIC           run_due (it closes only what is due, and only on
 *                    tables the caller may update), _actor, and the
 *                    invoker-rights helpers, which grant nothing by
 *                    themselves
 *
 * Every body of a gate (orderexp._<name> beside a C function orderexp.<name>
 * whose symbol is orderexp_gate or orderexp_owner_gate) is kept from PUBLIC
 * here, whichever fragment made it; and a body whose public function is not
 * a gate (a fragment replaced the gate with a function of its own) stops
 * the script, since that function would run without the privilege check.
 */
DO $gates$
DECLARE
	gate record;
	body regprocedure;
BEGIN
	FOR gate IN
		SELECT p.oid::regprocedure AS fn, p.proname, p.proargtypes, p.prosrc
		  FROM pg_catalog.pg_proc p
		 WHERE p.pronamespace = 'orderexp'::regnamespace
		   AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'c')
		   AND p.prosrc IN ('orderexp_gate', 'orderexp_owner_gate')
	LOOP
		SELECT b.oid::regprocedure INTO body
		  FROM pg_catalog.pg_proc b
		 WHERE b.pronamespace = 'orderexp'::regnamespace
		   AND b.proname = '_' || gate.proname AND b.proargtypes = gate.proargtypes;
		IF body IS NULL THEN
			RAISE EXCEPTION 'orderexp gate % has no body orderexp.%(same argument types)',
				gate.fn, '_' || gate.proname;
		END IF;
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', body);
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', gate.fn);
	END LOOP;

	FOR body IN
		SELECT b.oid::regprocedure
		  FROM pg_catalog.pg_proc b
		  JOIN pg_catalog.pg_proc p
			ON p.pronamespace = b.pronamespace AND '_' || p.proname = b.proname
		   AND p.proargtypes = b.proargtypes
		 WHERE b.pronamespace = 'orderexp'::regnamespace
		   AND p.prosrc NOT IN ('orderexp_gate', 'orderexp_owner_gate',
								/* C gates of their own (token.c) */
								'orderexp_extension_token', 'orderexp_extend_order_by_token')
	LOOP
		RAISE EXCEPTION 'orderexp function % is the body of a function that is no gate', body
			USING HINT = 'Declare the public function with AS ''MODULE_PATHNAME'', ''orderexp_gate'' LANGUAGE C.';
	END LOOP;
END
$gates$;

/* the application: the order gates (the table's UPDATE privilege still counts) */
GRANT EXECUTE ON FUNCTION orderexp.cancel_order(regclass, anyelement, text),
						  orderexp.cancel_orders(regclass, anyarray, text),
						  orderexp.extend_order(regclass, anyelement, interval)
	TO orderexp_app;
REVOKE ALL ON FUNCTION orderexp.extension_token(regclass, anyelement),
					   orderexp.extend_order_by_token(text)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orderexp.extension_token(regclass, anyelement),
						  orderexp.extend_order_by_token(text)
	TO orderexp_app;

/* the administrator: policies, the secret, and the views over all tables */
GRANT EXECUTE ON FUNCTION
	orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name,
							  name, name, text, text, text, name[], text[], boolean),
	orderexp.drop_close_policy(regclass, text)
	TO orderexp_admin;
ALTER FUNCTION orderexp.rotate_secret() SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION orderexp.rotate_secret() TO orderexp_admin;
ALTER FUNCTION orderexp.pending_orders() SECURITY DEFINER;
REVOKE ALL ON FUNCTION orderexp.pending_orders() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orderexp.pending_orders() TO orderexp_admin;
GRANT SELECT ON orderexp.pending, orderexp.policy_config TO orderexp_admin;
