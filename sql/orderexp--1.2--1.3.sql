/*
 * orderexp--1.2--1.3.sql
 *		A table owner's code runs as the table owner: the sweep closes and
 *		reminds in three statements, the middle one of which, the only one
 *		that touches the orders table, runs as the table's owner under
 *		SECURITY_RESTRICTED_OPERATION (src/sweep.c).
 *
 *	1. Up to 1.2 a batch was one statement, run as the extension owner (a
 *	   superuser): the orders table's triggers, constraints, generated
 *	   columns, index expressions and the casts of its payload, category and
 *	   key columns ran with superuser rights whenever the worker or
 *	   run_due() closed or reminded, and a table owner could make itself
 *	   superuser with one trigger.  Now a batch is
 *	     take     (extension owner)  lock the due timers, SKIP LOCKED;
 *	     orders   (the table's owner, security-restricted)  lock their rows,
 *	              SKIP LOCKED, close the unpaid ones with the guarded
 *	              update (or, for reminders, read them), and hand back the
 *	              keys, payloads, categories and created-ats as arrays;
 *	     record   (extension owner)  drop or clear the timers, write the
 *	              events, the audit rows and the outcomes.
 *	   All three run in the caller's transaction, in one subtransaction per
 *	   table, so a batch still commits or fails as a whole.  The orders
 *	   statement names nothing of orderexp's: the table owner needs no
 *	   privilege on orderexp's schema.
 *	2. run_due() is no longer open to PUBLIC: orderexp_admin may call it
 *	   (and a superuser, such as pg_cron's job owner by default).
 *	3. The last SQL functions without a pinned search_path (_normal_p,
 *	   _wilson, _iso_interval) get one.
 *
 * The functions of 1.2 that generated the one-statement batches
 * (_sweep_sql, _remind_sql, _lock_rows_sql, _created_range_sql) go; a
 * library of 1.3 still runs them in a database not yet updated.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION orderexp UPDATE TO '1.3'" to load this file. \quit

/* --- 1. batches in three statements ---------------------------------------- */

DROP FUNCTION orderexp._sweep_sql(orderexp.tables);
DROP FUNCTION orderexp._remind_sql(orderexp.tables);
DROP FUNCTION orderexp._lock_rows_sql(orderexp.tables, text, text, text);
DROP FUNCTION orderexp._created_range_sql(orderexp.tables);

/*
 * The statement that takes a batch of due timers, as the extension owner.
 * $1 the table, $2 the batch size, ($3, $4) the sweep's watermark (deadline
 * or reminder time, key) of the last timer taken.  Returns how many timers
 * it took and locked, their keys and tuple ids, the range of their
 * created-at (for partition pruning in the orders statement), and the new
 * watermark.
 * "at" is close_at for the close batch and remind_at for the reminders.
 */
CREATE FUNCTION orderexp._take_sql(at text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
WITH due AS MATERIALIZED (
	SELECT t.ctid AS tid, t.order_key, t.%1$I AS at, t.order_created
	  FROM orderexp.timers t
	 WHERE t.order_table = $1 AND t.%1$I <= now()
	   AND (t.%1$I, t.order_key) > ($3, $4)
	 ORDER BY t.%1$I, t.order_key
	 LIMIT $2
	   FOR UPDATE SKIP LOCKED)
SELECT (SELECT count(*) FROM due), ARRAY(SELECT d.order_key FROM due d),
	   ARRAY(SELECT d.tid FROM due d),
	   (SELECT min(d.order_created) FROM due d), (SELECT max(d.order_created) FROM due d),
	   last.at, last.order_key
  FROM (SELECT NULL) AS one
  LEFT JOIN (SELECT d.at, d.order_key FROM due d
			  ORDER BY d.at DESC, d.order_key DESC LIMIT 1) AS last ON true$q$, at)
$$;

/*
 * The statement on the orders table, run as its owner: $1 the keys the take
 * statement locked, ($2, $3) the range of their created-at.  "mine" are the
 * rows it could lock (SKIP LOCKED: an application holds the others), "busy"
 * the keys whose row exists but was locked: looked up in the whole table
 * (an order whose created-at moved is not taken for gone), one correlated
 * probe per key that mine lacks, so that a batch whose rows were all locked
 * reads no other partition.  For the close batch (lock
 * 'UPDATE') the unpaid rows of mine are closed with the guarded update and
 * returned; for reminders (lock 'SHARE') mine is returned as it is.  Every
 * result column is an array: busy keys, then keys, unpaid, payloads,
 * categories and created-ats of the rows returned, aligned.  Nothing of
 * orderexp's is named: the owner needs no privilege on it.
 */
