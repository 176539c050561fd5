/* ------------------------------------------------------------------------
 * After the close: the audit trail, outcomes, policy versions, experiments
 * on the timeout, and reopening orders orderexp closed.
 *
 *   audit           one row per state change orderexp makes (close at the
 *                   deadline, cancel, extension, reopen): why, by whom, under
 *                   which policy; history() reads it.  Written in the same
 *                   transaction as the change, and independent of delivery:
 *                   outbox rows are per channel and pruned once delivered.
 *   outcomes        one row per tracked order leaving the unpaid state (paid,
 *                   closed, cancelled), written by a C row trigger without
 *                   SPI into a table without indexes (outcome.c).
 *   policy_versions every version of every policy; policies.version is
 *                   bumped by a trigger whenever the settings change.
 *   experiments     A/B tests of the timeout: variants and weights; orders
 *                   are assigned a variant from a hash of their key.
 * ------------------------------------------------------------------------ */

/* --- policy versions ---------------------------------------------------- */

ALTER TABLE orderexp.policies
	ADD COLUMN version integer NOT NULL DEFAULT 1,
	ADD COLUMN experiment_id integer;
COMMENT ON COLUMN orderexp.policies.version IS
	'bumped whenever the settings (or the running experiment) change; timers and outcomes record it';
COMMENT ON COLUMN orderexp.policies.experiment_id IS
	'the experiment running on this policy, if any (orderexp.start_experiment)';

CREATE TABLE orderexp.policy_versions (
	policy_id		integer NOT NULL,
	version			integer NOT NULL,
	order_table		regclass NOT NULL,
	category		text,
	close_after		interval NOT NULL,
	remind_before	interval,
	extend_by		interval,
	max_extensions	integer NOT NULL,
	experiment_id	integer,
	valid_from		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (policy_id, version)
);
COMMENT ON TABLE orderexp.policy_versions IS
	'every version of every close policy, kept after the policy is dropped so that statistics can name it';

INSERT INTO orderexp.policy_versions (policy_id, version, order_table, category, close_after,
									  remind_before, extend_by, max_extensions, valid_from)
SELECT p.id, p.version, p.order_table, p.category, p.close_after, p.remind_before,
	   p.extend_by, p.max_extensions, p.updated_at
  FROM orderexp.policies p;

/*
 * A new version when the settings change.  An experiment fixes the
 * settings it runs under: change them after ending it.
 */
CREATE FUNCTION orderexp._policy_version()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF (NEW.close_after, NEW.remind_before, NEW.extend_by, NEW.max_extensions, NEW.experiment_id)
		   IS NOT DISTINCT FROM
		   (OLD.close_after, OLD.remind_before, OLD.extend_by, OLD.max_extensions, OLD.experiment_id) THEN
			RETURN NEW;
		END IF;
		IF OLD.experiment_id IS NOT NULL AND NEW.experiment_id IS NOT DISTINCT FROM OLD.experiment_id THEN
			RAISE EXCEPTION 'the % close policy of table % is running an experiment',
				coalesce('category ' || quote_literal(OLD.category), 'default'), OLD.order_table
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'End it with orderexp.end_experiment() before changing the policy.';
		END IF;
		NEW.version := OLD.version + 1;
	END IF;
	INSERT INTO orderexp.policy_versions (policy_id, version, order_table, category, close_after,
										  remind_before, extend_by, max_extensions, experiment_id)
	VALUES (NEW.id, NEW.version, NEW.order_table, NEW.category, NEW.close_after,
			NEW.remind_before, NEW.extend_by, NEW.max_extensions, NEW.experiment_id);
	RETURN NEW;
END;
$$;

CREATE TRIGGER policies_version BEFORE INSERT OR UPDATE ON orderexp.policies
	FOR EACH ROW EXECUTE FUNCTION orderexp._policy_version();

/*
 * A restore loads the dumped policies first, and the trigger above records
 * their current versions; the dumped rows of policy_versions that follow
 * replace those (they carry the original valid_from).
 */
CREATE FUNCTION orderexp._policy_version_restored()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orderexp.policy_versions v
	 WHERE v.policy_id = NEW.policy_id AND v.version = NEW.version;
	RETURN NEW;
END;
$$;

CREATE TRIGGER policy_versions_restored BEFORE INSERT ON orderexp.policy_versions
	FOR EACH ROW EXECUTE FUNCTION orderexp._policy_version_restored();

/* --- experiments --------------------------------------------------------- */

CREATE TABLE orderexp.experiments (
	id				serial PRIMARY KEY,
	policy_id		integer NOT NULL,
	policy_version	integer NOT NULL,
	order_table		regclass NOT NULL,
	category		text,
	variants		interval[] NOT NULL,
	weights			integer[] NOT NULL,
	started_at		timestamptz NOT NULL DEFAULT now(),
	started_by		name NOT NULL,
	ended_at		timestamptz,
	ended_by		name,
	winner			integer,
	CONSTRAINT experiments_shape
		CHECK (cardinality(variants) BETWEEN 2 AND 16
			   AND cardinality(weights) = cardinality(variants)),
	CONSTRAINT experiments_winner
		CHECK (winner IS NULL OR winner BETWEEN 1 AND cardinality(variants))
);
CREATE UNIQUE INDEX experiments_running ON orderexp.experiments (policy_id)
	WHERE ended_at IS NULL;
COMMENT ON TABLE orderexp.experiments IS
	'A/B tests of the timeout of one policy: variant i closes orders after variants[i], with weight weights[i]';

CREATE FUNCTION orderexp.assign_variant(order_key text, weights integer[], seed bigint)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_assign_variant'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp.assign_variant(text, integer[], bigint) IS
	'the variant (1-based) an order key falls into: hash of the key seeded with the experiment id, by weight';

/* --- timers: the policy version and the variant an order was armed with --- */

ALTER TABLE orderexp.timers
	ADD COLUMN policy_version integer,
	ADD COLUMN variant integer,
	ADD COLUMN reopened boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN orderexp.timers.policy_version IS
	'version of the policy when the timer was armed';
COMMENT ON COLUMN orderexp.timers.variant IS
	'the experiment variant of the order (1-based), NULL when no experiment ran';
