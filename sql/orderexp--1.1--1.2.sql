/*
 * orderexp--1.1--1.2.sql
 *		Cheaper closes: fewer index entries and no trigger work per closed
 *		order (bench/results.md has the figures before and after).
 *
 *	1. Every audit row names the events its change wrote (audit.event_ids),
 *	   and history() finds them there, by the outbox's primary key.  The
 *	   outbox no longer needs an index by order (outbox_order), which every
 *	   event of every close paid an index entry for.
 *	2. The sweep writes the outcome rows of the orders it closes itself, one
 *	   INSERT per batch, and the outcome trigger leaves those rows alone
 *	   (outcome.c, orderexp_sweep_closing in sweep.c).  outcomes keeps
 *	   exactly the rows it had: one per order that left the unpaid state.
 *	3. A batch joins its closed orders to their timers once, not once per
 *	   table it writes.
 *	4. The row triggers on registered tables lose their WHEN clauses: the
 *	   trigger functions test the status themselves, from two (timer) or one
 *	   (outcome) more arguments.  PostgreSQL parses a trigger's WHEN clause
 *	   anew for every statement; on the application's one-row INSERT and
 *	   payment UPDATE that cost more than orderexp's work itself.  The
 *	   triggers of every registered table are made again below.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION orderexp UPDATE TO '1.2'" to load this file. \quit

/* --- 1. audit rows name their events --------------------------------------- */

ALTER TABLE orderexp.audit ADD COLUMN event_ids bigint[];
COMMENT ON COLUMN orderexp.audit.event_ids IS
	'the outbox rows the change wrote, one per channel (NULL: none); they are pruned once delivered and old';

/* link the events written before 1.2, while outbox_order can still find them */
UPDATE orderexp.audit a
   SET event_ids = (SELECT array_agg(o.id ORDER BY o.id)
					  FROM orderexp.outbox o
					 WHERE o.order_table = a.order_table AND o.order_key = a.order_key
					   AND o.kind = a.action AND o.created_at = a.at)
 WHERE EXISTS (SELECT 1 FROM orderexp.outbox o
				WHERE o.order_table = a.order_table AND o.order_key = a.order_key
				  AND o.kind = a.action AND o.created_at = a.at);

DROP INDEX orderexp.outbox_order;

/*
 * One event per channel of the table, linked to the audit row of the same
 * change (written just before, in this transaction), and a NOTIFY.  The
 * callers (cancel, extend, token extension, reopen) are unchanged.
 */
CREATE OR REPLACE FUNCTION orderexp._emit(cfg orderexp.tables, kind text, k text, payload jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ids bigint[];
BEGIN
	WITH e AS (
		INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
		SELECT kind, cfg.order_table, k, ch, payload
		  FROM unnest(cfg.channels) AS ch
		RETURNING id)
	SELECT array_agg(e.id ORDER BY e.id) INTO ids FROM e;

	IF ids IS NOT NULL THEN
		UPDATE orderexp.audit a
		   SET event_ids = ids
		 WHERE a.order_table = cfg.order_table AND a.order_key = k
		   AND a.id = (SELECT max(b.id) FROM orderexp.audit b
						WHERE b.order_table = cfg.order_table AND b.order_key = k
						  AND b.action = kind AND b.at = now() AND b.event_ids IS NULL);
	END IF;
	PERFORM pg_notify('orderexp', json_build_object('kind', kind, 'table', cfg.order_table::text,
													'count', 1)::text);
END;
$$;

CREATE OR REPLACE FUNCTION orderexp._history_json(orders regclass, order_key anyelement)
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
				   a.variant, a.deadline, a.previous_deadline, a.event_ids,
				   ev.delivered
			  FROM orderexp.audit a
			  LEFT JOIN LATERAL (
					SELECT bool_and(o.delivered_at IS NOT NULL) AS delivered
					  FROM orderexp.outbox o
					 WHERE o.id = ANY (a.event_ids)) ev ON true
			 WHERE a.order_table = orders AND a.order_key = k) h;
	RETURN result;
END;
$$;

/* --- 2. and 3. the close batch ------------------------------------------- */