CREATE FUNCTION orderexp._orders_sql(cfg orderexp.tables, lock text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status_type text := orderexp._status_type(cfg);
	range text := CASE WHEN cfg.partition_column IS NULL THEN ''
					   ELSE format(' AND o.%I BETWEEN %s AND %s', cfg.partition_column,
								   orderexp._created_utc(cfg, '$2'),
								   orderexp._created_utc(cfg, '$3')) END;
	category text := CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
						  ELSE format('o.%I::text', cfg.category_column) END;
	sql text;
BEGIN
	sql := format($q$
WITH mine AS MATERIALIZED (
	SELECT o.%2$I::text AS order_key, (o.%3$I IS NOT DISTINCT FROM %4$L::%5$s) AS unpaid%8$s
	  FROM %1$s o
	 WHERE o.%2$I = ANY (ARRAY(SELECT k::%6$s FROM unnest($1::text[]) AS k))%7$s
	   FOR %9$s OF o SKIP LOCKED),
missing AS MATERIALIZED (
	SELECT k AS order_key
	  FROM unnest($1::text[]) AS k
	 WHERE NOT EXISTS (SELECT 1 FROM mine m WHERE m.order_key = k)),
busy AS MATERIALIZED (
	SELECT x.order_key
	  FROM missing x
	 WHERE (SELECT true FROM %1$s o WHERE o.%2$I = x.order_key::%6$s LIMIT 1)),$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, range,
		CASE lock WHEN 'SHARE'
			 THEN format(', %s AS cols, %s AS category', orderexp._payload_expr(cfg), category)
			 ELSE '' END,
		CASE lock WHEN 'UPDATE' THEN 'UPDATE' WHEN 'SHARE' THEN 'SHARE' END);

	IF lock = 'SHARE' THEN
		RETURN sql || $q$
rows AS (
	SELECT m.order_key, m.unpaid, m.cols, m.category, NULL::timestamptz AS created_at
	  FROM mine m)$q$ || orderexp._orders_result_sql();
	END IF;

	RETURN sql || format($q$
rows AS (
	UPDATE %1$s o SET %3$I = %7$L::%5$s
	 WHERE o.%2$I = ANY (ARRAY(SELECT m.order_key::%6$s FROM mine m WHERE m.unpaid))
	   AND o.%3$I = %4$L::%5$s%8$s
	RETURNING o.%2$I::text AS order_key, true AS unpaid, %9$s AS cols, %10$s AS category,
			  o.%11$I::timestamptz AS created_at)$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, cfg.closed_value, range,
		orderexp._payload_expr(cfg), category, cfg.created_column)
		|| orderexp._orders_result_sql();
END;
$$;

/* the end of the orders statement: its rows as aligned arrays */
CREATE FUNCTION orderexp._orders_result_sql()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT $q$
SELECT ARRAY(SELECT b.order_key FROM busy b), r.keys, r.unpaid, r.cols, r.categories,
	   r.created
  FROM (SELECT array_agg(x.order_key) AS keys, array_agg(x.unpaid) AS unpaid,
			   array_agg(x.cols) AS cols, array_agg(x.category) AS categories,
			   array_agg(x.created_at) AS created
		  FROM rows x) AS r$q$
$$;

/*
 * The statement that records a close batch, as the extension owner: $1 the
 * table, $2 the tuple ids of the timers taken, $3 the busy keys, $4 to $8
 * the closed rows as the orders statement returned them.  Drops the timers
 * of every taken order that was not busy (closed, paid or gone), and writes
 * the closed orders' events, audit rows and outcomes as the one-statement
 * batch of 1.2 did.  The take statement locked the timers in this
 * transaction, so nobody else can have changed them: they are read again
 * by tuple id, as 1.2's batch deleted them.
 */
CREATE FUNCTION orderexp._record_close_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
WITH due AS MATERIALIZED (
	SELECT t.ctid AS tid, t.order_key, t.close_at, t.policy_id, t.policy_version, t.variant,
		   t.reminded_for, t.extensions, t.token_extensions, t.reopened
	  FROM orderexp.timers t
	 WHERE t.ctid = ANY ($2) AND t.order_table = $1),
gone AS (
	DELETE FROM orderexp.timers t
	 WHERE t.ctid = ANY (ARRAY(SELECT d.tid FROM due d
								WHERE d.order_key <> ALL (coalesce($3, '{}'))))),
done AS MATERIALIZED (
	SELECT c.order_key, c.cols, c.category, c.created_at, d.close_at, d.policy_id,
		   d.policy_version, d.variant, d.reminded_for, d.extensions, d.token_extensions,
		   d.reopened
	  FROM unnest($4, $6, $7, $8) AS c(order_key, cols, category, created_at)
	  JOIN due d ON d.order_key = c.order_key),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'closed', $1, x.order_key, ch.channel,
		   orderexp._closed_payload(%1$L, x.order_key, x.close_at, x.policy_id,
									x.category, x.cols)
	  FROM done x
	 CROSS JOIN unnest(%2$L::text[]) AS ch(channel)
	RETURNING id, order_key),
audit AS (
	INSERT INTO orderexp.audit (order_table, order_key, action, via, policy_id,
								policy_version, variant, deadline, event_ids)
	SELECT $1, x.order_key, 'closed', 'timeout', x.policy_id, x.policy_version, x.variant,
		   x.close_at, %4$s
	  FROM done x%5$s),