COMMENT ON COLUMN orderexp.timers.reopened IS
	'the timer was armed by reopen_order: the order''s outcome does not count for its policy''s statistics';

/*
 * Timers inserted in SQL (set_close_policy's tracking of existing rows) get
 * the version and the variant the same way (redefined from 1.0: adds them).
 */
CREATE OR REPLACE FUNCTION orderexp._track_existing(cfg orderexp.tables, only_category text,
													scope_all boolean, reschedule boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	cat_expr text;
	scope text;
BEGIN
	cat_expr := CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
					 ELSE format('o.%I::text', cfg.category_column) END;
	IF scope_all THEN
		scope := 'true';
	ELSIF only_category IS NULL THEN
		/* default policy: rows whose category has no policy of its own */
		scope := format('NOT EXISTS (SELECT 1 FROM orderexp.policies q WHERE q.order_table = %L::regclass AND q.category = %s)',
						cfg.order_table::oid::text, cat_expr);
	ELSE
		scope := format('%s = %L', cat_expr, only_category);
	END IF;

	EXECUTE format($q$
		INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, remind_at,
										  policy_version, variant, order_created)
		SELECT %1$L::regclass, o.%2$I::text, p.id, c.close_at, c.close_at - p.remind_before,
			   p.version, v.variant, %11$s
		  FROM %4$s o
		 CROSS JOIN LATERAL (
				SELECT p.id, p.close_after, p.remind_before, p.version,
					   e.id AS experiment_id, e.variants, e.weights
				  FROM orderexp.policies p
				  LEFT JOIN orderexp.experiments e ON e.id = p.experiment_id
				 WHERE p.order_table = %1$L::regclass
				   AND (p.category = %5$s OR p.category IS NULL)
				 ORDER BY p.category IS NULL
				 LIMIT 1) p
		 CROSS JOIN LATERAL (
				SELECT CASE WHEN p.experiment_id IS NOT NULL
							THEN orderexp.assign_variant(o.%2$I::text, p.weights, p.experiment_id)
					   END AS variant) v
		 CROSS JOIN LATERAL (
				SELECT coalesce(o.%3$I::timestamptz, now())
					   + coalesce(p.variants[v.variant], p.close_after) AS close_at) c
		 WHERE o.%6$I = %7$L::text::%8$s AND %9$s
		ON CONFLICT (order_table, order_key) DO %10$s$q$,
		cfg.order_table::oid::text, cfg.key_column, cfg.created_column,
		cfg.order_table, cat_expr, cfg.status_column, cfg.unpaid_value,
		orderexp._status_type(cfg),
		scope,
		CASE WHEN reschedule
			 THEN 'UPDATE SET policy_id = excluded.policy_id, close_at = excluded.close_at, '
				  'remind_at = CASE WHEN excluded.close_at = t.reminded_for THEN NULL '
				  'ELSE excluded.remind_at END, '
				  'policy_version = excluded.policy_version, variant = excluded.variant, '
				  'order_created = excluded.order_created'
			 ELSE 'NOTHING' END,
		orderexp._created_utc(cfg, format('o.%I', cfg.created_column)));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

UPDATE orderexp.timers t SET policy_version = p.version
  FROM orderexp.policies p WHERE p.id = t.policy_id;

/* --- the audit trail ------------------------------------------------------ */

CREATE TABLE orderexp.audit (
	id				bigserial,
	at				timestamptz NOT NULL DEFAULT now(),
	order_table		regclass NOT NULL,
	order_key		text COLLATE "C" NOT NULL,
	action			text NOT NULL
					CHECK (action IN ('closed', 'cancelled', 'extended', 'reopened')),
	via				text NOT NULL
					CHECK (via IN ('timeout', 'operator', 'token')),
	actor			name,
	reason			text,
	policy_id		integer,
	policy_version	integer,
	variant			integer,
	deadline		timestamptz,
	previous_deadline timestamptz,
	/* one index, which history() reads: every close writes a row */
	PRIMARY KEY (order_table, order_key, id)
);
COMMENT ON TABLE orderexp.audit IS
	'every state change orderexp made to an order, why and by whom; written in the transaction of the change';
COMMENT ON COLUMN orderexp.audit.via IS
	'timeout: the sweep at the deadline; operator: a function call (cancel, extend, reopen); token: the customer''s extension link';
COMMENT ON COLUMN orderexp.audit.actor IS
	'the role that made the change; NULL for the sweep, which acts for the policy';
COMMENT ON COLUMN orderexp.audit.deadline IS
	'closed: the deadline that passed; cancelled: the deadline the order had; extended, reopened: the new deadline';

/* --- outcomes ------------------------------------------------------------- */

/*
 * No indexes, no constraints, no defaults: the outcome trigger writes it
 * with a bare heap insert on the application's payment path, and refuses to
 * write if an index appears.  The statistics views read it whole.
 */
CREATE TABLE orderexp.outcomes (
	order_table		regclass,
	order_key		text COLLATE "C",
	outcome			text,
	status			text,
	policy_id		integer,
	policy_version	integer,
	variant			integer,
	created_at		timestamptz,
	close_at		timestamptz,
	decided_at		timestamptz,
	reminded		boolean,
	extensions		integer,
	token_extensions integer,
	reopened		boolean
);
COMMENT ON TABLE orderexp.outcomes IS
	'what became of each tracked order when it left the unpaid state; no indexes (written by a C trigger)';
COMMENT ON COLUMN orderexp.outcomes.outcome IS
	'paid (any status but the closed and cancelled values), closed or cancelled';
COMMENT ON COLUMN orderexp.outcomes.close_at IS
	'the deadline in force when the order left the unpaid state';
COMMENT ON COLUMN orderexp.outcomes.decided_at IS
	'start of the transaction that changed the status';

CREATE FUNCTION orderexp.outcome_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_outcome_trigger'
LANGUAGE C;
COMMENT ON FUNCTION orderexp.outcome_trigger() IS
	'row trigger on registered tables: records the outcome of an order leaving the unpaid state';

/* --- triggers on registered tables (redefined: adds the outcome trigger) --- */

