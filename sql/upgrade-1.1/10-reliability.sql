/*
 * Reliability and security: one privilege model for every function that
 * changes orders.
 *
 * orderexp's tables belong to the extension owner; no other role has rights
 * on them.  A function that changes orders is split in two (gate.c):
 *
 *   orderexp.<name>(orders regclass, ...)   the public gate, C symbol
 *                                           orderexp_gate: checks that the
 *                                           caller may UPDATE the orders
 *                                           table (42501 otherwise), then
 *                                           calls the body as the extension
 *                                           owner with the same arguments
 *   orderexp._<name>(orders regclass, ...)  the body, same argument types,
 *                                           no defaults, kept from PUBLIC;
 *                                           orderexp._actor() names the role
 *                                           on whose behalf it runs
 *
 * orderexp_owner_gate is the same for set_close_policy and
 * drop_close_policy, which put triggers on the table: the caller must own
 * it.  Who may call which gate is granted in 90-privileges.sql.
 */

/* the role on whose behalf the current orderexp call runs */
CREATE FUNCTION orderexp._actor()
RETURNS name
AS 'MODULE_PATHNAME', 'orderexp_actor'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION orderexp._actor() IS
	'the role on whose behalf the current orderexp call runs: the caller of the enclosing gate, else current_user';

/* ------------------------------------------------------------------------
 * Token ids that survive a dump
 *
 * A token names its table.  Tokens of 1.0 name it by OID, which a dump and
 * restore does not keep; so each registered table gets a token id, its OID
 * when it was registered, kept in a table that is dumped with the data and
 * maps the id to the table (by regclass, i.e. by name in the dump).  token.c
 * signs new tokens with the id and looks the table up by it.
 * ------------------------------------------------------------------------ */

CREATE TABLE orderexp.token_tables (
	token_relid		oid PRIMARY KEY,
	order_table		regclass NOT NULL UNIQUE
					REFERENCES orderexp.tables (order_table) ON DELETE CASCADE
);
COMMENT ON TABLE orderexp.token_tables IS
	'the id by which extension tokens name a registered table: its OID when it was registered, kept across dump and restore';

INSERT INTO orderexp.token_tables (token_relid, order_table)
SELECT t.order_table::oid, t.order_table FROM orderexp.tables t;

/* a newly registered table gets its OID as token id, or the next free one */
CREATE FUNCTION orderexp._token_table_registered()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint := NEW.order_table::oid;
BEGIN
	IF EXISTS (SELECT 1 FROM orderexp.token_tables x WHERE x.order_table = NEW.order_table) THEN
		RETURN NULL;
	END IF;
	WHILE EXISTS (SELECT 1 FROM orderexp.token_tables x WHERE x.token_relid = id::oid) LOOP
		id := CASE WHEN id >= 4294967295 THEN 16384 ELSE id + 1 END;
	END LOOP;
	INSERT INTO orderexp.token_tables (token_relid, order_table) VALUES (id::oid, NEW.order_table);
	RETURN NULL;
END;
$$;

CREATE TRIGGER token_table_registered AFTER INSERT ON orderexp.tables
	FOR EACH ROW EXECUTE FUNCTION orderexp._token_table_registered();

/*
 * Restoring a dump: the rows made for the restored registrations give way
 * to the dumped ones, which carry the ids the dumped tokens name.
 */
CREATE FUNCTION orderexp._token_table_restored()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orderexp.token_tables x
	 WHERE x.order_table = NEW.order_table OR x.token_relid = NEW.token_relid;
	RETURN NEW;
END;
$$;

CREATE TRIGGER token_table_restored BEFORE INSERT ON orderexp.token_tables
	FOR EACH ROW EXECUTE FUNCTION orderexp._token_table_restored();

SELECT pg_catalog.pg_extension_config_dump('orderexp.token_tables', '');
REVOKE ALL ON orderexp.token_tables FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._token_table_registered() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._token_table_restored() FROM PUBLIC;