outcome AS (
	INSERT INTO orderexp.outcomes (order_table, order_key, outcome, status, policy_id,
								   policy_version, variant, created_at, close_at, decided_at,
								   reminded, extensions, token_extensions, reopened)
	SELECT $1, x.order_key, 'closed', %3$L, x.policy_id, x.policy_version, x.variant,
		   x.created_at, x.close_at, now(), x.reminded_for IS NOT NULL, x.extensions,
		   x.token_extensions, x.reopened
	  FROM done x)
SELECT count(*) FROM done$q$,
		cfg.order_table::text, cfg.channels, cfg.closed_value,
		/* the events of each close, for its audit row: with one channel, one */
		CASE cardinality(cfg.channels) WHEN 0 THEN 'NULL::bigint[]'
									   WHEN 1 THEN 'ARRAY[e.id]'
									   ELSE 'e.ids' END,
		CASE cardinality(cfg.channels) WHEN 0 THEN ''
			 WHEN 1 THEN E'\n\t  JOIN events e ON e.order_key = x.order_key'
			 ELSE E'\n\t  LEFT JOIN (SELECT e.order_key, array_agg(e.id) AS ids	/* in insertion order */\n\t\t\t  FROM events e GROUP BY e.order_key) e ON e.order_key = x.order_key' END)
$$;

/*
 * The statement that records a reminder batch, as the extension owner: the
 * arguments as for _record_close_sql (timers by tuple id), the rows being
 * the orders statement's "mine".  Clears the reminder of every taken order that was not busy, and
 * writes a reminder (with its extension token) per channel for each order
 * still unpaid before its deadline, as the batch of 1.2 did.
 */
CREATE FUNCTION orderexp._record_remind_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
WITH due AS MATERIALIZED (
	SELECT t.ctid AS tid, t.order_key, t.close_at, t.remind_at, t.policy_id, t.extensions,
		   t.token_extensions, t.generation
	  FROM orderexp.timers t
	 WHERE t.ctid = ANY ($2) AND t.order_table = $1),
done AS (
	UPDATE orderexp.timers t SET remind_at = NULL, reminded_for = t.close_at
	 WHERE t.ctid = ANY (ARRAY(SELECT d.tid FROM due d
								WHERE d.order_key <> ALL (coalesce($3, '{}'))))),
reminded AS MATERIALIZED (
	SELECT d.*, m.cols, m.category, p.extend_by,
		   greatest(p.max_extensions - d.token_extensions, 0) AS extensions_left
	  FROM due d
	  JOIN unnest($4, $5, $6, $7) AS m(order_key, unpaid, cols, category)
		ON m.order_key = d.order_key
	  JOIN orderexp.policies p ON p.id = d.policy_id
	 WHERE m.unpaid AND d.close_at > now()),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'reminder', $1, r.order_key, ch.channel,
		   jsonb_build_object('order_table', %1$L, 'order_key', r.order_key,
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
	 CROSS JOIN unnest(%2$L::text[]) AS ch(channel))
SELECT count(*) FROM reminded$q$,
		cfg.order_table::text, cfg.channels)
$$;

/*
 * The three statements of a table's close batch and of its reminder batch,
 * in the order the sweep runs them (src/sweep.c).
 */
CREATE FUNCTION orderexp._close_batch_sql(cfg orderexp.tables)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY[orderexp._take_sql('close_at'),
				 orderexp._orders_sql(cfg, 'UPDATE'),
				 orderexp._record_close_sql(cfg)]
$$;

CREATE FUNCTION orderexp._remind_batch_sql(cfg orderexp.tables)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY[orderexp._take_sql('remind_at'),
				 orderexp._orders_sql(cfg, 'SHARE'),
				 orderexp._record_remind_sql(cfg)]
$$;

REVOKE ALL ON FUNCTION orderexp._take_sql(text), orderexp._orders_sql(orderexp.tables, text),
	orderexp._orders_result_sql(), orderexp._record_close_sql(orderexp.tables),
	orderexp._record_remind_sql(orderexp.tables), orderexp._close_batch_sql(orderexp.tables),
	orderexp._remind_batch_sql(orderexp.tables) FROM PUBLIC;

/* --- 2. run_due() for orderexp_admin ------------------------------------- */

REVOKE ALL ON FUNCTION orderexp.run_due(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orderexp.run_due(integer) TO orderexp_admin;

/* --- 3. every SQL function pins its search_path ---------------------------- */

/*
 * The statistics' arithmetic and the ISO interval were SQL functions
 * without SET search_path, inlined under the caller's path: a role that
 * could create in a schema on a superuser's path (public, before
 * PostgreSQL 15) could define public./(double precision, bigint), an exact
 * match for the Wilson interval's division, and have a superuser who reads
 * experiment_stats run it.  Pinned now (which also keeps them from being
 * inlined; they are called once per row of a small view).
 */
ALTER FUNCTION orderexp._normal_p(double precision) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION orderexp._wilson(bigint, bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION orderexp._iso_interval(interval) SET search_path = pg_catalog, pg_temp;