CREATE OR REPLACE FUNCTION orderexp._drop_triggers(orders regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tg name;
BEGIN
	FOR tg IN SELECT t.tgname FROM pg_trigger t
			   WHERE t.tgrelid = orders AND NOT t.tgisinternal
				 AND t.tgname IN ('orderexp_timer_insert', 'orderexp_timer_unpaid',
								  'orderexp_timer_moved', 'orderexp_timer_truncate',
								  'orderexp_outcome')
	LOOP
		EXECUTE format('DROP TRIGGER %I ON %s', tg, orders);
	END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION orderexp._install_triggers(cfg orderexp.tables)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM orderexp._drop_triggers(cfg.order_table);

	/* a new unpaid order starts its timer */
	EXECUTE format('CREATE TRIGGER orderexp_timer_insert AFTER INSERT ON %s '
				   'FOR EACH ROW WHEN (NEW.%I = %L) '
				   'EXECUTE FUNCTION orderexp.timer_trigger(%L, %L, %L, %L)',
				   cfg.order_table, cfg.status_column, cfg.unpaid_value,
				   cfg.key_column, cfg.created_column, coalesce(cfg.category_column, ''),
				   cfg.order_table::oid);

	/* an order set back to unpaid outside orderexp is tracked again */
	EXECUTE format('CREATE TRIGGER orderexp_timer_unpaid AFTER UPDATE OF %I ON %s '
				   'FOR EACH ROW WHEN (NEW.%I = %L AND OLD.%I IS DISTINCT FROM %L) '
				   'EXECUTE FUNCTION orderexp.timer_trigger(%L, %L, %L, %L)',
				   cfg.status_column, cfg.order_table,
				   cfg.status_column, cfg.unpaid_value,
				   cfg.status_column, cfg.unpaid_value,
				   cfg.key_column, cfg.created_column, coalesce(cfg.category_column, ''),
				   cfg.order_table::oid);

	/*
	 * On a table partitioned by created-at, an unpaid order whose created-at
	 * changes is tracked again, so that its timer knows where it is now (a
	 * move to another partition is a delete and an insert: the insert
	 * trigger sees it).
	 */
	IF cfg.partition_column IS NOT NULL THEN
		EXECUTE format('CREATE TRIGGER orderexp_timer_moved AFTER UPDATE OF %I ON %s '
					   'FOR EACH ROW WHEN (NEW.%I = %L AND OLD.%I = %L AND OLD.%I IS DISTINCT FROM NEW.%I) '
					   'EXECUTE FUNCTION orderexp.timer_trigger(%L, %L, %L, %L)',
					   cfg.created_column, cfg.order_table,
					   cfg.status_column, cfg.unpaid_value,
					   cfg.status_column, cfg.unpaid_value,
					   cfg.created_column, cfg.created_column,
					   cfg.key_column, cfg.created_column, coalesce(cfg.category_column, ''),
					   cfg.order_table::oid);
	END IF;

	/* an order leaving the unpaid state has an outcome */
	EXECUTE format('CREATE TRIGGER orderexp_outcome AFTER UPDATE OF %I ON %s '
				   'FOR EACH ROW WHEN (OLD.%I = %L AND NEW.%I IS DISTINCT FROM %L) '
				   'EXECUTE FUNCTION orderexp.outcome_trigger(%L, %L, %L, %L, %L, %L)',
				   cfg.status_column, cfg.order_table,
				   cfg.status_column, cfg.unpaid_value,
				   cfg.status_column, cfg.unpaid_value,
				   cfg.key_column, cfg.created_column, cfg.status_column,
				   cfg.closed_value, cfg.cancelled_value, cfg.order_table::oid);

	/* TRUNCATE removes every order at once; so do their timers */
	EXECUTE format('CREATE TRIGGER orderexp_timer_truncate AFTER TRUNCATE ON %s '
				   'FOR EACH STATEMENT EXECUTE FUNCTION orderexp._truncate_trigger()',
				   cfg.order_table);
END;
$$;

/* tables registered before 1.1 get the outcome trigger now */
SELECT orderexp._install_triggers(t) FROM orderexp.tables t;

/* --- the sweep (redefined: one audit row per order closed) ---------------- */

/*
 * As in 1.0, plus: "due" carries the policy version and variant of each
 * timer, and "audit" records each order actually closed, with the policy
 * and the deadline that passed.  The outcome trigger fires on "closed" and
 * still sees the timers "gone" deletes (same command).
 */
CREATE OR REPLACE FUNCTION orderexp._sweep_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status_type text := orderexp._status_type(cfg);
BEGIN
	RETURN format($q$
WITH due AS MATERIALIZED (
	SELECT t.ctid AS tid, t.order_key, t.close_at, t.policy_id, t.policy_version, t.variant,
		   t.order_created
	  FROM orderexp.timers t
	 WHERE t.order_table = $1 AND t.close_at <= now()
	   AND (t.close_at, t.order_key) > ($3, $4)
	 ORDER BY t.close_at, t.order_key
	 LIMIT $2
	   FOR UPDATE SKIP LOCKED),
%12$s
gone AS (
	DELETE FROM orderexp.timers t
	 WHERE t.ctid = ANY (ARRAY(SELECT d.tid FROM due d
								WHERE NOT EXISTS (SELECT 1 FROM busy b
												   WHERE b.order_key = d.order_key)))),
closed AS (
	UPDATE %1$s o SET %3$I = %7$L::%5$s
	 WHERE o.%2$I = ANY (ARRAY(SELECT m.order_key::%6$s FROM mine m WHERE m.unpaid))
	   AND o.%3$I = %4$L::%5$s%13$s
	RETURNING o.%2$I::text AS order_key, %8$s AS cols, %9$s AS category),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'closed', $1, c.order_key, ch.channel,
		   orderexp._closed_payload(%10$L, c.order_key, d.close_at, d.policy_id,
									c.category, c.cols)
	  FROM closed c
	  JOIN due d ON d.order_key = c.order_key
	 CROSS JOIN unnest(%11$L::text[]) AS ch(channel)),
audit AS (
	INSERT INTO orderexp.audit (order_table, order_key, action, via, policy_id,
								policy_version, variant, deadline)
	SELECT $1, c.order_key, 'closed', 'timeout', d.policy_id, d.policy_version, d.variant,
		   d.close_at
	  FROM closed c
	  JOIN due d ON d.order_key = c.order_key)
SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM busy), (SELECT count(*) FROM closed),
	   last.close_at, last.order_key
  FROM (SELECT NULL) AS one
  LEFT JOIN (SELECT d.close_at, d.order_key FROM due d
			  ORDER BY d.close_at DESC, d.order_key DESC LIMIT 1) AS last ON true$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, cfg.closed_value, orderexp._payload_expr(cfg),
		CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
			 ELSE format('o.%I::text', cfg.category_column) END,
		cfg.order_table::text, cfg.channels,
		orderexp._lock_rows_sql(cfg, status_type, '', 'UPDATE'),
		orderexp._created_range_sql(cfg));