/* ------------------------------------------------------------------------
 * Lock order of the order operations: the row first, then its timer.
 *
 * In 1.0 an operation locked the timer first and then the row.  Under READ
 * COMMITTED each statement takes a new snapshot, so an order committed
 * between the two (its row and timer are written by one transaction) had
 * its row locked and changed while its timer, invisible to the first
 * statement, was not locked: two operations on such an order, or an
 * operation and an application setting the order back to unpaid (row, then
 * the timer trigger), could deadlock (the soak test found it).  Every
 * writer of a timer holds the order's row (the timer trigger runs in the
 * transaction that writes the row), so locking the row first makes the
 * timer visible and the order of locks the same everywhere.  The sweep
 * takes both with SKIP LOCKED and never waits, so it deadlocks with
 * neither order.
 * ------------------------------------------------------------------------ */

CREATE OR REPLACE FUNCTION orderexp._lock_order(cfg orderexp.tables, k text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st text;
	found_row boolean;
	created timestamptz;
BEGIN
	/*
	 * On a table partitioned by created-at, look in the partition the
	 * timer names first; the timer is read unlocked, so should the order
	 * have moved meanwhile, look again in the whole table.
	 */
	IF cfg.partition_column IS NOT NULL THEN
		SELECT t.order_created INTO created FROM orderexp.timers t
		 WHERE t.order_table = cfg.order_table AND t.order_key = k;
	END IF;
	IF created IS NOT NULL THEN
		EXECUTE format('SELECT true, o.%I::text FROM %s o WHERE o.%I = $1::%s AND o.%I = %s FOR UPDATE',
					   cfg.status_column, cfg.order_table, cfg.key_column, cfg.key_type,
					   cfg.partition_column, orderexp._created_utc(cfg, '$2'))
			INTO found_row, st USING k, created;
	END IF;
	IF found_row IS NULL THEN
		EXECUTE format('SELECT true, o.%I::text FROM %s o WHERE o.%I = $1::%s FOR UPDATE',
					   cfg.status_column, cfg.order_table, cfg.key_column, cfg.key_type)
			INTO found_row, st USING k;
	END IF;
	IF found_row IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, cfg.order_table
			USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM 1 FROM orderexp.timers t
	 WHERE t.order_table = cfg.order_table AND t.order_key = k
	   FOR UPDATE;
	RETURN st;
END;
$$;
COMMENT ON FUNCTION orderexp._lock_order(orderexp.tables, text) IS
	'lock one order: its row, then its timer; the row''s status as text, P0002 if there is no such order';

/*
 * The bodies of the gates below, orderexp._cancel_order, _cancel_orders and
 * _extend_order, are defined with the audit trail in 30-afterclose.sql (a
 * gate finds its body by name when it is called).
 */

/* ------------------------------------------------------------------------
 * The gates.  CREATE OR REPLACE keeps the 1.0 functions' identities (and
 * anything that depends on them); only their language changes.
 * ------------------------------------------------------------------------ */

CREATE OR REPLACE FUNCTION orderexp.cancel_order(orders regclass, order_key anyelement, reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE OR REPLACE FUNCTION orderexp.cancel_orders(orders regclass, order_keys anyarray, reason text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE OR REPLACE FUNCTION orderexp.extend_order(orders regclass, order_key anyelement, "by" interval DEFAULT NULL)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

/* ------------------------------------------------------------------------
 * Policies: bodies as in 1.0, and owner gates in place of the functions.
 * ------------------------------------------------------------------------ */

CREATE FUNCTION orderexp._set_close_policy(
	orders				regclass,
	close_after			interval,
	remind_before		interval,
	extend_by			interval,
	max_extensions		integer,
	category			text,
	key_column			name,
	status_column		name,
	created_column		name,
	category_column		name,
	unpaid_value		text,
	closed_value		text,
	cancelled_value		text,
	payload_columns		name[],
	channels			text[],
	reschedule			boolean)
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
					  HINT = CASE rel.relkind
								 WHEN 'p' THEN 'Name the column that identifies an order with key_column; it must lead an index.'
								 ELSE 'Name a unique key column with key_column.' END;
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
	IF rel.relkind = 'p' THEN
		/*
		 * A unique index of a partitioned table must contain the partition
		 * key, so the column that identifies an order (filled from a
		 * sequence, say) cannot be declared unique on its own.  It must lead
		 * an index, such as the primary key (id, created_at), so that every
		 * lookup of an order is an index probe in each partition it touches.
		 */
		IF NOT EXISTS (SELECT 1 FROM pg_index i
						WHERE i.indrelid = orders AND i.indkey[0] = att.attnum
						  AND i.indpred IS NULL) THEN
			RAISE EXCEPTION 'key column "%" of partitioned table % is not indexed', cfg.key_column, orders
				USING ERRCODE = 'invalid_table_definition',
					  DETAIL = 'The key column of a partitioned table must be the first column of an index without a WHERE clause.',
					  HINT = format('Use a primary key that starts with it, e.g. PRIMARY KEY (%I, <partition key>), or CREATE INDEX ON %s (%I).',
									cfg.key_column, orders, cfg.key_column);
		END IF;
	ELSIF NOT EXISTS (SELECT 1 FROM pg_index i
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
	cfg.partition_column := orderexp._partition_column(orders, cfg.created_column);

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
									 closed_value, cancelled_value, payload_columns, channels,
									 partition_column)
		VALUES (cfg.order_table, cfg.key_column, cfg.key_type, cfg.status_column,
				cfg.created_column, cfg.category_column, cfg.unpaid_value,
				cfg.closed_value, cfg.cancelled_value, cfg.payload_columns, cfg.channels,
				cfg.partition_column);
	ELSE
		UPDATE orderexp.tables t
		   SET key_column = cfg.key_column, key_type = cfg.key_type,
			   status_column = cfg.status_column, created_column = cfg.created_column,
			   category_column = cfg.category_column, unpaid_value = cfg.unpaid_value,
			   closed_value = cfg.closed_value, cancelled_value = cfg.cancelled_value,
			   payload_columns = cfg.payload_columns, channels = cfg.channels,
			   partition_column = cfg.partition_column,
			   last_error = NULL, last_error_at = NULL
		 WHERE t.order_table = orders;
	END IF;
	SELECT * INTO cfg FROM orderexp.tables t WHERE t.order_table = orders;

	SELECT p.id INTO policy_id FROM orderexp.policies p
	 WHERE p.order_table = orders AND p.category IS NOT DISTINCT FROM _set_close_policy.category
	   FOR UPDATE;
	had_policy := FOUND;
	IF had_policy THEN
		UPDATE orderexp.policies p
		   SET close_after = _set_close_policy.close_after,
			   remind_before = _set_close_policy.remind_before,
			   extend_by = _set_close_policy.extend_by,
			   max_extensions = _set_close_policy.max_extensions,
			   updated_at = now()
		 WHERE p.id = policy_id;
	ELSE
		INSERT INTO orderexp.policies (order_table, category, close_after, remind_before,
									   extend_by, max_extensions)
		VALUES (orders, category, close_after, remind_before, extend_by, max_extensions)
		RETURNING id INTO policy_id;
	END IF;

	PERFORM orderexp._install_triggers(cfg);
	PERFORM orderexp._fill_order_created(cfg);

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

CREATE FUNCTION orderexp._drop_close_policy(orders regclass, category text)
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
	 WHERE p.order_table = orders AND p.category = _drop_close_policy.category
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

CREATE OR REPLACE FUNCTION orderexp.set_close_policy(
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
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE OR REPLACE FUNCTION orderexp.drop_close_policy(orders regclass, category text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

/* ------------------------------------------------------------------------
 * DDL on registered tables
 *
 * A registered table may be renamed (the registration names it by OID, and
 * its triggers go with it).  A mapped column may be renamed: the
 * registration and the timer triggers, whose arguments name the columns,
 * follow it.  A mapped column may not be dropped, nor changed to a type
 * orderexp cannot use, while the table is registered: the ALTER TABLE fails
 * with a clear error instead of leaving a trigger that would fail every
 * INSERT and a worker that would fail on the table every minute.
 * ------------------------------------------------------------------------ */

CREATE FUNCTION orderexp._on_alter_table()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rel		oid;
	cfg		orderexp.tables;
	mapped	name[];
	missing	name[];
	renamed	smallint;
	new_name name;
	key_typ	regtype;
	st_ok	boolean;
BEGIN
	FOR rel IN
		SELECT DISTINCT c.objid
		  FROM pg_event_trigger_ddl_commands() c
		 WHERE c.classid = 'pg_class'::regclass
		   AND c.objid IN (SELECT t.order_table FROM orderexp.tables t)
	LOOP
		SELECT * INTO cfg FROM orderexp.tables t WHERE t.order_table = rel FOR UPDATE;
		mapped := ARRAY[cfg.key_column, cfg.status_column, cfg.created_column]
				  || CASE WHEN cfg.category_column IS NULL THEN '{}'::name[]
						  ELSE ARRAY[cfg.category_column] END
				  || cfg.payload_columns;
		SELECT coalesce(array_agg(DISTINCT m), '{}') INTO missing
		  FROM unnest(mapped) m
		 WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
							WHERE a.attrelid = rel AND a.attname = m
							  AND a.attnum > 0 AND NOT a.attisdropped);

		IF cardinality(missing) > 0 THEN
			/*
			 * A RENAME COLUMN renames one column: the one mapped name that
			 * is gone is its old name.
			 */
			SELECT min(c.objsubid) INTO renamed
			  FROM pg_event_trigger_ddl_commands() c
			 WHERE c.classid = 'pg_class'::regclass AND c.objid = rel
			   AND c.object_type = 'table column' AND c.objsubid > 0;
			SELECT a.attname INTO new_name
			  FROM pg_attribute a
			 WHERE a.attrelid = rel AND a.attnum = renamed AND NOT a.attisdropped;
			IF cardinality(missing) <> 1 OR new_name IS NULL THEN
				RAISE EXCEPTION 'column "%" of table % is mapped by orderexp', missing[1], rel::regclass
					USING ERRCODE = 'dependent_objects_still_exist',
						  DETAIL = format('orderexp uses it as %s.',
										  CASE missing[1] WHEN cfg.key_column THEN 'the key column'
														  WHEN cfg.status_column THEN 'the status column'
														  WHEN cfg.created_column THEN 'the created-at column'
														  WHEN cfg.category_column THEN 'the category column'
														  ELSE 'a payload column' END),
						  HINT = 'Map another column with orderexp.set_close_policy(), or unregister the table with orderexp.drop_close_policy(), first.';
			END IF;
			UPDATE orderexp.tables t
			   SET key_column = CASE WHEN t.key_column = missing[1] THEN new_name ELSE t.key_column END,
				   status_column = CASE WHEN t.status_column = missing[1] THEN new_name ELSE t.status_column END,
				   created_column = CASE WHEN t.created_column = missing[1] THEN new_name ELSE t.created_column END,
				   category_column = CASE WHEN t.category_column = missing[1] THEN new_name ELSE t.category_column END,
				   partition_column = CASE WHEN t.partition_column = missing[1] THEN new_name ELSE t.partition_column END,
				   payload_columns = array_replace(t.payload_columns, missing[1], new_name)
			 WHERE t.order_table = rel
			RETURNING * INTO cfg;
			PERFORM orderexp._install_triggers(cfg);
		END IF;

		/* the types the registration relies on */
		SELECT a.atttypid::regtype INTO key_typ
		  FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = cfg.key_column AND NOT a.attisdropped;
		IF key_typ IS DISTINCT FROM cfg.key_type THEN
			RAISE EXCEPTION 'cannot change the type of column "%" of table %', cfg.key_column, rel::regclass
				USING ERRCODE = 'feature_not_supported',
					  DETAIL = format('It is the key orderexp tracks the orders by, of type %s.', cfg.key_type),
					  HINT = 'Unregister the table with orderexp.drop_close_policy() first.';
		END IF;
		SELECT t.typcategory = 'S' OR t.typtype = 'e' INTO st_ok
		  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		 WHERE a.attrelid = rel AND a.attname = cfg.status_column AND NOT a.attisdropped;
		IF NOT st_ok THEN
			RAISE EXCEPTION 'status column "%" of table % must stay of a string type or an enum',
				cfg.status_column, rel::regclass
				USING ERRCODE = 'datatype_mismatch';
		END IF;

		/* partitioned by created-at (07-partitioned.sql): SET/DROP NOT NULL */
		IF orderexp._partition_column(rel, cfg.created_column) IS DISTINCT FROM cfg.partition_column THEN
			UPDATE orderexp.tables t
			   SET partition_column = orderexp._partition_column(rel, cfg.created_column)
			 WHERE t.order_table = rel
			RETURNING * INTO cfg;
			PERFORM orderexp._fill_order_created(cfg);
			PERFORM orderexp._install_triggers(cfg);
		END IF;
	END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION orderexp._on_alter_table() FROM PUBLIC;

CREATE EVENT TRIGGER orderexp_alter_table ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION orderexp._on_alter_table();
