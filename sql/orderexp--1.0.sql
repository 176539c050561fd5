/*
 * orderexp--1.0.sql
 *		Install script of orderexp 1.0: close expired unpaid orders in the
 *		user's own tables and write what happened into an outbox.
 *
 * Read top to bottom: catalog tables (registered tables, policies, timers,
 * outbox), C entry points, the SQL-level API (set_close_policy and friends),
 * views, and the dump markers.  Every object lives in schema orderexp.
 *
 * All dynamic SQL quotes identifiers with format('%I') or regclass output,
 * and passes values as parameters or with format('%L'); nothing from a user
 * string is spliced in unquoted.  Functions pin search_path so that a hostile
 * search_path of the caller cannot redirect an operator or function call.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION orderexp" to load this file. \quit

/* ------------------------------------------------------------------------
 * Catalog
 * ------------------------------------------------------------------------ */

CREATE TABLE orderexp.tables (
	order_table		regclass PRIMARY KEY,
	key_column		name NOT NULL,
	key_type		regtype NOT NULL,
	status_column	name NOT NULL,
	created_column	name NOT NULL,
	category_column	name,
	unpaid_value	text NOT NULL,
	closed_value	text NOT NULL,
	cancelled_value	text NOT NULL,
	payload_columns	name[] NOT NULL DEFAULT '{}',
	channels		text[] NOT NULL DEFAULT '{email}',
	registered_at	timestamptz NOT NULL DEFAULT now(),
	last_error		text,
	last_error_at	timestamptz,
	CONSTRAINT tables_values_distinct
		CHECK (unpaid_value <> closed_value AND unpaid_value <> cancelled_value
			   AND closed_value <> cancelled_value),
	CONSTRAINT tables_channels_valid
		CHECK (cardinality(channels) > 0 AND array_position(channels, NULL) IS NULL)
);
COMMENT ON TABLE orderexp.tables IS
	'orders tables registered with orderexp.set_close_policy and how their columns map';