END;
$$;

/* --- order operations: the bodies of the gates of 10-reliability.sql; each
 * writes its audit row, and takes the actor in one place, _actor() --- */

/* one audit row (the functions below take their actor in one place) */
CREATE FUNCTION orderexp._audit(orders regclass, k text, action text, via text, actor name,
								reason text, tm orderexp.timers, deadline timestamptz,
								previous_deadline timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO orderexp.audit (order_table, order_key, action, via, actor, reason, policy_id,
								policy_version, variant, deadline, previous_deadline)
	VALUES (orders, k, action, via, actor, reason, tm.policy_id, tm.policy_version, tm.variant,
			deadline, previous_deadline)
$$;

CREATE FUNCTION orderexp._cancel_order(orders regclass, order_key anyelement, reason text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	cfg orderexp.tables;
	k	text;
	st	text;
	payload jsonb;
	tm	orderexp.timers;
BEGIN
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);
	st := orderexp._lock_order(cfg, k);

	IF st IS NOT DISTINCT FROM cfg.cancelled_value THEN
		RETURN false;
	END IF;
	IF st IS DISTINCT FROM cfg.unpaid_value THEN
		RAISE EXCEPTION 'order % in table % is not unpaid', k, orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', coalesce(quote_literal(st), 'NULL'));
	END IF;

	EXECUTE format('UPDATE %s o SET %I = $2::text::%s WHERE o.%I = $1::%s RETURNING %s',
				   orders, cfg.status_column,
				   orderexp._status_type(cfg),
				   cfg.key_column, cfg.key_type, orderexp._payload_expr(cfg))
		INTO payload USING k, cfg.cancelled_value;
	DELETE FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k
	RETURNING * INTO tm;

	PERFORM orderexp._audit(orders, k, 'cancelled', 'operator', actor, reason, tm,
							tm.close_at, NULL);
	PERFORM orderexp._emit(cfg, 'cancelled', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'reason', reason, 'cancelled_by', actor::text,
						   'order', payload));
	RETURN true;
END;
$$;

CREATE FUNCTION orderexp._cancel_orders(orders regclass, order_keys anyarray, reason text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	cfg orderexp.tables;
	keys text[];
	n integer;
BEGIN
	cfg := orderexp._config(orders);
	IF order_keys IS NULL THEN
		RAISE EXCEPTION 'order keys must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF array_position(order_keys, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'order keys must not contain null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	/* canonical and distinct */
	EXECUTE format('SELECT coalesce(array_agg(DISTINCT k::%s::text), ''{}'') FROM unnest($1::text[]) k',
				   cfg.key_type)
		INTO keys USING order_keys::text[];

	/*
	 * Lock the rows first, in key order, then their timers: the order of
	 * orderexp._lock_order.  Only the rows locked here are cancelled: an
	 * order committed after this statement is left alone, as if it had come
	 * a moment later.  Every writer of a timer holds its order's row, so no
	 * timer of a row locked here can appear or change before we are done.
	 */
	EXECUTE format('SELECT coalesce(array_agg(l.k), ''{}'') FROM (SELECT o.%1$I::text AS k FROM %2$s o WHERE o.%1$I = ANY ($1::%3$s[]) ORDER BY o.%1$I FOR UPDATE) l',
				   cfg.key_column, orders, cfg.key_type)
		INTO keys USING keys;
	PERFORM 1 FROM orderexp.timers t
	 WHERE t.order_table = orders AND t.order_key = ANY (keys)
	 ORDER BY t.order_key
	   FOR UPDATE;

	EXECUTE format($q$
		WITH c AS (
			UPDATE %1$s o SET %2$I = $3::text::%3$s
			 WHERE o.%4$I = ANY ($1::%5$s[]) AND o.%2$I = $2::text::%3$s
			RETURNING o.%4$I::text AS k, %6$s AS cols),
		d AS (
			DELETE FROM orderexp.timers t USING c
			 WHERE t.order_table = %7$L::regclass AND t.order_key = c.k
			RETURNING t.*),
		e AS (
			INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
			SELECT 'cancelled', %7$L::regclass, c.k, ch,
				   jsonb_build_object('order_table', %8$L, 'order_key', c.k,
									  'reason', $4, 'cancelled_by', $6::text,
									  'order', c.cols)
			  FROM c CROSS JOIN unnest($5::text[]) ch),
		a AS (
			INSERT INTO orderexp.audit (order_table, order_key, action, via, actor, reason,
										policy_id, policy_version, variant, deadline)
			SELECT %7$L::regclass, c.k, 'cancelled', 'operator', $6, $4,
				   d.policy_id, d.policy_version, d.variant, d.close_at
			  FROM c LEFT JOIN d ON d.order_key = c.k)
		SELECT count(*) FROM c$q$,
		orders, cfg.status_column,
		orderexp._status_type(cfg),
		cfg.key_column, cfg.key_type, orderexp._payload_expr(cfg),
		orders::oid::text, orders::text)
		INTO n USING keys, cfg.unpaid_value, cfg.cancelled_value, reason, cfg.channels, actor;

	IF n > 0 THEN
		PERFORM pg_notify('orderexp', json_build_object('kind', 'cancelled', 'table', orders::text,
														'count', n)::text);
	END IF;
	RETURN n;
END;
$$;

CREATE FUNCTION orderexp._extend_order(orders regclass, order_key anyelement, "by" interval)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	cfg orderexp.tables;
	k	text;
	st	text;
	tm	orderexp.timers;
	pol	orderexp.policies;
	step interval;
	new_close timestamptz;
BEGIN
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);
	IF "by" IS NOT NULL AND ("by" <= interval '0' OR "by" > interval '100 years') THEN
		RAISE EXCEPTION 'extension must be positive and at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('by is %s.', "by");
	END IF;
	st := orderexp._lock_order(cfg, k);
	IF st IS DISTINCT FROM cfg.unpaid_value THEN
		RAISE EXCEPTION 'order % in table % is not unpaid', k, orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', coalesce(quote_literal(st), 'NULL'));
	END IF;
	SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % in table % is not tracked', k, orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'No close policy applies to its category.';
	END IF;
	SELECT * INTO pol FROM orderexp.policies p WHERE p.id = tm.policy_id;
	step := coalesce("by", pol.extend_by);
	IF step IS NULL THEN
		RAISE EXCEPTION 'no extension interval given'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The close policy of this order has no extend_by.',
				  HINT = 'Pass "by", or set extend_by in the policy.';
	END IF;

	new_close := tm.close_at + step;
	UPDATE orderexp.timers t
	   SET close_at = new_close,
		   remind_at = new_close - pol.remind_before,
		   extensions = t.extensions + 1
	 WHERE t.order_table = orders AND t.order_key = k;

	PERFORM orderexp._audit(orders, k, 'extended', 'operator', actor, NULL, tm,
							new_close, tm.close_at);
	PERFORM orderexp._emit(cfg, 'extended', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'close_at', new_close, 'previous_close_at', tm.close_at,
						   'extended_by', orderexp._iso_interval(step), 'extensions', tm.extensions + 1,
						   'extensions_left', greatest(pol.max_extensions - tm.token_extensions, 0),
						   'extended_by_role', actor::text, 'via', 'operator',
						   'order', orderexp._order_cols(cfg, k)));
	RETURN new_close;