/*
 * As in 1.1, except after the guarded update: "done" joins the closed rows
 * to their timers once; the events return their ids for the audit rows; the
 * outcome rows are written here (the outcome trigger skips the rows of this
 * statement, see outcome.c).
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
		   t.order_created, t.reminded_for, t.extensions, t.token_extensions, t.reopened
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
	RETURNING o.%2$I::text AS order_key, %8$s AS cols, %9$s AS category,
			  o.%14$I::timestamptz AS created_at),
done AS MATERIALIZED (
	SELECT c.order_key, c.cols, c.category, c.created_at, d.close_at, d.policy_id,
		   d.policy_version, d.variant, d.reminded_for, d.extensions, d.token_extensions,
		   d.reopened
	  FROM closed c
	  JOIN due d ON d.order_key = c.order_key),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'closed', $1, x.order_key, ch.channel,
		   orderexp._closed_payload(%10$L, x.order_key, x.close_at, x.policy_id,
									x.category, x.cols)
	  FROM done x
	 CROSS JOIN unnest(%11$L::text[]) AS ch(channel)
	RETURNING id, order_key),
audit AS (
	INSERT INTO orderexp.audit (order_table, order_key, action, via, policy_id,
								policy_version, variant, deadline, event_ids)
	SELECT $1, x.order_key, 'closed', 'timeout', x.policy_id, x.policy_version, x.variant,
		   x.close_at, %15$s
	  FROM done x%16$s),
outcome AS (
	INSERT INTO orderexp.outcomes (order_table, order_key, outcome, status, policy_id,
								   policy_version, variant, created_at, close_at, decided_at,
								   reminded, extensions, token_extensions, reopened)
	SELECT $1, x.order_key, 'closed', %7$L, x.policy_id, x.policy_version, x.variant,
		   x.created_at, x.close_at, now(), x.reminded_for IS NOT NULL, x.extensions,
		   x.token_extensions, x.reopened
	  FROM done x)
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
		orderexp._created_range_sql(cfg),
		cfg.created_column,
		/* the events of each close, for its audit row: with one channel, one */
		CASE cardinality(cfg.channels) WHEN 0 THEN 'NULL::bigint[]'
									   WHEN 1 THEN 'ARRAY[e.id]'
									   ELSE 'e.ids' END,
		CASE cardinality(cfg.channels) WHEN 0 THEN ''
			 WHEN 1 THEN E'\n\t  JOIN events e ON e.order_key = x.order_key'
			 ELSE E'\n\t  LEFT JOIN (SELECT e.order_key, array_agg(e.id) AS ids	/* in insertion order */\n\t\t\t  FROM events e GROUP BY e.order_key) e ON e.order_key = x.order_key' END);
END;
$$;

/* --- 4. triggers without WHEN clauses ------------------------------------ */

/*
 * As in 1.1 (30-afterclose.sql), except that the timer and the outcome
 * triggers have no WHEN clause and take the status column and the unpaid
 * value as arguments: orderexp_timer_trigger and orderexp_outcome_trigger
 * test the status in C.  orderexp_timer_moved keeps its WHEN clause: it
 * fires only when created-at changes, which is rare, and the clause tests
 * that too.
 */
CREATE OR REPLACE FUNCTION orderexp._install_triggers(cfg orderexp.tables)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM orderexp._drop_triggers(cfg.order_table);

	/* a new unpaid order starts its timer */
	EXECUTE format('CREATE TRIGGER orderexp_timer_insert AFTER INSERT ON %s '
				   'FOR EACH ROW '
				   'EXECUTE FUNCTION orderexp.timer_trigger(%L, %L, %L, %L, %L, %L)',
				   cfg.order_table,
				   cfg.key_column, cfg.created_column, coalesce(cfg.category_column, ''),
				   cfg.order_table::oid, cfg.status_column, cfg.unpaid_value);

	/* an order set back to unpaid outside orderexp is tracked again */
	EXECUTE format('CREATE TRIGGER orderexp_timer_unpaid AFTER UPDATE OF %I ON %s '
				   'FOR EACH ROW '
				   'EXECUTE FUNCTION orderexp.timer_trigger(%L, %L, %L, %L, %L, %L)',
				   cfg.status_column, cfg.order_table,
				   cfg.key_column, cfg.created_column, coalesce(cfg.category_column, ''),
				   cfg.order_table::oid, cfg.status_column, cfg.unpaid_value);

	/* partitioned by created-at: an unpaid order whose created-at changes */
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
				   'FOR EACH ROW '
				   'EXECUTE FUNCTION orderexp.outcome_trigger(%L, %L, %L, %L, %L, %L, %L)',
				   cfg.status_column, cfg.order_table,
				   cfg.key_column, cfg.created_column, cfg.status_column,
				   cfg.closed_value, cfg.cancelled_value, cfg.order_table::oid,
				   cfg.unpaid_value);

	/* TRUNCATE removes every order at once; so do their timers */
	EXECUTE format('CREATE TRIGGER orderexp_timer_truncate AFTER TRUNCATE ON %s '
				   'FOR EACH STATEMENT EXECUTE FUNCTION orderexp._truncate_trigger()',
				   cfg.order_table);
END;
$$;

SELECT orderexp._install_triggers(t) FROM orderexp.tables t;