CREATE TABLE orderexp.policies (
	id				serial PRIMARY KEY,
	order_table		regclass NOT NULL
					REFERENCES orderexp.tables (order_table) ON DELETE CASCADE,
	category		text,
	close_after		interval NOT NULL CHECK (close_after > interval '0'),
	remind_before	interval CHECK (remind_before > interval '0'),
	extend_by		interval CHECK (extend_by > interval '0'),
	max_extensions	integer NOT NULL DEFAULT 0 CHECK (max_extensions >= 0),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX policies_table_default ON orderexp.policies (order_table)
	WHERE category IS NULL;
CREATE UNIQUE INDEX policies_table_category ON orderexp.policies (order_table, category)
	WHERE category IS NOT NULL;
COMMENT ON TABLE orderexp.policies IS
	'close policies: per table (category NULL) and per product category';

/*
 * The timer trigger caches policies in each backend; any change to this
 * table makes every backend drop that cache when the change commits.
 */
CREATE FUNCTION orderexp._policies_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_policies_changed'
LANGUAGE C;

CREATE TRIGGER policies_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orderexp.policies
	FOR EACH STATEMENT EXECUTE FUNCTION orderexp._policies_changed();

/*
 * One row per tracked order.  Rows are created by the timer trigger on the
 * user's table when an unpaid order appears, and removed by whatever ends the
 * order through orderexp (sweep, cancel).  A payment made directly on the
 * user's table does not touch this table at all: the row is dropped lazily by
 * the sweep when its deadline comes, which keeps the application's payment
 * path free of orderexp work and of lock-order hazards.
 */
/* every timer (re)start draws a new generation: tokens name it */
CREATE SEQUENCE orderexp.timer_generation;

CREATE TABLE orderexp.timers (
	order_table		regclass NOT NULL,
	order_key		text COLLATE "C" NOT NULL,
	policy_id		integer NOT NULL,
	close_at		timestamptz NOT NULL,
	remind_at		timestamptz,
	extensions		integer NOT NULL DEFAULT 0,
	token_extensions integer NOT NULL DEFAULT 0,
	generation		bigint NOT NULL DEFAULT nextval('orderexp.timer_generation'),
	reminded_for	timestamptz,
	PRIMARY KEY (order_table, order_key)
);
CREATE INDEX timers_due ON orderexp.timers (order_table, close_at, order_key);
CREATE INDEX timers_remind ON orderexp.timers (order_table, remind_at, order_key)
	WHERE remind_at IS NOT NULL;
COMMENT ON COLUMN orderexp.timers.remind_at IS
	'when the reminder is due; NULL once it is sent or when the policy has none';
COMMENT ON COLUMN orderexp.timers.extensions IS
	'extensions of any kind so far; part of every token, so a token works once';
COMMENT ON COLUMN orderexp.timers.token_extensions IS
	'extensions the customer took through a token, bounded by the policy''s max_extensions';
COMMENT ON COLUMN orderexp.timers.generation IS
	'drawn anew whenever the order starts being tracked again; part of every token, so a token never comes back to life';
COMMENT ON COLUMN orderexp.timers.reminded_for IS
	'the deadline the last reminder was sent for: one reminder per deadline';
COMMENT ON TABLE orderexp.timers IS
	'deadline of every tracked order; due work is an index range scan on (order_table, close_at)';

CREATE TABLE orderexp.outbox (
	id				bigserial PRIMARY KEY,
	kind			text NOT NULL
					CHECK (kind IN ('reminder', 'closed', 'cancelled', 'extended', 'reopened')),
	order_table		regclass NOT NULL,
	order_key		text COLLATE "C" NOT NULL,
	channel			text NOT NULL,
	payload			jsonb NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	attempts		integer NOT NULL DEFAULT 0,
	next_attempt_at	timestamptz NOT NULL DEFAULT now(),
	leased_until	timestamptz,
	delivered_at	timestamptz,
	last_error		text
);
CREATE INDEX outbox_undelivered ON orderexp.outbox (next_attempt_at)
	WHERE delivered_at IS NULL;
CREATE INDEX outbox_order ON orderexp.outbox (order_table, order_key);
COMMENT ON TABLE orderexp.outbox IS
	'events written in the same transaction as the state change that caused them; NOTIFY orderexp wakes listeners';

/*
 * The key extension tokens are signed with.  One row; only the extension
 * owner can read it.  It is kept by pg_dump: restoring a dump inserts the
 * dumped row after CREATE EXTENSION made a fresh one, and the trigger below
 * lets the dumped one replace it.
 */
CREATE TABLE orderexp.secret (
	secret			bytea NOT NULL CHECK (length(secret) >= 32),
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orderexp.secret IS
	'per-database key of the extension tokens (HMAC-SHA256); rotate with orderexp.rotate_secret()';

CREATE FUNCTION orderexp._secret_single_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orderexp.secret;
	RETURN NEW;
END;
$$;

CREATE TRIGGER secret_single_row BEFORE INSERT ON orderexp.secret
	FOR EACH ROW EXECUTE FUNCTION orderexp._secret_single_row();

/* ------------------------------------------------------------------------
 * C entry points
 * ------------------------------------------------------------------------ */

CREATE FUNCTION orderexp.timer_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_timer_trigger'
LANGUAGE C;
COMMENT ON FUNCTION orderexp.timer_trigger() IS
	'row trigger on registered tables: starts the timer of a new unpaid order';

CREATE FUNCTION orderexp._closed_payload(order_table text, order_key text,
										 close_at timestamptz, policy_id integer,
										 category text, cols jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orderexp_closed_payload'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp._closed_payload(text, text, timestamptz, integer, text, jsonb) IS
	'payload of a closed event (the sweep''s hot path)';

CREATE FUNCTION orderexp._new_secret()
RETURNS bytea
AS 'MODULE_PATHNAME', 'orderexp_new_secret'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION orderexp._token_make(orders regclass, order_key text,
									 close_at timestamptz, extensions integer,
									 generation bigint)
RETURNS text
AS 'MODULE_PATHNAME', 'orderexp_token_make'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION orderexp._token_open(token text,
									 OUT order_table regclass, OUT order_key text,
									 OUT close_at timestamptz, OUT extensions integer,
									 OUT generation bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'orderexp_token_open'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION orderexp.extension_token(orders regclass, order_key anyelement)
RETURNS text
AS 'MODULE_PATHNAME', 'orderexp_extension_token'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.extension_token(regclass, anyelement) IS
	'signed, URL-safe token that lets the customer extend the order once, while its current deadline stands';

CREATE FUNCTION orderexp.extend_order_by_token(token text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orderexp_extend_order_by_token'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.extend_order_by_token(text) IS
	'customer extension through the link of a reminder; returns the new deadline';

CREATE FUNCTION orderexp.run_due(max_rows integer DEFAULT NULL,
								 OUT reminded bigint, OUT closed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'orderexp_run_due'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.run_due(integer) IS
	'one sweep of due orders in this database, as the background worker does it (pg_cron entry point)';

/* ------------------------------------------------------------------------
 * Internal helpers
 * ------------------------------------------------------------------------ */

/* registration row of a table, or a clear error */
CREATE FUNCTION orderexp._config(orders regclass)
RETURNS orderexp.tables
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
BEGIN
	IF orders IS NULL THEN
		RAISE EXCEPTION 'orders table must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO cfg FROM orderexp.tables t WHERE t.order_table = orders;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % is not registered with orderexp', orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Register it with orderexp.set_close_policy().';
	END IF;
	RETURN cfg;
END;
$$;

/* canonical text form of an order key, converted to the key column's type */
CREATE FUNCTION orderexp._key_text(cfg orderexp.tables, order_key text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
BEGIN
	IF order_key IS NULL THEN
		RAISE EXCEPTION 'order key must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	EXECUTE format('SELECT $1::%s::text', cfg.key_type) INTO k USING order_key;
	RETURN k;
END;
$$;

/*
 * The type of a table's status column, as SQL text for casts, or a clear
 * error if the mapped column is gone.
 */
CREATE FUNCTION orderexp._status_type(cfg orderexp.tables)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status_type text;
BEGIN
	SELECT format_type(a.atttypid, a.atttypmod) INTO status_type
	  FROM pg_attribute a
	 WHERE a.attrelid = cfg.order_table AND a.attname = cfg.status_column
	   AND NOT a.attisdropped AND a.attnum > 0;
	IF status_type IS NULL THEN
		RAISE EXCEPTION 'column "%" mapped as the status column of table % does not exist',
			cfg.status_column, cfg.order_table
			USING ERRCODE = 'undefined_column',
				  HINT = 'Register the table again with orderexp.set_close_policy().';
	END IF;
	RETURN status_type;
END;
$$;

/*
 * An interval as ISO 8601 text (PT1H30M), whatever the session's
 * IntervalStyle: event payloads read the same everywhere.
 */
CREATE FUNCTION orderexp._iso_interval(i interval)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET intervalstyle = 'iso_8601'
AS $$
	SELECT i::text
$$;

/*
 * jsonb_build_object(...) expression over the payload columns of a table,
 * for alias "o"; '{}' when there are none.
 */
CREATE FUNCTION orderexp._payload_expr(cfg orderexp.tables)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN cardinality(cfg.payload_columns) = 0
				THEN '''{}''::jsonb'
				ELSE 'jsonb_build_object(' ||
					 (SELECT string_agg(format('%L, o.%I', c, c), ', ' ORDER BY n)
						FROM unnest(cfg.payload_columns) WITH ORDINALITY AS u(c, n)) ||
					 ')'
		   END
$$;

/* the payload columns of one order, as the 'order' object of an event */
CREATE FUNCTION orderexp._order_cols(cfg orderexp.tables, k text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cols jsonb;
BEGIN
	EXECUTE format('SELECT %s FROM %s o WHERE o.%I = $1::%s',
				   orderexp._payload_expr(cfg), cfg.order_table, cfg.key_column, cfg.key_type)
		INTO cols USING k;
	RETURN cols;
END;
$$;

/*
 * Lock one order: its timer first, then its row, the same order the sweep
 * takes locks in, so that the two cannot deadlock.  Returns the row's status
 * as text; raises P0002 when there is no such order.
 */
CREATE FUNCTION orderexp._lock_order(cfg orderexp.tables, k text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st text;
	found_row boolean;
BEGIN
	PERFORM 1 FROM orderexp.timers t
	 WHERE t.order_table = cfg.order_table AND t.order_key = k
	   FOR UPDATE;
	EXECUTE format('SELECT true, o.%I::text FROM %s o WHERE o.%I = $1::%s FOR UPDATE',
				   cfg.status_column, cfg.order_table, cfg.key_column, cfg.key_type)
		INTO found_row, st USING k;
	IF found_row IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, cfg.order_table
			USING ERRCODE = 'no_data_found';
	END IF;
	RETURN st;
END;
$$;

/*
 * Insert timers for the unpaid rows of a table that have none yet, with
 * deadlines from their created-at column.  With only_category set, limited to
 * that category; with reschedule, also recompute deadlines of tracked rows
 * governed by the policies of that scope.  Returns the number of rows
 * inserted or rescheduled.
 */
CREATE FUNCTION orderexp._track_existing(cfg orderexp.tables, only_category text,
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
		INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, remind_at)
		SELECT %1$L::regclass, o.%2$I::text, p.id,
			   coalesce(o.%3$I::timestamptz, now()) + p.close_after,
			   coalesce(o.%3$I::timestamptz, now()) + p.close_after - p.remind_before
		  FROM %4$s o
		 CROSS JOIN LATERAL (
				SELECT p.id, p.close_after, p.remind_before
				  FROM orderexp.policies p
				 WHERE p.order_table = %1$L::regclass
				   AND (p.category = %5$s OR p.category IS NULL)
				 ORDER BY p.category IS NULL
				 LIMIT 1) p
		 WHERE o.%6$I = %7$L::text::%8$s AND %9$s
		ON CONFLICT (order_table, order_key) DO %10$s$q$,
		cfg.order_table::oid::text, cfg.key_column, cfg.created_column,
		cfg.order_table, cat_expr, cfg.status_column, cfg.unpaid_value,
		orderexp._status_type(cfg),
		scope,
		CASE WHEN reschedule
			 THEN 'UPDATE SET policy_id = excluded.policy_id, close_at = excluded.close_at, '
				  'remind_at = CASE WHEN excluded.close_at = t.reminded_for THEN NULL '
				  'ELSE excluded.remind_at END'
			 ELSE 'NOTHING' END);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

/*
 * The two CTEs both batch statements share, after their "due" CTE:
 *
 *  mine    the rows of the due orders, locked FOR <lock> SKIP LOCKED: an
 *          application transaction (a payment, say) holding one right now
 *          makes it skipped, with "unpaid" and any extra columns;
 *  busy    due orders whose row exists but is locked: left for later.
 */
CREATE FUNCTION orderexp._lock_rows_sql(cfg orderexp.tables, status_type text,
										extra_columns text, lock text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$mine AS MATERIALIZED (
	SELECT o.%2$I::text AS order_key, (o.%3$I IS NOT DISTINCT FROM %4$L::%5$s) AS unpaid%7$s
	  FROM %1$s o
	 WHERE o.%2$I = ANY (ARRAY(SELECT d.order_key::%6$s FROM due d))
	   FOR %8$s OF o SKIP LOCKED),
busy AS MATERIALIZED (
	SELECT d.order_key
	  FROM due d
	 WHERE NOT EXISTS (SELECT 1 FROM mine m WHERE m.order_key = d.order_key)
	   AND EXISTS (SELECT 1 FROM %1$s o WHERE o.%2$I = d.order_key::%6$s)),$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, extra_columns,
		CASE lock WHEN 'UPDATE' THEN 'UPDATE' WHEN 'SHARE' THEN 'SHARE' END)
$$;

/*
 * The statement that closes one batch of due orders of a table, as the sweep
 * (worker and run_due) prepares and keeps it.  Parameters: $1 the table,
 * $2 the batch size, ($3, $4) the deadline and key of the last timer the
 * previous batch of the same sweep took ('-infinity', '' for the first).
 * Returns (taken, busy, closed, deadline and key of the last timer taken).
 *
 * The sweep walks the index in (deadline, key) order and each batch starts
 * after the last one: timers deleted by earlier batches of a sweep that runs
 * in one transaction (run_due) are not stepped over again, and orders held by
 * an application transaction (busy) do not stop the sweep from reaching the
 * due orders behind them.  The next sweep starts from the beginning and
 * tries the busy ones again.
 *
 *  due     the earliest due timers, locked, skipping those another sweep or
 *          an orderexp function holds;
 *  mine    their rows in the orders table, locked, skipping rows that an
 *          application transaction (a payment, say) holds right now;
 *  busy    due orders whose row exists but is locked: left for the next tick;
 *  gone    the timers of everything else are done with (closed now, or paid,
 *          cancelled or deleted since: the lazy clean-up); found by the ctid
 *          the lock returned, which no one can change while we hold it (should
 *          a concurrent change have made it invisible to our snapshot, the
 *          timer stays and the next sweep finds the order no longer unpaid);
 *  closed  the guarded update: only rows still unpaid are closed;
 *  events  one 'closed' event per channel per order actually closed.
 */
CREATE FUNCTION orderexp._sweep_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status_type text := orderexp._status_type(cfg);
BEGIN
	RETURN format($q$
WITH due AS MATERIALIZED (
	SELECT t.ctid AS tid, t.order_key, t.close_at, t.policy_id
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
	   AND o.%3$I = %4$L::%5$s
	RETURNING o.%2$I::text AS order_key, %8$s AS cols, %9$s AS category),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'closed', $1, c.order_key, ch.channel,
		   orderexp._closed_payload(%10$L, c.order_key, d.close_at, d.policy_id,
									c.category, c.cols)
	  FROM closed c
	  JOIN due d ON d.order_key = c.order_key
	 CROSS JOIN unnest(%11$L::text[]) AS ch(channel))
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
		orderexp._lock_rows_sql(cfg, status_type, '', 'UPDATE'));
END;
$$;

/*
 * The statement that writes one batch of due reminders of a table.
 * Parameters and result as for _sweep_sql, over remind_at.
 *
 *  due     the earliest due reminders, timers locked with SKIP LOCKED;
 *  mine    their rows, FOR SHARE SKIP LOCKED: a payment in flight holds its
 *          row, and its order is looked at again next tick;
 *  done    every due reminder but the busy ones is dealt with: remind_at is
 *          cleared, so a reminder goes out at most once per deadline;
 *  events  one 'reminder' per channel for orders still unpaid and not yet
 *          past their deadline, with a token when the customer may extend.
 */
CREATE FUNCTION orderexp._remind_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status_type text := orderexp._status_type(cfg);
BEGIN
	RETURN format($q$
WITH due AS MATERIALIZED (
	SELECT t.ctid AS tid, t.order_key, t.close_at, t.remind_at, t.policy_id, t.extensions,
		   t.token_extensions, t.generation
	  FROM orderexp.timers t
	 WHERE t.order_table = $1 AND t.remind_at <= now()
	   AND (t.remind_at, t.order_key) > ($3, $4)
	 ORDER BY t.remind_at, t.order_key
	 LIMIT $2
	   FOR UPDATE SKIP LOCKED),
%11$s
done AS (
	UPDATE orderexp.timers t SET remind_at = NULL, reminded_for = t.close_at
	 WHERE t.order_table = $1
	   AND t.order_key = ANY (ARRAY(SELECT d.order_key FROM due d
									 WHERE NOT EXISTS (SELECT 1 FROM busy b
														WHERE b.order_key = d.order_key)))),
reminded AS MATERIALIZED (
	SELECT d.*, m.cols, m.category, p.extend_by,
		   greatest(p.max_extensions - d.token_extensions, 0) AS extensions_left
	  FROM due d
	  JOIN mine m ON m.order_key = d.order_key
	  JOIN orderexp.policies p ON p.id = d.policy_id
	 WHERE m.unpaid AND d.close_at > now()),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'reminder', $1, r.order_key, ch.channel,
		   jsonb_build_object('order_table', %9$L, 'order_key', r.order_key,
							  'close_at', r.close_at, 'remind_at', r.remind_at,
							  'policy_id', r.policy_id, 'category', r.category,
							  'extend_by', orderexp._iso_interval(r.extend_by), 'extensions_left', r.extensions_left,
							  'extension_token', tok.token,
							  'order', r.cols)
	  FROM reminded r
	 CROSS JOIN LATERAL (
			SELECT CASE WHEN r.extend_by IS NOT NULL AND r.extensions_left > 0
							 AND octet_length(r.order_key) <= 1024	/* longer keys fit no token */
						THEN orderexp._token_make($1, r.order_key, r.close_at, r.extensions,
												  r.generation)
				   END AS token) tok
	 CROSS JOIN unnest(%10$L::text[]) AS ch(channel))
SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM busy), (SELECT count(*) FROM reminded),
	   last.remind_at, last.order_key
  FROM (SELECT NULL) AS one
  LEFT JOIN (SELECT d.remind_at, d.order_key FROM due d
			  ORDER BY d.remind_at DESC, d.order_key DESC LIMIT 1) AS last ON true$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, orderexp._payload_expr(cfg),
		CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
			 ELSE format('o.%I::text', cfg.category_column) END,
		cfg.order_table::text, cfg.channels,
		orderexp._lock_rows_sql(cfg, status_type,
								format(', %s AS cols, %s AS category',
									   orderexp._payload_expr(cfg),
									   CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
											ELSE format('o.%I::text', cfg.category_column) END),
								'SHARE'));
END;
$$;

/* drop orderexp's triggers from a table, quietly */
CREATE FUNCTION orderexp._drop_triggers(orders regclass)
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
								  'orderexp_timer_truncate')
	LOOP
		EXECUTE format('DROP TRIGGER %I ON %s', tg, orders);
	END LOOP;
END;
$$;

/* (re)create the triggers that keep timers in step with a registered table */
CREATE FUNCTION orderexp._install_triggers(cfg orderexp.tables)
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

	/* TRUNCATE removes every order at once; so do their timers */
	EXECUTE format('CREATE TRIGGER orderexp_timer_truncate AFTER TRUNCATE ON %s '
				   'FOR EACH STATEMENT EXECUTE FUNCTION orderexp._truncate_trigger()',
				   cfg.order_table);
END;
$$;

/* runs as the owner: whoever may truncate the table may drop its timers */
CREATE FUNCTION orderexp._truncate_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orderexp.timers t WHERE t.order_table = TG_RELID::regclass;
	RETURN NULL;
END;
$$;

/* write one event per channel of the table and wake listeners */
CREATE FUNCTION orderexp._emit(cfg orderexp.tables, kind text, k text, payload jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT kind, cfg.order_table, k, ch, payload
	  FROM unnest(cfg.channels) AS ch;
	PERFORM pg_notify('orderexp', json_build_object('kind', kind, 'table', cfg.order_table::text,
													'count', 1)::text);
END;
$$;

/* ------------------------------------------------------------------------
 * Policies
 * ------------------------------------------------------------------------ */

CREATE FUNCTION orderexp.set_close_policy(
	orders				regclass,
	close_after			interval,
	remind_before		interval DEFAULT NULL,
	extend_by			interval DEFAULT NULL,
	max_extensions		integer DEFAULT 0,
	category			text DEFAULT NULL,
	key_column			name DEFAULT NULL,
	status_column		name DEFAULT NULL,
	created_column		name DEFAULT NULL,
	category_column		name DEFAULT NULL,
	unpaid_value		text DEFAULT NULL,
	closed_value		text DEFAULT NULL,
	cancelled_value		text DEFAULT NULL,
	payload_columns		name[] DEFAULT NULL,
	channels			text[] DEFAULT NULL,
	reschedule			boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	old_cfg		orderexp.tables;
	cfg			orderexp.tables;
	rel			record;
	att			record;
	pk_cols		int2[];
	is_new		boolean;
	policy_id	integer;
	had_policy	boolean;
	col			name;
BEGIN
	/* --- arguments that must be given --- */
	IF orders IS NULL THEN
		RAISE EXCEPTION 'orders table must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF close_after IS NULL THEN
		RAISE EXCEPTION 'close_after must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF max_extensions IS NULL THEN
		RAISE EXCEPTION 'max_extensions must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF reschedule IS NULL THEN
		RAISE EXCEPTION 'reschedule must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;

	/* --- intervals --- */
	IF close_after <= interval '0' THEN
		RAISE EXCEPTION 'close_after must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('close_after is %s.', close_after);
	END IF;
	IF close_after > interval '100 years' THEN
		RAISE EXCEPTION 'close_after must be at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('close_after is %s.', close_after);
	END IF;
	IF remind_before IS NOT NULL AND remind_before <= interval '0' THEN
		RAISE EXCEPTION 'remind_before must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('remind_before is %s.', remind_before),
				  HINT = 'Pass NULL for no reminders.';
	END IF;
	IF remind_before IS NOT NULL AND remind_before >= close_after THEN
		RAISE EXCEPTION 'remind_before must be shorter than close_after'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('remind_before is %s, close_after is %s.', remind_before, close_after);
	END IF;
	IF extend_by IS NOT NULL AND (extend_by <= interval '0' OR extend_by > interval '100 years') THEN
		RAISE EXCEPTION 'extend_by must be positive and at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('extend_by is %s.', extend_by);
	END IF;
	IF max_extensions < 0 THEN
		RAISE EXCEPTION 'max_extensions must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('max_extensions is %s.', max_extensions);
	END IF;
	IF max_extensions > 0 AND extend_by IS NULL THEN
		RAISE EXCEPTION 'max_extensions needs extend_by'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give extend_by, the interval each extension adds.';
	END IF;

	/* --- the table --- */
	SELECT c.oid, c.relkind, c.relpersistence INTO rel FROM pg_class c WHERE c.oid = orders;
	IF rel.relkind IS NULL THEN
		RAISE EXCEPTION 'relation with OID % does not exist', orders::oid
			USING ERRCODE = 'undefined_table';
	END IF;
	IF rel.relkind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', orders
			USING ERRCODE = 'wrong_object_type',
				  DETAIL = 'Only ordinary and partitioned tables can be registered.';
	END IF;
	IF rel.relpersistence = 't' THEN
		RAISE EXCEPTION 'temporary table % cannot be registered', orders
			USING ERRCODE = 'wrong_object_type',
				  DETAIL = 'The background worker cannot see temporary tables.';
	END IF;

	SELECT * INTO old_cfg FROM orderexp.tables t WHERE t.order_table = orders FOR UPDATE;
	is_new := NOT FOUND;

	cfg.order_table := orders;
	cfg.key_column := coalesce(key_column, old_cfg.key_column);
	cfg.status_column := coalesce(status_column, old_cfg.status_column, 'status');
	cfg.created_column := coalesce(created_column, old_cfg.created_column, 'created_at');
	cfg.category_column := coalesce(category_column, old_cfg.category_column);
	cfg.unpaid_value := coalesce(unpaid_value, old_cfg.unpaid_value, 'unpaid');
	cfg.closed_value := coalesce(closed_value, old_cfg.closed_value, 'closed');
	cfg.cancelled_value := coalesce(cancelled_value, old_cfg.cancelled_value, 'cancelled');
	cfg.payload_columns := coalesce(payload_columns, old_cfg.payload_columns, '{}');
	cfg.channels := coalesce(channels, old_cfg.channels, '{email}');

	/* --- key column: the primary key unless named, then it must be unique --- */
	IF cfg.key_column IS NULL THEN
		SELECT i.indkey::int2[] INTO pk_cols
		  FROM pg_index i WHERE i.indrelid = orders AND i.indisprimary;
		IF pk_cols IS NULL THEN
			RAISE EXCEPTION 'table % has no primary key', orders
				USING ERRCODE = 'invalid_table_definition',
					  HINT = 'Add a single-column primary key or name a unique key column with key_column.';
		END IF;
		IF cardinality(pk_cols) <> 1 THEN
			RAISE EXCEPTION 'primary key of table % has % columns', orders, cardinality(pk_cols)
				USING ERRCODE = 'invalid_table_definition',
					  HINT = 'Name a unique key column with key_column.';
		END IF;
		SELECT a.attname INTO cfg.key_column
		  FROM pg_attribute a WHERE a.attrelid = orders AND a.attnum = pk_cols[array_lower(pk_cols, 1)];
	END IF;

	SELECT a.attnum, a.atttypid::regtype AS typ INTO att
	  FROM pg_attribute a
	 WHERE a.attrelid = orders AND a.attname = cfg.key_column AND NOT a.attisdropped AND a.attnum > 0;
	IF att.attnum IS NULL THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', cfg.key_column, orders
			USING ERRCODE = 'undefined_column', HINT = 'Check key_column.';
	END IF;
	IF att.typ NOT IN ('bigint'::regtype, 'integer'::regtype, 'uuid'::regtype,
					   'text'::regtype, 'character varying'::regtype) THEN
		RAISE EXCEPTION 'key column "%" of table % has unsupported type %', cfg.key_column, orders, att.typ
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'Supported key types are bigint, integer, uuid, text and varchar.';
	END IF;
	cfg.key_type := att.typ;
	IF NOT EXISTS (SELECT 1 FROM pg_index i
					WHERE i.indrelid = orders AND i.indisunique AND i.indnkeyatts = 1
					  AND i.indkey[0] = att.attnum AND i.indpred IS NULL AND i.indexprs IS NULL) THEN
		RAISE EXCEPTION 'key column "%" of table % is not unique', cfg.key_column, orders
			USING ERRCODE = 'invalid_table_definition',
				  HINT = 'The key column needs a primary key or unique index of its own.';
	END IF;

	/* --- status column and values --- */
	SELECT a.attnum, a.atttypid, t.typtype, t.typcategory, format_type(a.atttypid, a.atttypmod) AS typ
	  INTO att
	  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
	 WHERE a.attrelid = orders AND a.attname = cfg.status_column AND NOT a.attisdropped AND a.attnum > 0;
	IF att.attnum IS NULL THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', cfg.status_column, orders
			USING ERRCODE = 'undefined_column', HINT = 'Check status_column.';
	END IF;
	IF att.typcategory <> 'S' AND att.typtype <> 'e' THEN
		RAISE EXCEPTION 'status column "%" of table % has unsupported type %', cfg.status_column, orders, att.typ
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'The status column must be of a string type or an enum.';
	END IF;
	IF cfg.unpaid_value = '' OR cfg.closed_value = '' OR cfg.cancelled_value = '' THEN
		RAISE EXCEPTION 'status values must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF cfg.unpaid_value IN (cfg.closed_value, cfg.cancelled_value) OR cfg.closed_value = cfg.cancelled_value THEN
		RAISE EXCEPTION 'status values must be distinct'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('unpaid %L, closed %L, cancelled %L.',
								  cfg.unpaid_value, cfg.closed_value, cfg.cancelled_value);
	END IF;
	DECLARE
		v text;
		ok boolean;
	BEGIN
		FOREACH v IN ARRAY ARRAY[cfg.unpaid_value, cfg.closed_value, cfg.cancelled_value] LOOP
			BEGIN
				EXECUTE format('SELECT %L::%s::text = %L', v, att.typ, v) INTO ok;
				IF NOT ok THEN
					/* e.g. silently cut to fit a varchar(n) */
					RAISE EXCEPTION USING ERRCODE = 'invalid_text_representation';
				END IF;
			EXCEPTION WHEN data_exception THEN
				RAISE EXCEPTION 'status value % is not valid for column "%" of type %', quote_literal(v), cfg.status_column, att.typ
					USING ERRCODE = 'invalid_parameter_value';
			END;
		END LOOP;
	END;

	/* --- created-at column --- */
	SELECT a.attnum, a.atttypid::regtype AS typ INTO att
	  FROM pg_attribute a
	 WHERE a.attrelid = orders AND a.attname = cfg.created_column AND NOT a.attisdropped AND a.attnum > 0;
	IF att.attnum IS NULL THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', cfg.created_column, orders
			USING ERRCODE = 'undefined_column', HINT = 'Check created_column.';
	END IF;
	IF att.typ NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype) THEN
		RAISE EXCEPTION 'created-at column "%" of table % has unsupported type %', cfg.created_column, orders, att.typ
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'The created-at column must be timestamptz or timestamp.';
	END IF;

	/* --- category column and the category argument --- */
	IF cfg.category_column IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM pg_attribute a
			 WHERE a.attrelid = orders AND a.attname = cfg.category_column AND NOT a.attisdropped AND a.attnum > 0) THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', cfg.category_column, orders
			USING ERRCODE = 'undefined_column', HINT = 'Check category_column.';
	END IF;
	IF category IS NOT NULL AND cfg.category_column IS NULL THEN
		RAISE EXCEPTION 'table % has no category column', orders
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass category_column to say which column holds the product category.';
	END IF;

	/* --- payload columns and channels --- */
	FOREACH col IN ARRAY cfg.payload_columns LOOP
		IF col IS NULL OR NOT EXISTS (
				SELECT 1 FROM pg_attribute a
				 WHERE a.attrelid = orders AND a.attname = col AND NOT a.attisdropped AND a.attnum > 0) THEN
			RAISE EXCEPTION 'payload column "%" of table % does not exist', col, orders
				USING ERRCODE = 'undefined_column';
		END IF;
	END LOOP;
	IF cardinality(cfg.channels) = 0 OR array_position(cfg.channels, NULL) IS NOT NULL
	   OR EXISTS (SELECT 1 FROM unnest(cfg.channels) c WHERE c = '') THEN
		RAISE EXCEPTION 'channels must be a non-empty array of non-empty names'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('channels is %L.', cfg.channels);
	END IF;

	/* --- store --- */
	IF is_new THEN
		INSERT INTO orderexp.tables (order_table, key_column, key_type, status_column,
									 created_column, category_column, unpaid_value,
									 closed_value, cancelled_value, payload_columns, channels)
		VALUES (cfg.order_table, cfg.key_column, cfg.key_type, cfg.status_column,
				cfg.created_column, cfg.category_column, cfg.unpaid_value,
				cfg.closed_value, cfg.cancelled_value, cfg.payload_columns, cfg.channels);
	ELSE
		UPDATE orderexp.tables t
		   SET key_column = cfg.key_column, key_type = cfg.key_type,
			   status_column = cfg.status_column, created_column = cfg.created_column,
			   category_column = cfg.category_column, unpaid_value = cfg.unpaid_value,
			   closed_value = cfg.closed_value, cancelled_value = cfg.cancelled_value,
			   payload_columns = cfg.payload_columns, channels = cfg.channels,
			   last_error = NULL, last_error_at = NULL
		 WHERE t.order_table = orders;
	END IF;
	SELECT * INTO cfg FROM orderexp.tables t WHERE t.order_table = orders;

	SELECT p.id INTO policy_id FROM orderexp.policies p
	 WHERE p.order_table = orders AND p.category IS NOT DISTINCT FROM set_close_policy.category
	   FOR UPDATE;
	had_policy := FOUND;
	IF had_policy THEN
		UPDATE orderexp.policies p
		   SET close_after = set_close_policy.close_after,
			   remind_before = set_close_policy.remind_before,
			   extend_by = set_close_policy.extend_by,
			   max_extensions = set_close_policy.max_extensions,
			   updated_at = now()
		 WHERE p.id = policy_id;
	ELSE
		INSERT INTO orderexp.policies (order_table, category, close_after, remind_before,
									   extend_by, max_extensions)
		VALUES (orders, category, close_after, remind_before, extend_by, max_extensions)
		RETURNING id INTO policy_id;
	END IF;

	PERFORM orderexp._install_triggers(cfg);

	/*
	 * Track unpaid rows that have no timer yet.  A new category policy takes
	 * over the orders of its category, which were governed by the default
	 * policy until now; a changed policy leaves existing deadlines alone
	 * unless asked to reschedule them.
	 */
	PERFORM orderexp._track_existing(cfg, category, is_new,
									 reschedule OR (category IS NOT NULL AND NOT had_policy));

	RETURN policy_id;
END;
$$;
COMMENT ON FUNCTION orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name, name, name, text, text, text, name[], text[], boolean) IS
	'register an orders table or change its close policy (per table, or per category)';

CREATE FUNCTION orderexp.drop_close_policy(orders regclass, category text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	pid integer;
BEGIN
	cfg := orderexp._config(orders);
	IF category IS NULL THEN
		/* forget the table altogether */
		PERFORM orderexp._drop_triggers(orders);
		DELETE FROM orderexp.timers t WHERE t.order_table = orders;
		DELETE FROM orderexp.tables t WHERE t.order_table = orders;	/* cascades to policies */
		RETURN;
	END IF;

	DELETE FROM orderexp.policies p
	 WHERE p.order_table = orders AND p.category = drop_close_policy.category
	RETURNING p.id INTO pid;
	IF pid IS NULL THEN
		RAISE EXCEPTION 'table % has no close policy for category %', orders, quote_literal(category)
			USING ERRCODE = 'no_data_found';
	END IF;
	/* orders of that category fall back to the table's default policy, if any */
	DELETE FROM orderexp.timers t WHERE t.order_table = orders AND t.policy_id = pid;
	PERFORM orderexp._track_existing(cfg, category, false, false);
END;
$$;
COMMENT ON FUNCTION orderexp.drop_close_policy(regclass, text) IS
	'stop tracking a table (category NULL) or remove the policy of one category';

/* ------------------------------------------------------------------------
 * Order operations
 * ------------------------------------------------------------------------ */

CREATE FUNCTION orderexp.cancel_order(orders regclass, order_key anyelement, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	k	text;
	st	text;
	payload jsonb;
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
	DELETE FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;

	PERFORM orderexp._emit(cfg, 'cancelled', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'reason', reason, 'cancelled_by', current_user::text,
						   'order', payload));
	RETURN true;
END;
$$;
COMMENT ON FUNCTION orderexp.cancel_order(regclass, anyelement, text) IS
	'cancel one unpaid order; false if it was already cancelled';

CREATE FUNCTION orderexp.cancel_orders(orders regclass, order_keys anyarray, reason text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
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
	/* canonical, distinct, sorted: locks are taken in key order */
	EXECUTE format('SELECT coalesce(array_agg(DISTINCT k::%s::text ORDER BY k::%s::text), ''{}'') FROM unnest($1::text[]) k',
				   cfg.key_type, cfg.key_type)
		INTO keys USING order_keys::text[];

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
			 WHERE t.order_table = %7$L::regclass AND t.order_key = c.k),
		e AS (
			INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
			SELECT 'cancelled', %7$L::regclass, c.k, ch,
				   jsonb_build_object('order_table', %8$L, 'order_key', c.k,
									  'reason', $4, 'cancelled_by', current_user::text,
									  'order', c.cols)
			  FROM c CROSS JOIN unnest($5::text[]) ch)
		SELECT count(*) FROM c$q$,
		orders, cfg.status_column,
		orderexp._status_type(cfg),
		cfg.key_column, cfg.key_type, orderexp._payload_expr(cfg),
		orders::oid::text, orders::text)
		INTO n USING keys, cfg.unpaid_value, cfg.cancelled_value, reason, cfg.channels;

	IF n > 0 THEN
		PERFORM pg_notify('orderexp', json_build_object('kind', 'cancelled', 'table', orders::text,
														'count', n)::text);
	END IF;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION orderexp.cancel_orders(regclass, anyarray, text) IS
	'cancel the unpaid orders among the given keys; returns how many were cancelled';

CREATE FUNCTION orderexp.extend_order(orders regclass, order_key anyelement, "by" interval DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
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

	PERFORM orderexp._emit(cfg, 'extended', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'close_at', new_close, 'previous_close_at', tm.close_at,
						   'extended_by', orderexp._iso_interval(step), 'extensions', tm.extensions + 1,
						   'extensions_left', greatest(pol.max_extensions - tm.token_extensions, 0),
						   'extended_by_role', current_user::text, 'via', 'operator',
						   'order', orderexp._order_cols(cfg, k)));
	RETURN new_close;
END;
$$;
COMMENT ON FUNCTION orderexp.extend_order(regclass, anyelement, interval) IS
	'move the deadline of an unpaid order (NULL: by the policy''s extend_by); returns the new deadline';

/* ------------------------------------------------------------------------
 * Extension tokens
 *
 * extension_token() and extend_order_by_token() are C gates (token.c) that
 * check the caller's UPDATE privilege on the orders table and then call the
 * functions below as the extension owner, who alone can read the secret.
 * ------------------------------------------------------------------------ */

/* why the customer cannot extend this order now, or NULL if they can */
CREATE FUNCTION orderexp._token_refusal(cfg orderexp.tables, st text,
										tm orderexp.timers, pol orderexp.policies)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF st IS DISTINCT FROM cfg.unpaid_value THEN
		RETURN ARRAY['order is not unpaid',
					 format('Its status is %s.', coalesce(quote_literal(st), 'NULL'))];
	END IF;
	IF tm.order_key IS NULL THEN
		RETURN ARRAY['order is not tracked', 'No close policy applies to its category.'];
	END IF;
	IF tm.close_at <= now() THEN
		RETURN ARRAY['the deadline of the order has passed',
					 format('It was %s.', tm.close_at)];
	END IF;
	IF pol.extend_by IS NULL OR pol.max_extensions = 0 THEN
		RETURN ARRAY['the close policy of the order allows no customer extensions',
					 format('Policy %s has max_extensions %s and extend_by %s.', pol.id,
							pol.max_extensions, coalesce(pol.extend_by::text, 'NULL'))];
	END IF;
	IF tm.token_extensions >= pol.max_extensions THEN
		RETURN ARRAY['the order has no extensions left',
					 format('The customer has taken all %s extensions the policy allows.',
							pol.max_extensions)];
	END IF;
	RETURN NULL;
END;
$$;

CREATE FUNCTION orderexp._extension_token(orders regclass, order_key text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	k	text;
	st	text;
	found_row boolean;
	tm	orderexp.timers;
	pol	orderexp.policies;
	refusal text[];
BEGIN
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key);
	EXECUTE format('SELECT true, o.%I::text FROM %s o WHERE o.%I = $1::%s',
				   cfg.status_column, cfg.order_table, cfg.key_column, cfg.key_type)
		INTO found_row, st USING k;
	IF found_row IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, orders
			USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	SELECT * INTO pol FROM orderexp.policies p WHERE p.id = tm.policy_id;
	refusal := orderexp._token_refusal(cfg, st, tm, pol);
	IF refusal IS NOT NULL THEN
		RAISE EXCEPTION 'cannot make an extension token for order % in table %: %', k, orders, refusal[1]
			USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = refusal[2];
	END IF;
	RETURN orderexp._token_make(orders, k, tm.close_at, tm.extensions, tm.generation);
END;
$$;

CREATE FUNCTION orderexp._extend_order_by_token(token text, caller name)
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

	/* timer first, then the order row: the sweep's lock order */
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

/* a new secret: every token made so far stops working */
CREATE FUNCTION orderexp.rotate_secret()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO orderexp.secret (secret) VALUES (orderexp._new_secret());
END;
$$;
COMMENT ON FUNCTION orderexp.rotate_secret() IS
	'replace the token secret; tokens made under the old one stop working';

/* ------------------------------------------------------------------------
 * Views
 * ------------------------------------------------------------------------ */

/* tracked orders that are still unpaid in their table, with their deadlines */
CREATE FUNCTION orderexp.pending_orders()
RETURNS TABLE (order_table regclass, order_key text, category text, policy_id integer,
			   close_at timestamptz, remind_at timestamptz, extensions integer,
			   time_left interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
BEGIN
	FOR cfg IN SELECT t.* FROM orderexp.tables t
				 JOIN pg_class c ON c.oid = t.order_table
				ORDER BY t.order_table::text
	LOOP
	  BEGIN
		RETURN QUERY EXECUTE format($q$
			SELECT t.order_table, t.order_key, %1$s, t.policy_id, t.close_at, t.remind_at,
				   t.extensions, t.close_at - now()
			  FROM orderexp.timers t
			  JOIN %2$s o ON o.%3$I = t.order_key::%4$s
			 WHERE t.order_table = %5$L::regclass AND o.%6$I::text = $1
			 ORDER BY t.close_at$q$,
			CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
				 ELSE format('o.%I::text', cfg.category_column) END,
			cfg.order_table, cfg.key_column, cfg.key_type,
			cfg.order_table::oid::text, cfg.status_column)
			USING cfg.unpaid_value;
	  EXCEPTION WHEN OTHERS THEN
		/* one table with a broken mapping does not hide the others */
		RAISE WARNING 'orderexp.pending skips table %: %', cfg.order_table, SQLERRM
			USING HINT = 'Register the table again with orderexp.set_close_policy().';
	  END;
	END LOOP;
END;
$$;

CREATE VIEW orderexp.pending AS
	SELECT * FROM orderexp.pending_orders();
COMMENT ON VIEW orderexp.pending IS
	'unpaid tracked orders with their deadlines, soonest first per table';

/* registered tables and their policies, one row per policy */
CREATE VIEW orderexp.policy_config AS
	SELECT p.id AS policy_id, t.order_table, p.category, p.close_after, p.remind_before,
		   p.extend_by, p.max_extensions, t.key_column, t.key_type, t.status_column,
		   t.created_column, t.category_column, t.unpaid_value, t.closed_value,
		   t.cancelled_value, t.payload_columns, t.channels, p.updated_at,
		   t.last_error, t.last_error_at
	  FROM orderexp.tables t JOIN orderexp.policies p USING (order_table);
COMMENT ON VIEW orderexp.policy_config IS
	'every close policy with the column mapping of its table';

/* ------------------------------------------------------------------------
 * Clean-up when a registered table is dropped
 * ------------------------------------------------------------------------ */

/*
 * A dropped table takes its registration, policies and timers with it.  Runs
 * as the extension owner: whoever may drop a table may also make orderexp
 * forget it, and needs no privileges on orderexp's tables for that.
 */
CREATE FUNCTION orderexp._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped oid[];
BEGIN
	SELECT array_agg(d.objid) INTO dropped
	  FROM pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
	   AND d.object_type IN ('table', 'partitioned table');
	IF dropped IS NULL THEN
		RETURN;
	END IF;
	DELETE FROM orderexp.timers t WHERE t.order_table = ANY (dropped::regclass[]);
	DELETE FROM orderexp.tables t WHERE t.order_table = ANY (dropped::regclass[]);
END;
$$;

CREATE EVENT TRIGGER orderexp_sql_drop ON sql_drop
	EXECUTE FUNCTION orderexp._on_sql_drop();

/* ------------------------------------------------------------------------
 * Dump and privileges
 * ------------------------------------------------------------------------ */

SELECT pg_catalog.pg_extension_config_dump('orderexp.tables', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.policies', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.policies_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.timers', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.timer_generation', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.secret', '');

INSERT INTO orderexp.secret (secret) VALUES (orderexp._new_secret());

/*
 * The tables are the extension owner's.  The functions run with the rights
 * of their caller, so EXECUTE on them grants nothing by itself: whoever calls
 * them needs the privileges on orderexp's tables and on the orders table that
 * the same work would need directly.  Only the trigger functions, which have
 * no use outside their triggers, are kept from PUBLIC.
 */
GRANT USAGE ON SCHEMA orderexp TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA orderexp FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA orderexp FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.timer_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._truncate_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._secret_single_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._policies_changed() FROM PUBLIC;
/* these read the secret or act for a customer: the extension owner only */
REVOKE ALL ON FUNCTION orderexp._token_make(regclass, text, timestamptz, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._token_open(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._extension_token(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._extend_order_by_token(text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.rotate_secret() FROM PUBLIC;