END;
$$;

/* the customer's extension (body as in 1.0, plus its audit row) */
CREATE OR REPLACE FUNCTION orderexp._extend_order_by_token(token text, caller name)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claim	record;
	cfg		orderexp.tables;
	st		text;
	tm		orderexp.timers;
	pol		orderexp.policies;
	refusal	text[];
	new_close timestamptz;
BEGIN
	claim := orderexp._token_open(token);		/* 22023 unless signed by us */
	SELECT * INTO cfg FROM orderexp.tables t WHERE t.order_table = claim.order_table;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invalid extension token'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The table the token names is no longer registered with orderexp.';
	END IF;

	/* the order row first, then its timer (orderexp._lock_order) */
	st := orderexp._lock_order(cfg, claim.order_key);
	SELECT * INTO tm FROM orderexp.timers t
	 WHERE t.order_table = cfg.order_table AND t.order_key = claim.order_key;
	SELECT * INTO pol FROM orderexp.policies p WHERE p.id = tm.policy_id;

	/*
	 * A token used before says so, whatever else holds now (no extensions
	 * left, say), as long as the order is still pending at all.
	 */
	IF st IS NOT DISTINCT FROM cfg.unpaid_value AND tm.order_key IS NOT NULL
	   AND (tm.close_at <> claim.close_at OR tm.extensions <> claim.extensions
			OR tm.generation <> claim.generation) THEN
		RAISE EXCEPTION 'extension token has already been used or is outdated'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('The deadline of order %s has moved since the token was made.', claim.order_key),
				  HINT = 'Use the link from the latest reminder.';
	END IF;
	refusal := orderexp._token_refusal(cfg, st, tm, pol);
	IF refusal IS NOT NULL THEN
		RAISE EXCEPTION 'cannot extend order % in table %: %', claim.order_key, cfg.order_table, refusal[1]
			USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = refusal[2];
	END IF;

	new_close := tm.close_at + pol.extend_by;
	UPDATE orderexp.timers t
	   SET close_at = new_close,
		   remind_at = new_close - pol.remind_before,
		   extensions = t.extensions + 1,
		   token_extensions = t.token_extensions + 1
	 WHERE t.order_table = cfg.order_table AND t.order_key = claim.order_key;

	PERFORM orderexp._audit(cfg.order_table, claim.order_key, 'extended', 'token', caller, NULL,
							tm, new_close, tm.close_at);
	PERFORM orderexp._emit(cfg, 'extended', claim.order_key,
		jsonb_build_object('order_table', cfg.order_table::text, 'order_key', claim.order_key,
						   'close_at', new_close, 'previous_close_at', tm.close_at,
						   'extended_by', orderexp._iso_interval(pol.extend_by), 'extensions', tm.extensions + 1,
						   'extensions_left', pol.max_extensions - tm.token_extensions - 1,
						   'extended_by_role', caller, 'via', 'token',
						   'order', orderexp._order_cols(cfg, claim.order_key)));
	RETURN new_close;
END;
$$;

/* --- reopen --------------------------------------------------------------- */

