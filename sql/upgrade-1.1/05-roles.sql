/*
 * Roles.  Three NOLOGIN roles that a DBA grants to real users:
 *
 *   orderexp_admin   registers and changes policies, rotates the secret
 *   orderexp_app     what an application does: cancel, extend, reopen,
 *                    extension tokens
 *   orderexp_relay   what a notification relay does: read, claim,
 *                    acknowledge and fail outbox rows
 *
 * Roles belong to the cluster, not to a database or an extension: they are
 * made by the first database that installs orderexp 1.1 and kept when the
 * extension is dropped (DROP ROLE them by hand once no database uses them).
 * Each feature's file grants its functions to the role that needs them.
 */
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['orderexp_admin', 'orderexp_app', 'orderexp_relay']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;
