/* ------------------------------------------------------------------------
 * Partitioned order tables
 *
 * A table partitioned by range (or list) of its created-at column, as
 * pg_partman makes it, has a composite primary key such as (id,
 * created_at): set_close_policy(..., key_column => 'id') names the column
 * that identifies an order, which must lead an index (10-reliability.sql).
 *
 * Each timer keeps its order's created-at (timers.order_created), and every
 * statement that looks up a batch of orders narrows the lookup to the
 * created-at range of the batch (_created_range_sql), so that run-time
 * partition pruning leaves only the partitions holding the batch: a batch
 * of orders due together was made together and touches one partition or
 * two, instead of an index probe per order in every partition.  Functions
 * on one order look it up with its created-at (_lock_order).
 *
 * Partitions made or attached later need nothing: row triggers of a
 * partitioned table are cloned onto its new partitions.  A detached or
 * dropped partition takes its orders out of the table; their timers find no
 * row at their deadlines and go without an event, like those of deleted
 * orders.
 * ------------------------------------------------------------------------ */

ALTER TABLE orderexp.timers ADD COLUMN order_created timestamptz;
COMMENT ON COLUMN orderexp.timers.order_created IS
	'the order''s created-at as stored (a timestamp without time zone as if UTC), to find its partition';

ALTER TABLE orderexp.tables ADD COLUMN partition_column name;
COMMENT ON COLUMN orderexp.tables.partition_column IS
	'the created-at column when the table is partitioned by it (lookups are narrowed to a created-at range), else NULL';

/*
 * The created-at column, if the table is partitioned by it alone (range or
 * list, not an expression) and it is NOT NULL: then every order's partition
 * follows from its created-at.  NULL otherwise.
 */
CREATE FUNCTION orderexp._partition_column(orders regclass, created_column name)
RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.attname
	  FROM pg_partitioned_table pt
	  JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
	 WHERE pt.partrelid = orders AND pt.partnatts = 1 AND pt.partattrs[0] <> 0
	   AND pt.partstrat IN ('r', 'l')
	   AND a.attname = created_column AND a.attnotnull AND NOT a.attisdropped
$$;

/*
 * expr converted between the created-at column's type and timestamptz: a
 * timestamp (without time zone) goes through UTC both ways, so that the
 * value read back is the value stored, whatever the session's TimeZone.
 */
CREATE FUNCTION orderexp._created_utc(cfg orderexp.tables, expr text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN a.atttypid = 'timestamp'::regtype
				THEN format('(%s AT TIME ZONE ''UTC'')', expr)
				ELSE expr END
	  FROM pg_attribute a
	 WHERE a.attrelid = cfg.order_table AND a.attname = cfg.created_column
$$;

/*
 * Timers made before 1.1 have no created-at: fill it in from their orders
 * when the table becomes partitioned by created-at in orderexp's eyes (on
 * registration, or when its created-at column becomes NOT NULL), so that
 * every lookup of the table can rely on it.  Nothing to do otherwise.
 */
CREATE FUNCTION orderexp._fill_order_created(cfg orderexp.tables)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF cfg.partition_column IS NULL THEN
		RETURN 0;
	END IF;
	EXECUTE format('UPDATE orderexp.timers t SET order_created = %s FROM %s o '
				   'WHERE t.order_table = $1 AND t.order_created IS NULL AND o.%I = t.order_key::%s',
				   orderexp._created_utc(cfg, format('o.%I', cfg.created_column)),
				   cfg.order_table, cfg.key_column, cfg.key_type)
		USING cfg.order_table;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

/*
 * A condition on the orders table (alias o) that narrows a batch's lookup
 * to the created-at range of the timers in CTE "due": '' unless the table
 * is partitioned by its created-at.  The bounds are initplans, known when
 * the lookup starts, so the partitions outside them are pruned then.
 */
CREATE FUNCTION orderexp._created_range_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN cfg.partition_column IS NULL THEN ''
				ELSE format(' AND o.%I BETWEEN %s AND %s', cfg.partition_column,
							orderexp._created_utc(cfg, '(SELECT min(d.order_created) FROM due d)'),
							orderexp._created_utc(cfg, '(SELECT max(d.order_created) FROM due d)'))
		   END
$$;

/*
 * The CTEs "mine" (due orders' rows, locked, skipping those an application
 * holds) and "busy" (due orders whose row exists but is locked), as in 1.0,
 * with mine narrowed to the batch's created-at range.  busy looks for the
 * key in the whole table: an order whose row was not found in the range
 * (its created-at changed and its timer has not caught up) stays busy, is
 * tried again, and is never taken for gone.
 */
CREATE OR REPLACE FUNCTION orderexp._lock_rows_sql(cfg orderexp.tables, status_type text,
												   extra_columns text, lock text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$mine AS MATERIALIZED (
	SELECT o.%2$I::text AS order_key, (o.%3$I IS NOT DISTINCT FROM %4$L::%5$s) AS unpaid%7$s
	  FROM %1$s o
	 WHERE o.%2$I = ANY (ARRAY(SELECT d.order_key::%6$s FROM due d))%9$s
	   FOR %8$s OF o SKIP LOCKED),
busy AS MATERIALIZED (
	SELECT d.order_key
	  FROM due d
	 WHERE NOT EXISTS (SELECT 1 FROM mine m WHERE m.order_key = d.order_key)
	   AND EXISTS (SELECT 1 FROM %1$s o WHERE o.%2$I = d.order_key::%6$s)),$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, extra_columns,
		CASE lock WHEN 'UPDATE' THEN 'UPDATE' WHEN 'SHARE' THEN 'SHARE' END,
		orderexp._created_range_sql(cfg))
$$;

/* the reminder batch of 1.0, with each timer's created-at in "due" */
CREATE OR REPLACE FUNCTION orderexp._remind_sql(cfg orderexp.tables)
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
		   t.token_extensions, t.generation, t.order_created
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