/* the body; the gate orderexp.reopen_order is below */
CREATE FUNCTION orderexp._reopen_order(orders regclass, order_key anyelement,
									   close_after interval, reason text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	cfg orderexp.tables;
	k	text;
	st	text;
	last_change orderexp.audit;
	expected text;
	tm	orderexp.timers;
	pol	orderexp.policies;
	step interval;
	new_close timestamptz;
BEGIN
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);
	IF close_after IS NOT NULL AND (close_after <= interval '0' OR close_after > interval '100 years') THEN
		RAISE EXCEPTION 'close_after must be positive and at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('close_after is %s.', close_after);
	END IF;

	/* the row first, then its timer (a closed order has none, unless closed outside orderexp) */
	st := orderexp._lock_order(cfg, k);
	IF st IS NOT DISTINCT FROM cfg.unpaid_value THEN
		RAISE EXCEPTION 'order % in table % is unpaid', k, orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Only orders orderexp closed or cancelled can be reopened.',
				  HINT = 'Use orderexp.extend_order() to give an unpaid order more time.';
	END IF;
	IF st IS DISTINCT FROM cfg.closed_value AND st IS DISTINCT FROM cfg.cancelled_value THEN
		RAISE EXCEPTION 'order % in table % is neither closed nor cancelled', k, orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', coalesce(quote_literal(st), 'NULL'));
	END IF;

	/* the last change orderexp made must be the close or the cancel we see */
	SELECT * INTO last_change FROM orderexp.audit a
	 WHERE a.order_table = orders AND a.order_key = k
	 ORDER BY a.id DESC LIMIT 1;
	/*
	 * orderexp drops the timer when it closes or cancels; a timer on a closed
	 * order means the application set it back to unpaid (and closed it
	 * again) since.  The lazy clean-up removes such a timer at its deadline,
	 * so this catches a round trip outside orderexp only until then.
	 */
	expected := CASE WHEN st = cfg.closed_value THEN 'closed' ELSE 'cancelled' END;
	IF last_change.action IS DISTINCT FROM expected
	   OR EXISTS (SELECT 1 FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k) THEN
		RAISE EXCEPTION 'order % in table % was not % by orderexp', k, orders, expected
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = CASE WHEN last_change.action IS NULL
								THEN 'orderexp has no record of changing this order.'
								WHEN last_change.action IS DISTINCT FROM expected
								THEN format('The last change orderexp made was %s at %s.',
											last_change.action, last_change.at)
								ELSE 'It was set back to unpaid outside orderexp since orderexp last changed it.' END,
				  HINT = 'Only orders orderexp closed or cancelled can be reopened; set the status yourself otherwise.';
	END IF;

	/* back to unpaid: the timer trigger arms a timer under today's policy and variant */
	EXECUTE format('UPDATE %s o SET %I = $2::text::%s WHERE o.%I = $1::%s',
				   orders, cfg.status_column, orderexp._status_type(cfg),
				   cfg.key_column, cfg.key_type)
		USING k, cfg.unpaid_value;
	SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % in table % would not be tracked', k, orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'No close policy applies to its category any more.';
	END IF;
	SELECT * INTO pol FROM orderexp.policies p WHERE p.id = tm.policy_id;
	step := coalesce(close_after,
					 (SELECT e.variants[tm.variant] FROM orderexp.experiments e
					   WHERE e.id = pol.experiment_id AND tm.variant IS NOT NULL),
					 pol.close_after);
	new_close := now() + step;
	UPDATE orderexp.timers t
	   SET close_at = new_close,
		   remind_at = CASE WHEN pol.remind_before < step THEN new_close - pol.remind_before END,
		   reminded_for = NULL,
		   reopened = true
	 WHERE t.order_table = orders AND t.order_key = k;

	PERFORM orderexp._audit(orders, k, 'reopened', 'operator', actor, reason, tm,
							new_close, last_change.deadline);
	PERFORM orderexp._emit(cfg, 'reopened', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'close_at', new_close, 'previous_status', st,
						   'reason', reason, 'reopened_by', actor::text,
						   'order', orderexp._order_cols(cfg, k)));
	RETURN new_close;
END;
$$;
CREATE FUNCTION orderexp.reopen_order(orders regclass, order_key anyelement,
									  close_after interval DEFAULT NULL, reason text DEFAULT NULL)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.reopen_order(regclass, anyelement, interval, text) IS
	'set an order orderexp closed or cancelled back to unpaid with a fresh deadline (NULL: the policy''s); returns it';

/* --- history --------------------------------------------------------------- */

/*
 * What orderexp did to one order, oldest first, with the events each change
 * wrote (matched by order, kind and transaction time, as both take now()).
 * The body reads orderexp's tables as the owner, so it is behind a gate
 * (history_json: the caller needs UPDATE on the orders table, as for every
 * other order function); history() unpacks its result into rows.
 */
CREATE FUNCTION orderexp._history_json(orders regclass, order_key anyelement)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	k	text;
	result jsonb;
BEGIN
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);
	SELECT coalesce(jsonb_agg(to_jsonb(h) ORDER BY h.id), '[]') INTO result
	  FROM (SELECT a.id, a.at, a.action, a.via, a.actor, a.reason, a.policy_id, a.policy_version,
				   a.variant, a.deadline, a.previous_deadline, ev.ids AS event_ids, ev.delivered
			  FROM orderexp.audit a
			  LEFT JOIN LATERAL (
					SELECT array_agg(o.id ORDER BY o.id) AS ids,
						   bool_and(o.delivered_at IS NOT NULL) AS delivered
					  FROM orderexp.outbox o
					 WHERE o.order_table = a.order_table AND o.order_key = a.order_key
					   AND o.kind = a.action AND o.created_at = a.at) ev ON true
			 WHERE a.order_table = orders AND a.order_key = k) h;
	RETURN result;
END;
$$;

CREATE FUNCTION orderexp.history_json(orders regclass, order_key anyelement)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.history_json(regclass, anyelement) IS
	'history() of one order as a JSON array, oldest first';

CREATE FUNCTION orderexp.history(orders regclass, order_key anyelement)
RETURNS TABLE (id bigint, at timestamptz, action text, via text, actor name, reason text,
			   policy_id integer, policy_version integer, variant integer,
			   deadline timestamptz, previous_deadline timestamptz,
			   event_ids bigint[], delivered boolean)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT h.* FROM jsonb_to_recordset(orderexp.history_json(orders, order_key))
		AS h(id bigint, at timestamptz, action text, via text, actor name, reason text,
			 policy_id integer, policy_version integer, variant integer,
			 deadline timestamptz, previous_deadline timestamptz,
			 event_ids bigint[], delivered boolean)
	 ORDER BY h.id
$$;
COMMENT ON FUNCTION orderexp.history(regclass, anyelement) IS
	'every change orderexp made to one order, oldest first, with the ids and delivery state of its events';

/* audit rows and outcomes older than a cutoff go; returns how many of each */
CREATE FUNCTION orderexp.forget_before(cutoff timestamptz,
									   OUT audit_rows bigint, OUT outcome_rows bigint)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF cutoff IS NULL THEN
		RAISE EXCEPTION 'cutoff must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM orderexp.audit a WHERE a.at < cutoff;
	GET DIAGNOSTICS audit_rows = ROW_COUNT;
	DELETE FROM orderexp.outcomes o WHERE o.decided_at < cutoff;
	GET DIAGNOSTICS outcome_rows = ROW_COUNT;
END;
$$;
COMMENT ON FUNCTION orderexp.forget_before(timestamptz) IS
	'retention: delete audit rows and outcomes older than cutoff';

/* --- experiments ------------------------------------------------------------ */

/* the policy of (table, category), locked, or a clear error */
CREATE FUNCTION orderexp._policy_for(orders regclass, category text)
RETURNS orderexp.policies
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pol orderexp.policies;
BEGIN
	PERFORM orderexp._config(orders);
	SELECT * INTO pol FROM orderexp.policies p
	 WHERE p.order_table = orders AND p.category IS NOT DISTINCT FROM _policy_for.category
	   FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % has no close policy for %', orders,
			coalesce('category ' || quote_literal(category), 'its default')
			USING ERRCODE = 'no_data_found',
				  HINT = 'Create it with orderexp.set_close_policy().';
	END IF;
	RETURN pol;
END;
$$;

/* bodies of owner gates: the caller must own the orders table */
CREATE FUNCTION orderexp._start_experiment(orders regclass, variants interval[],
										   weights integer[], category text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	pol orderexp.policies;
	w	integer[];
	exp_id integer;
	i	integer;
BEGIN
	pol := orderexp._policy_for(orders, category);
	IF variants IS NULL OR cardinality(variants) NOT BETWEEN 2 AND 16
	   OR array_ndims(variants) <> 1 THEN
		RAISE EXCEPTION 'an experiment needs 2 to 16 variants'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('variants is %s.', coalesce(variants::text, 'NULL'));
	END IF;
	w := coalesce(weights, array_fill(1, ARRAY[cardinality(variants)]));
	IF cardinality(w) <> cardinality(variants) OR array_ndims(w) <> 1 THEN
		RAISE EXCEPTION 'weights must have one entry per variant'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('%s variants, weights %s.', cardinality(variants), w);
	END IF;
	FOR i IN 1 .. cardinality(variants) LOOP
		IF variants[i] IS NULL OR variants[i] <= interval '0' OR variants[i] > interval '100 years' THEN
			RAISE EXCEPTION 'variant % must be a positive interval of at most 100 years', i
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('It is %s.', coalesce(variants[i]::text, 'NULL'));
		END IF;
		IF pol.remind_before IS NOT NULL AND variants[i] <= pol.remind_before THEN
			RAISE EXCEPTION 'variant % must be longer than the policy''s remind_before', i
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Variant %s is %s, remind_before is %s.', i, variants[i],
									  pol.remind_before);
		END IF;
		IF w[i] IS NULL OR w[i] <= 0 OR w[i] > 1000000 THEN
			RAISE EXCEPTION 'weight % must be between 1 and 1000000', i
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('It is %s.', coalesce(w[i]::text, 'NULL'));
		END IF;
	END LOOP;
	IF pol.experiment_id IS NOT NULL THEN
		RAISE EXCEPTION 'the % close policy of table % is already running an experiment',
			coalesce('category ' || quote_literal(category), 'default'), orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'End it with orderexp.end_experiment() first.';
	END IF;

	INSERT INTO orderexp.experiments (policy_id, policy_version, order_table, category,
									  variants, weights, started_by)
	VALUES (pol.id, pol.version + 1, orders, category, variants, w, actor)
	RETURNING id INTO exp_id;
	/* a new policy version; the commit drops every backend's policy cache */
	UPDATE orderexp.policies p SET experiment_id = exp_id, updated_at = now() WHERE p.id = pol.id;
	RETURN exp_id;
END;
$$;
CREATE FUNCTION orderexp.start_experiment(orders regclass, variants interval[],
										  weights integer[] DEFAULT NULL,
										  category text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.start_experiment(regclass, interval[], integer[], text) IS
	'start an A/B test of the timeout of a policy: new orders get variant i''s close_after with probability weights[i]/sum(weights); returns the experiment id';

CREATE FUNCTION orderexp._end_experiment(orders regclass, winner integer, category text)
RETURNS interval
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	pol orderexp.policies;
	ex	orderexp.experiments;
BEGIN
	pol := orderexp._policy_for(orders, category);
	IF pol.experiment_id IS NULL THEN
		RAISE EXCEPTION 'the % close policy of table % is running no experiment',
			coalesce('category ' || quote_literal(category), 'default'), orders
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	SELECT * INTO ex FROM orderexp.experiments e WHERE e.id = pol.experiment_id FOR UPDATE;
	IF winner IS NULL OR winner NOT BETWEEN 1 AND cardinality(ex.variants) THEN
		RAISE EXCEPTION 'winner must be a variant number between 1 and %', cardinality(ex.variants)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('winner is %s.', coalesce(winner::text, 'NULL'));
	END IF;
	UPDATE orderexp.experiments e
	   SET ended_at = now(), ended_by = actor, winner = _end_experiment.winner
	 WHERE e.id = ex.id;
	/* the winner becomes the policy; orders already tracked keep their deadlines */
	UPDATE orderexp.policies p
	   SET experiment_id = NULL, close_after = ex.variants[winner], updated_at = now()
	 WHERE p.id = pol.id;
	RETURN ex.variants[winner];
END;
$$;
CREATE FUNCTION orderexp.end_experiment(orders regclass, winner integer, category text DEFAULT NULL)
RETURNS interval
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.end_experiment(regclass, integer, text) IS
	'end the running experiment of a policy: variant winner''s close_after becomes the policy''s; returns it';

/* --- statistics -------------------------------------------------------------- */

/* two-sided p-value of a standard normal z (erf after Abramowitz-Stegun 7.1.26, error < 1.5e-7) */
CREATE FUNCTION orderexp._normal_p(z double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT 1 - erf
	  FROM (SELECT 1 - t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
				   + t * (-1.453152027 + t * 1.061405429)))) * exp(-x * x) AS erf
			  FROM (SELECT 1 / (1 + 0.3275911 * x) AS t, x
					  FROM (SELECT abs(z) / sqrt(2.0::double precision) AS x) a) b) c
$$;

/* Wilson score interval (95 %) of x successes in n trials */
CREATE FUNCTION orderexp._wilson(x bigint, n bigint, OUT low double precision, OUT high double precision)
RETURNS record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN n > 0 THEN (centre - half) / denom END,
		   CASE WHEN n > 0 THEN (centre + half) / denom END
	  FROM (SELECT p + z * z / (2 * n) AS centre,
				   z * sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) AS half,
				   1 + z * z / n AS denom
			  FROM (SELECT CASE WHEN n > 0 THEN x::double precision / n END AS p,
						   1.959963984540054::double precision AS z,
						   nullif(n, 0)::double precision AS n) a) b
$$;

CREATE VIEW orderexp.policy_stats AS
	SELECT v.order_table, v.category, o.policy_id, o.policy_version, v.close_after,
		   count(*) AS orders,
		   count(*) FILTER (WHERE o.outcome = 'paid') AS paid,
		   count(*) FILTER (WHERE o.outcome = 'closed') AS closed,
		   count(*) FILTER (WHERE o.outcome = 'cancelled') AS cancelled,
		   round(count(*) FILTER (WHERE o.outcome = 'paid')::numeric / count(*), 4) AS conversion_rate,
		   round(count(*) FILTER (WHERE o.outcome = 'paid' AND o.reminded)::numeric
				 / nullif(count(*) FILTER (WHERE o.outcome = 'paid'), 0), 4) AS paid_after_reminder,
		   round(count(*) FILTER (WHERE o.outcome = 'paid' AND o.extensions > 0)::numeric
				 / nullif(count(*) FILTER (WHERE o.outcome = 'paid'), 0), 4) AS paid_after_extension,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY o.decided_at - o.created_at)
			   FILTER (WHERE o.outcome = 'paid') AS median_time_to_pay,
		   percentile_cont(0.9) WITHIN GROUP (ORDER BY o.decided_at - o.created_at)
			   FILTER (WHERE o.outcome = 'paid') AS p90_time_to_pay,
		   round(count(*) FILTER (WHERE o.outcome = 'paid'
								  AND o.decided_at >= o.close_at - (o.close_at - o.created_at) / 10)::numeric
				 / nullif(count(*) FILTER (WHERE o.outcome = 'paid'), 0), 4) AS paid_in_last_tenth
	  FROM orderexp.outcomes o
	  JOIN orderexp.policy_versions v ON v.policy_id = o.policy_id AND v.version = o.policy_version
	 WHERE NOT o.reopened
	 GROUP BY v.order_table, v.category, o.policy_id, o.policy_version, v.close_after;
COMMENT ON VIEW orderexp.policy_stats IS
	'outcomes per table, category and policy version: conversion, reminders, extensions, time to pay (reopened orders left out)';

CREATE VIEW orderexp.experiment_stats AS
	WITH arms AS (
		SELECT e.id AS experiment_id, e.order_table, e.category, e.policy_id, e.started_at,
			   e.ended_at, e.winner, a.n::integer AS variant, a.close_after,
			   e.weights[a.n::integer] AS weight,
			   count(o.outcome) AS orders,
			   count(*) FILTER (WHERE o.outcome = 'paid') AS paid
		  FROM orderexp.experiments e
		 CROSS JOIN LATERAL unnest(e.variants) WITH ORDINALITY AS a(close_after, n)
		  LEFT JOIN orderexp.outcomes o
				 ON o.policy_id = e.policy_id AND o.policy_version = e.policy_version
				AND o.variant = a.n AND NOT o.reopened
		 GROUP BY e.id, a.n, a.close_after),
	rated AS (
		SELECT r.*, r.paid::double precision / nullif(r.orders, 0) AS rate,
			   f.orders AS first_orders, f.paid AS first_paid
		  FROM arms r
		  JOIN arms f ON f.experiment_id = r.experiment_id AND f.variant = 1)
	SELECT r.experiment_id, r.order_table, r.category, r.policy_id, r.variant, r.close_after,
		   r.weight, r.ended_at IS NULL AS running, r.winner = r.variant AS winner,
		   r.orders, r.paid, round(r.rate::numeric, 4) AS conversion_rate,
		   round(w.low::numeric, 4) AS ci_low, round(w.high::numeric, 4) AS ci_high,
		   round(z.z::numeric, 3) AS z_vs_first,
		   round(orderexp._normal_p(z.z)::numeric, 4) AS p_value,
		   (r.paid >= 10 AND r.orders - r.paid >= 10) AS enough_data
	  FROM rated r
	 CROSS JOIN LATERAL orderexp._wilson(r.paid, r.orders) w
	 CROSS JOIN LATERAL (
			SELECT CASE WHEN r.variant > 1 AND r.orders > 0 AND r.first_orders > 0
							 AND pooled > 0 AND pooled < 1
						THEN (r.rate - r.first_paid::double precision / r.first_orders)
							 / sqrt(pooled * (1 - pooled) * (1.0 / r.orders + 1.0 / r.first_orders))
				   END AS z
			  FROM (SELECT (r.paid + r.first_paid)::double precision
						   / nullif(r.orders + r.first_orders, 0) AS pooled) pp) z;
COMMENT ON VIEW orderexp.experiment_stats IS
	'per experiment variant: conversion rate with its 95 % Wilson interval, z-test and two-sided p-value against variant 1';

/* --- dump and privileges ------------------------------------------------------ */

SELECT pg_catalog.pg_extension_config_dump('orderexp.policy_versions', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.experiments', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.experiments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.audit', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.audit_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outcomes', '');

REVOKE ALL ON orderexp.policy_versions, orderexp.experiments, orderexp.audit,
	orderexp.outcomes FROM PUBLIC;
REVOKE ALL ON SEQUENCE orderexp.experiments_id_seq, orderexp.audit_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.outcome_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._policy_version() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._policy_version_restored() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.forget_before(timestamptz) FROM PUBLIC;
/* (the gates and their bodies are kept from PUBLIC by 90-privileges.sql) */

/*
 * The application reopens orders and reads their history (the gates still
 * want UPDATE on the orders table); the administrator runs experiments,
 * prunes, and reads the statistics (views: no privilege on the tables).
 */
GRANT EXECUTE ON FUNCTION orderexp.reopen_order(regclass, anyelement, interval, text),
	orderexp.history_json(regclass, anyelement)
	TO orderexp_app;
REVOKE ALL ON FUNCTION orderexp.history(regclass, anyelement) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orderexp.history(regclass, anyelement) TO orderexp_app;
GRANT EXECUTE ON FUNCTION orderexp.start_experiment(regclass, interval[], integer[], text),
	orderexp.end_experiment(regclass, integer, text),
	orderexp.forget_before(timestamptz) TO orderexp_admin;
GRANT SELECT ON orderexp.policy_stats, orderexp.experiment_stats TO orderexp_admin;
