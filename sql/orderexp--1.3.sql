/*
 * orderexp--1.3.sql
 *		Install script of orderexp 1.3: close expired unpaid orders in the
 *		user's own tables and write what happened into an outbox.
 *
 * A fresh CREATE EXTENSION runs this script alone.  A database made with an
 * older version is brought here by orderexp--1.0--1.1.sql (assembled from
 * sql/upgrade-1.1/), orderexp--1.1--1.2.sql and orderexp--1.2--1.3.sql;
 * both ways must end with the
 * same catalog (TAP test 010_dump_upgrade compares them object by object),
 * so a change to an object here goes into an upgrade script too.
 *
 * Read top to bottom: roles, orderexp's tables (with their comments and
 * what pg_dump keeps of them), functions (C entry points, internal helpers,
 * the sweep's statements, policies, order operations, extension tokens,
 * history, experiments, delivery, statistics, DDL on registered tables),
 * the triggers on orderexp's own tables, event triggers, views, the token
 * secret, and privileges.  Every object lives in schema orderexp, which
 * CREATE EXTENSION makes (orderexp.control).
 *
 * All dynamic SQL quotes identifiers with format('%I') or regclass output,
 * and passes values as parameters or with format('%L'); nothing from a user
 * string is spliced in unquoted.  Functions pin search_path so that a hostile
 * search_path of the caller cannot redirect an operator or function call.
 *
 * One privilege model for every function that changes orders.  orderexp's
 * tables belong to the extension owner; no other role has rights on them.
 * A function that changes orders is split in two (gate.c):
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
 * orderexp_owner_gate is the same for the functions that put triggers on
 * the table or change its policies (set_close_policy, drop_close_policy,
 * start_experiment, end_experiment): the caller must own it.  A gate finds
 * its body by name when it is called.  Who may call which gate is granted
 * at the end of this script.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION orderexp" to load this file. \quit

/* ------------------------------------------------------------------------
 * Roles
 *
 * Three NOLOGIN roles that a DBA grants to real users:
 *
 *   orderexp_admin   registers and changes policies, runs experiments,
 *                    rotates the secret, looks after dead letters
 *   orderexp_app     what an application does: cancel, extend, reopen,
 *                    history, extension tokens
 *   orderexp_relay   what a notification relay does: read, claim,
 *                    acknowledge and fail outbox rows
 *
 * Roles belong to the cluster, not to a database or an extension: they are
 * made by the first database that installs orderexp and kept when the
 * extension is dropped (DROP ROLE them by hand once no database uses them).
 * ------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------
 * Tables
 *
 * Every table (and the sequences behind them) is marked for pg_dump with
 * pg_extension_config_dump: a dump keeps the registrations, policies,
 * timers, events, the secret and the audit trail.
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
	partition_column name,
	channels_column	name,
	contact_channels text[] NOT NULL DEFAULT '{}',
	contact_columns	name[] NOT NULL DEFAULT '{}',
	fallback_before	interval NOT NULL DEFAULT '5 minutes',
	CONSTRAINT tables_values_distinct
		CHECK (unpaid_value <> closed_value AND unpaid_value <> cancelled_value
			   AND closed_value <> cancelled_value),
	CONSTRAINT tables_channels_valid
		CHECK (cardinality(channels) > 0 AND array_position(channels, NULL) IS NULL),
	CONSTRAINT tables_contacts_aligned
		CHECK (cardinality(contact_channels) = cardinality(contact_columns)),
	CONSTRAINT tables_fallback_before_valid
		CHECK (fallback_before >= interval '0')
);
COMMENT ON TABLE orderexp.tables IS
	'orders tables registered with orderexp.set_close_policy and how their columns map';
COMMENT ON COLUMN orderexp.tables.partition_column IS
	'the created-at column when the table is partitioned by it (lookups are narrowed to a created-at range), else NULL';
COMMENT ON COLUMN orderexp.tables.channels_column IS
	'the column (text[], or text with a comma-separated list) holding the channels each customer chose, in order of preference; NULL: none';
COMMENT ON COLUMN orderexp.tables.contact_channels IS
	'channels whose contact is checked before a reminder goes out on them, aligned with contact_columns';
COMMENT ON COLUMN orderexp.tables.contact_columns IS
	'the column holding the contact (e-mail address, phone number) of each of contact_channels';
COMMENT ON COLUMN orderexp.tables.fallback_before IS
	'a reminder that cannot be delivered falls back to the customer''s next channel only while at least this much is left before the deadline';
SELECT pg_catalog.pg_extension_config_dump('orderexp.tables', '');

/*
 * Close policies.  version is bumped by a trigger (policies_version)
 * whenever the settings change, and every version is kept in
 * policy_versions; a change of any kind makes every backend drop its cache
 * of policies when it commits (policies_changed).
 */
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
	updated_at		timestamptz NOT NULL DEFAULT now(),
	version			integer NOT NULL DEFAULT 1,
	experiment_id	integer,
	plain_since		timestamptz
);
CREATE UNIQUE INDEX policies_table_default ON orderexp.policies (order_table)
	WHERE category IS NULL;
CREATE UNIQUE INDEX policies_table_category ON orderexp.policies (order_table, category)
	WHERE category IS NOT NULL;
COMMENT ON TABLE orderexp.policies IS
	'close policies: per table (category NULL) and per product category';
COMMENT ON COLUMN orderexp.policies.version IS
	'bumped whenever the settings (or the running experiment) change; timers and outcomes record it';
COMMENT ON COLUMN orderexp.policies.experiment_id IS
	'the experiment running on this policy, if any (orderexp.start_experiment)';
COMMENT ON COLUMN orderexp.policies.plain_since IS
	'plain deadlines (orderexp.set_plain_deadlines, default policy only) since then: an unpaid order without a timer row is due at its created-at plus close_after';
SELECT pg_catalog.pg_extension_config_dump('orderexp.policies', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.policies_id_seq', '');

/*
 * One row per tracked order.  Rows are created by the timer trigger on the
 * user's table when an unpaid order appears, and removed by whatever ends the
 * order through orderexp (sweep, cancel).  A payment made directly on the
 * user's table does not touch this table at all: the row is dropped lazily by
 * the sweep when its deadline comes, which keeps the application's payment
 * path free of orderexp work and of lock-order hazards.
 *
 * Each timer keeps its order's created-at (order_created): on a table
 * partitioned by its created-at, as pg_partman makes it, every statement
 * that looks up a batch of orders narrows the lookup to the created-at
 * range of the batch (_orders_sql), so that run-time partition
 * pruning leaves only the partitions holding the batch: a batch of orders
 * due together was made together and touches one partition or two, instead
 * of an index probe per order in every partition.  Functions on one order
 * look it up with its created-at (_lock_order).  Partitions made or
 * attached later need nothing: row triggers of a partitioned table are
 * cloned onto its new partitions.  A detached or dropped partition takes
 * its orders out of the table; their timers find no row at their deadlines
 * and go without an event, like those of deleted orders.
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
	order_created	timestamptz,
	policy_version	integer,
	variant			integer,
	reopened		boolean NOT NULL DEFAULT false,
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
COMMENT ON COLUMN orderexp.timers.order_created IS
	'the order''s created-at as stored (a timestamp without time zone as if UTC), to find its partition';
COMMENT ON COLUMN orderexp.timers.policy_version IS
	'version of the policy when the timer was armed';
COMMENT ON COLUMN orderexp.timers.variant IS
	'the experiment variant of the order (1-based), NULL when no experiment ran';
COMMENT ON COLUMN orderexp.timers.reopened IS
	'the timer was armed by reopen_order: the order''s outcome does not count for its policy''s statistics';
COMMENT ON TABLE orderexp.timers IS
	'deadline of every tracked order; due work is an index range scan on (order_table, close_at)';
SELECT pg_catalog.pg_extension_config_dump('orderexp.timers', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.timer_generation', '');

/*
 * The outbox: events written in the same transaction as the state change
 * that caused them.  A relay (a program that sends the mails, SMS or
 * webhooks) LISTENs on orderexp, then:
 *
 *   claim(max_rows, lease, kinds, channels)   leases due rows, SKIP LOCKED,
 *                                             so that relays share the work
 *   ack(ids)                                  delivered
 *   fail(id, error)                           not delivered: retry later with
 *                                             exponential back-off, or dead
 *                                             after orderexp.max_attempts
 *
 * Row states (all in orderexp.outbox, no second table):
 *
 *   pending    delivered_at IS NULL, dead_at IS NULL, next_attempt_at <= now
 *   leased     claimed: leased_until > now; next_attempt_at = leased_until,
 *              so an expired lease makes the row due again by itself
 *   retrying   failed, waiting for next_attempt_at
 *   delivered  delivered_at IS NOT NULL; pruned after orderexp.event_retention
 *              unless it is the record of a change (below)
 *   dead       dead_at IS NOT NULL, next_attempt_at = 'infinity': never tried
 *              again until requeue(); never pruned
 *   obsolete   obsolete_at IS NOT NULL, next_attempt_at = 'infinity': a
 *              reminder claim() settled without delivery because it no
 *              longer matters (1.3); pruned like delivered rows
 *              (outbox_obsolete)
 *
 * A row is not handed out while an earlier event of its order on its
 * channel is out (leased) or waiting for a retry: outbox_in_flight holds
 * exactly those rows (a row enters it when it is first claimed, so the
 * sweep's inserts do not maintain it).
 *
 * claimed_by names the role that claimed the row last (its session_user: a
 * relay logs in as its role).  ack() and fail() touch only rows the calling
 * role claimed, so a relay cannot mark rows delivered that nobody sent, nor
 * report on another relay's rows.
 *
 * Because a lease and a retry both live in next_attempt_at, and a dead row
 * moves to 'infinity', the rows claim() wants are exactly a range scan of
 * the index outbox_undelivered (next_attempt_at) WHERE delivered_at IS NULL
 * AND txid IS NULL from its start to now (events in the stream of batches,
 * txid set, are not in it, see "Batches" below): no index is needed for claiming, and dead rows do
 * not slow claims down.  The attempt is counted at claim time, so a row that
 * crashes every relay that takes it (no fail() ever comes) still dies: a
 * claim that finds a due row whose attempts are used up marks it dead
 * instead of handing it out.
 *
 * One more index, for pruning: outbox_delivered (delivered_at) WHERE
 * delivered_at IS NOT NULL AND via IS NULL.  It has no entry for a new row,
 * so the sweep's bulk inserts do not maintain it; ack() adds one entry per
 * row (ack already is a non-HOT update).  With it the worker finds the
 * oldest delivered rows with one index probe, whatever else (dead,
 * long-undelivered or kept rows) sits at the low end of the primary key.
 *
 * Each change orderexp makes to an order is written once (1.3): the first
 * event the change writes is also its record, the row history(), the view
 * audit and explain_order() read.  The record carries via, actor, reason,
 * the policy and variant, the deadline and the previous deadline, and, when
 * the change wrote an event on more than one channel, the ids of all of
 * them (event_ids); the other events of the change have via NULL.  A change
 * that writes no event (a reminder withheld by claim(); every table has a
 * channel) writes its record alone, a row without a channel that is
 * delivered as it is written (never claimed, never counted as a delivery).
 * Records outlive their delivery: pruning after orderexp.event_retention
 * takes only rows with via NULL (hence the indexes' predicates), and
 * forget_before() deletes the records older than its cutoff once they are
 * settled.  outbox_history, a hash index on order_key, finds an order's
 * records and its reminders (explain_order() tells them): WHERE via IS NOT
 * NULL OR kind = 'reminder'.  It is the only index a close adds besides the
 * primary key and outbox_undelivered, and a hash index because an entry in
 * it costs about half of one in a b-tree on (order_table, order_key, id)
 * (bench/instructions.md): history() sorts an order's few records itself.
 * Because the outbox now keeps the history, the views of the last hour or
 * day (delivery_health, monitor_closes, monitor_delivery) must not read
 * all of it: they find the recent rows by a range of ids, from a mark of
 * outbox_marks (below), through each part's primary key.  No index on
 * created_at: the BRIN index that did this cost about 3,000 instructions
 * an insert (bench/instructions.md).
 */
/*
 * The default of outbox.txid (src/stream.c): the writing transaction's id
 * while orderexp.batch_delivery is on and the stream is this database's
 * own, else NULL (the event is a row of its own).  _stream_foreign(): does
 * the stream hold another cluster's transaction ids, restored from a dump
 * (see stream_origins)?
 */
CREATE FUNCTION orderexp._stream_txid()
RETURNS xid8
AS 'MODULE_PATHNAME', 'orderexp_stream_txid'
LANGUAGE C VOLATILE;
CREATE FUNCTION orderexp._stream_foreign()
RETURNS boolean
AS 'MODULE_PATHNAME', 'orderexp_stream_foreign'
LANGUAGE C VOLATILE;

/*
 * Parts of the outbox (1.3): the outbox is partitioned by part, so that
 * delivered events leave it a whole range at a time, as PgQ rotates its
 * event tables, and not a row at a time.  Part 0, outbox_0, holds what is
 * kept row by row: the records of changes (the orders' history, deleted by
 * forget_before()), the rows from before the parts, and the events a
 * rotation found still undelivered, dead, or delivered within
 * orderexp.event_retention (pruned by row as before).  Every other event
 * (reminders, a change's events on its further channels) goes to the
 * current one of three rotating parts, outbox_1 to outbox_3: the default
 * of part, orderexp._outbox_part() (src/outbox.c), reads it once per
 * transaction; writers of records name part 0.
 *
 * The pruning rotates (_rotate_outbox()): when the current part has been
 * current for half the retention, and the next part stopped being current
 * longer than the retention ago, the next part's events that are not
 * settled before the retention's cutoff move to outbox_0, the part is
 * emptied with TRUNCATE (under ACCESS EXCLUSIVE with a short lock_timeout:
 * a busy part is tried again at the next pruning) and becomes the current
 * one.  So an event is kept between the retention and one and a half
 * times it, and its deletion costs no row, no index entry, no WAL per event.
 * One row per rotating part here: the current one has closed_at NULL.
 */
CREATE FUNCTION orderexp._outbox_part()
RETURNS smallint
AS 'MODULE_PATHNAME', 'orderexp_outbox_part'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION orderexp._outbox_part() IS
	'the default of outbox.part: the current rotating part of the outbox (outbox_parts), read once per transaction';

/*
 * Name each part's indexes after the partitioned index they belong to:
 * outbox_<part>_<name> for outbox_<name>.  (CREATE INDEX on the outbox
 * names them from their columns.)  Also run by the update from 1.2, which
 * makes the outbox of 1.2 its part 0.
 */
CREATE FUNCTION orderexp._name_part_indexes()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ix	record;
BEGIN
	FOR ix IN
		SELECT c.relname AS child, pc.relname AS part,
			   substr(pi.relname, length('outbox_') + 1) AS name
		  FROM pg_catalog.pg_index x
		  JOIN pg_catalog.pg_class pi ON pi.oid = x.indexrelid
		  JOIN pg_catalog.pg_inherits h ON h.inhparent = x.indexrelid
		  JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
		  JOIN pg_catalog.pg_index cx ON cx.indexrelid = c.oid
		  JOIN pg_catalog.pg_class pc ON pc.oid = cx.indrelid
		 WHERE x.indrelid = 'orderexp.outbox'::pg_catalog.regclass
	LOOP
		IF ix.child <> ix.part || '_' || ix.name THEN
			EXECUTE format('ALTER INDEX orderexp.%I RENAME TO %I', ix.child,
						   ix.part || '_' || ix.name);
		END IF;
	END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION orderexp._name_part_indexes() FROM PUBLIC;

CREATE TABLE orderexp.outbox_parts (
	part			smallint PRIMARY KEY
					CONSTRAINT outbox_parts_part_check CHECK (part BETWEEN 1 AND 3),
	opened_at		timestamptz,
	closed_at		timestamptz,
	rotated_at		timestamptz,
	kept			bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX outbox_parts_current ON orderexp.outbox_parts ((true))
	WHERE closed_at IS NULL;
COMMENT ON TABLE orderexp.outbox_parts IS
	'the rotating parts of the outbox (outbox_1 to outbox_3): which is current (closed_at NULL), when each was last emptied';
COMMENT ON COLUMN orderexp.outbox_parts.opened_at IS
	'when the part became the current one';
COMMENT ON COLUMN orderexp.outbox_parts.closed_at IS
	'when the part stopped being the current one; NULL for the current part';
COMMENT ON COLUMN orderexp.outbox_parts.rotated_at IS
	'when the part was last emptied (TRUNCATE) to become the current one';
COMMENT ON COLUMN orderexp.outbox_parts.kept IS
	'events the last rotation of the part moved to outbox_0 instead of dropping them (undelivered, dead, delivered within the retention)';
INSERT INTO orderexp.outbox_parts (part, opened_at, closed_at)
VALUES (1, now(), NULL), (2, NULL, '-infinity'), (3, NULL, '-infinity');

CREATE TABLE orderexp.outbox (
	id				bigserial,
	kind			text NOT NULL
					CONSTRAINT outbox_kind_check
					CHECK (kind IN ('reminder', 'closed', 'cancelled', 'extended', 'reopened',
									'reminder_withheld')),
	order_table		regclass NOT NULL,
	order_key		text COLLATE "C" NOT NULL,
	channel			text,
	payload			jsonb NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	attempts		integer NOT NULL DEFAULT 0,
	next_attempt_at	timestamptz NOT NULL DEFAULT now(),
	leased_until	timestamptz,
	delivered_at	timestamptz,
	last_error		text,
	dead_at			timestamptz,
	claimed_by		name,
	obsolete_at		timestamptz,
	via				text
					CONSTRAINT outbox_via_check
					CHECK (via IN ('timeout', 'operator', 'token', 'fallback')),
	actor			name,
	reason			text,
	policy_id		integer,
	policy_version	integer,
	variant			integer,
	deadline		timestamptz,
	previous_deadline timestamptz,
	event_ids		bigint[],
	txid			xid8 DEFAULT orderexp._stream_txid(),
	part			smallint NOT NULL DEFAULT orderexp._outbox_part(),
	CONSTRAINT outbox_record_check CHECK (channel IS NOT NULL OR (via IS NOT NULL AND delivered_at IS NOT NULL))
) PARTITION BY LIST (part);
CREATE TABLE orderexp.outbox_0 PARTITION OF orderexp.outbox FOR VALUES IN (0);
CREATE TABLE orderexp.outbox_1 PARTITION OF orderexp.outbox FOR VALUES IN (1);
CREATE TABLE orderexp.outbox_2 PARTITION OF orderexp.outbox FOR VALUES IN (2);
CREATE TABLE orderexp.outbox_3 PARTITION OF orderexp.outbox FOR VALUES IN (3);
/* ids are unique by their sequence; a key per part (a key of the whole would have to include part) */
ALTER TABLE orderexp.outbox_0 ADD PRIMARY KEY (id);
ALTER TABLE orderexp.outbox_1 ADD PRIMARY KEY (id);
ALTER TABLE orderexp.outbox_2 ADD PRIMARY KEY (id);
ALTER TABLE orderexp.outbox_3 ADD PRIMARY KEY (id);
CREATE INDEX outbox_undelivered ON orderexp.outbox (next_attempt_at)
	WHERE delivered_at IS NULL AND txid IS NULL;
CREATE INDEX outbox_stream ON orderexp.outbox (txid, id)
	WHERE txid IS NOT NULL AND delivered_at IS NULL;
CREATE INDEX outbox_delivered ON orderexp.outbox (delivered_at)
	WHERE delivered_at IS NOT NULL AND via IS NULL;
CREATE INDEX outbox_obsolete ON orderexp.outbox (obsolete_at)
	WHERE obsolete_at IS NOT NULL AND via IS NULL;
CREATE INDEX outbox_in_flight ON orderexp.outbox (order_table, order_key, channel, id)
	WHERE attempts > 0 AND delivered_at IS NULL AND dead_at IS NULL AND obsolete_at IS NULL;
CREATE INDEX outbox_history ON orderexp.outbox USING hash (order_key)
	WHERE via IS NOT NULL OR kind = 'reminder';
/*
 * Every index of the outbox is partitioned; a part's own index is named
 * after it and the part: outbox_<part>_<name> (outbox_0_stream, ...), the
 * key outbox_<part>_pkey.
 */
SELECT orderexp._name_part_indexes();
COMMENT ON TABLE orderexp.outbox IS
	'events written in the same transaction as the state change that caused them; NOTIFY orderexp wakes listeners';
COMMENT ON COLUMN orderexp.outbox.attempts IS
	'deliveries attempted: counted when the row is claimed';
COMMENT ON COLUMN orderexp.outbox.next_attempt_at IS
	'when the row may be claimed: now for new rows, the lease end while leased, the back-off after a failure, infinity when dead';
COMMENT ON COLUMN orderexp.outbox.leased_until IS
	'end of the lease of the relay that claimed the row; NULL when not leased';
COMMENT ON COLUMN orderexp.outbox.delivered_at IS
	'when a relay acknowledged the row (orderexp.ack); delivered rows are pruned after orderexp.event_retention, records of changes by forget_before()';
COMMENT ON COLUMN orderexp.outbox.last_error IS
	'what the last failed attempt reported (orderexp.fail)';
COMMENT ON COLUMN orderexp.outbox.dead_at IS
	'when the row ran out of attempts (orderexp.max_attempts); dead rows wait for orderexp.requeue and are never pruned';
COMMENT ON COLUMN orderexp.outbox.claimed_by IS
	'the role (session_user) whose claim last leased the row; only it may ack or fail the row';
COMMENT ON COLUMN orderexp.outbox.obsolete_at IS
	'when claim() settled the row without delivery: a reminder whose order is no longer unpaid or whose deadline passed or moved (the reason in last_error); pruned like delivered rows';
COMMENT ON COLUMN orderexp.outbox.channel IS
	'where the event goes; NULL: a record without an event (a change of a table with no channels, a withheld reminder), settled as it is written';
COMMENT ON COLUMN orderexp.outbox.via IS
	'set on the record of a change (the first event it wrote): timeout (the sweep), operator (a function call), token (the customer''s link) or fallback (a reminder sent again on the next channel); NULL on the other events';
COMMENT ON COLUMN orderexp.outbox.actor IS
	'the record''s role that made the change; NULL for the sweep, which acts for the policy';
COMMENT ON COLUMN orderexp.outbox.deadline IS
	'the record''s deadline: closed, the one that passed; cancelled, the one the order had; extended, reopened, the new one';
COMMENT ON COLUMN orderexp.outbox.event_ids IS
	'the record''s events when it wrote more than this row (one per channel); for a record without an event, the events it is about';
COMMENT ON COLUMN orderexp.outbox.part IS
	'which part of the outbox holds the row: 0 what is kept row by row (records of changes, exceptions), 1 to 3 the rotating parts that are emptied whole (outbox_parts)';
COMMENT ON TABLE orderexp.outbox_0 IS
	'the part of the outbox kept row by row: records of changes, rows from before the parts, events a rotation kept';
COMMENT ON TABLE orderexp.outbox_1 IS
	'a rotating part of the outbox (outbox_parts)';
COMMENT ON TABLE orderexp.outbox_2 IS
	'a rotating part of the outbox (outbox_parts)';
COMMENT ON TABLE orderexp.outbox_3 IS
	'a rotating part of the outbox (outbox_parts)';
/*
 * A record that forget_before() stopped being a record while its event was
 * still in the stream stays in outbox_0 as an event; once its batch is
 * settled the pruning deletes it by this index (empty but for such rows).
 */
CREATE INDEX outbox_0_forgotten ON orderexp.outbox_0 (txid)
	WHERE txid IS NOT NULL AND via IS NULL;
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_0', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_1', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_2', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_3', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_id_seq', '');

/*
 * Marks of the outbox (1.3), as PgQ's ticks mark its event sequence: at
 * time "at", no id above last_id had been drawn from outbox_id_seq.  Every
 * row of the outbox has a created_at no later than the moment its id was
 * drawn (created_at is its transaction's start or an earlier clock
 * reading of the writer; a rotation or a dump moves a row with both), so
 * a row created at or after a mark's time has an id above the mark's
 * last_id.  The views of the last hour or day read the rows with
 * id > last_id of the latest mark at or before the period's start (0
 * without one), and filter by created_at as before: exact, and a range
 * of each part's primary key instead of an index on created_at.
 *
 * _mark_outbox() writes a mark when the latest is a minute old or older,
 * so that a view reads at most about a minute's rows beyond its period; it
 * reads the sequence first and the clock after it.  The worker's pruning
 * and run_due() call it (src/outbox.c), whatever orderexp.event_retention.
 * Marks older than two days go, but the latest of them, which still bounds
 * a day.  A sequence that caches values (ALTER SEQUENCE ... CACHE n, n > 1)
 * hands them out of order, and then no mark is written.  Dumped with the
 * outbox, whose ids a restore keeps.
 */
CREATE TABLE orderexp.outbox_marks (
	at				timestamptz PRIMARY KEY,
	last_id			bigint NOT NULL
);
COMMENT ON TABLE orderexp.outbox_marks IS
	'marks of the outbox''s id sequence over time: at "at", no id above last_id had been drawn; the views of the last hour or day read the ids above a mark';
SELECT pg_catalog.pg_extension_config_dump('orderexp.outbox_marks', '');

CREATE FUNCTION orderexp._mark_outbox()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	seq record;
BEGIN
	IF EXISTS (SELECT FROM orderexp.outbox_marks m
				WHERE m.at > clock_timestamp() - interval '1 minute') THEN
		RETURN false;
	END IF;
	IF (SELECT s.seqcache FROM pg_sequence s
		 WHERE s.seqrelid = 'orderexp.outbox_id_seq'::regclass) <> 1 THEN
		RETURN false;
	END IF;
	/* the sequence first, the clock after it */
	SELECT q.last_value, q.is_called INTO seq FROM orderexp.outbox_id_seq q;
	INSERT INTO orderexp.outbox_marks (at, last_id)
	VALUES (clock_timestamp(), CASE WHEN seq.is_called THEN seq.last_value ELSE seq.last_value - 1 END)
	ON CONFLICT (at) DO NOTHING;
	/* SKIP LOCKED: never wait for another backend trimming them */
	DELETE FROM orderexp.outbox_marks m
	 WHERE m.at IN (SELECT x.at FROM orderexp.outbox_marks x
					 WHERE x.at < (SELECT max(k.at) FROM orderexp.outbox_marks k
									WHERE k.at < now() - interval '2 days')
					   FOR UPDATE SKIP LOCKED);
	RETURN true;
END;
$$;
REVOKE ALL ON FUNCTION orderexp._mark_outbox() FROM PUBLIC;
COMMENT ON FUNCTION orderexp._mark_outbox() IS
	'write a mark of the outbox''s id sequence (outbox_marks) if the latest is a minute old; true if it did';
SELECT orderexp._mark_outbox();

/*
 * Batches (1.3): the outbox consumed a batch at a time, as PgQ consumes a
 * queue.  Every event row carries the id of the transaction that wrote it
 * (txid, by its default).  A batch is a stretch of the stream of events in
 * commit order: the events whose transactions a snapshot (hi_snap) sees and
 * the snapshot before it (lo_snap) did not, from one position (txid, id)
 * after from_txid/from_id up to and including to_txid/to_id.  So a batch
 * of a thousand events is one row here, written when it is cut
 * (next_batch(), or claim() on behalf of a relay that calls it) and updated
 * once when it is finished; the events themselves are not written.  An
 * event of a batch is leased, attempted and delivered as its batch is (the
 * view outbox_state shows each event's state so derived).
 *
 * An event leaves the stream (txid set to NULL, its state in its own
 * columns from then on, as every row had before 1.3) only for an
 * exception: a failure (fail()), a reminder withheld, an event that must
 * wait for an earlier one of its order and channel, a partial ack, a batch
 * out of attempts (its events die), and events a filtering claim() did not
 * want.  Rows without txid, i.e. those and the rows from before 1.3, are
 * claimed one by one as before (outbox_undelivered indexes only them), and
 * next_batch() hands them out first, as a batch of rows (row_ids).
 *
 * stream_cursor, one row, says how far the stream is cut into batches:
 * every event visible in done_snap is in a batch (or left the stream), and
 * so is every event visible in next_snap up to position pos_txid/pos_id.
 * open_from: no stream batch below it is still open.  origin: whose
 * transaction ids the stream holds (stream_origins).
 */
CREATE TABLE orderexp.stream_cursor (
	one				boolean PRIMARY KEY DEFAULT true
					CONSTRAINT stream_cursor_one CHECK (one),
	done_snap		pg_snapshot NOT NULL,
	next_snap		pg_snapshot,
	pos_txid		xid8,
	pos_id			bigint,
	open_from		bigint NOT NULL DEFAULT 1,
	origin			uuid NOT NULL DEFAULT gen_random_uuid()
);
COMMENT ON TABLE orderexp.stream_cursor IS
	'how far the outbox''s events are cut into batches (one row)';
/* as _snapshot_for_cut() takes it: this transaction's own events are still to come */
INSERT INTO orderexp.stream_cursor (done_snap)
SELECT CASE WHEN a.me IS NULL OR NOT pg_visible_in_snapshot(a.me, a.s) THEN a.s
			ELSE format('%s:%s:%s', least(pg_snapshot_xmin(a.s), a.me), pg_snapshot_xmax(a.s),
						(SELECT string_agg(u.x::text, ',' ORDER BY u.x)
						   FROM (SELECT pg_snapshot_xip(a.s) UNION SELECT a.me) u(x)))::pg_snapshot
	   END
  FROM (SELECT pg_current_snapshot() AS s, pg_current_xact_id_if_assigned() AS me) a;

CREATE TABLE orderexp.batches (
	id				bigserial PRIMARY KEY,
	lo_snap			pg_snapshot,
	hi_snap			pg_snapshot,
	from_txid		xid8,
	from_id			bigint,
	to_txid			xid8,
	to_id			bigint,
	row_ids			bigint[],
	created_at		timestamptz NOT NULL,
	attempts		integer NOT NULL DEFAULT 1,
	claimed_by		name NOT NULL,
	leased_until	timestamptz NOT NULL,
	finished_at		timestamptz,
	dead_at			timestamptz,
	CONSTRAINT batches_kind_check CHECK ((row_ids IS NULL) = (hi_snap IS NOT NULL))
);
CREATE INDEX batches_range ON orderexp.batches (to_txid) WHERE hi_snap IS NOT NULL;
COMMENT ON TABLE orderexp.batches IS
	'batches of outbox events handed to relays: a stretch of the event stream (lo_snap, hi_snap, positions) or a list of rows leased one by one (row_ids)';
COMMENT ON COLUMN orderexp.batches.attempts IS
	'deliveries of the batch attempted: counted when it is handed out; its events'' attempts';
COMMENT ON COLUMN orderexp.batches.finished_at IS
	'when the relay finished the batch: its events still in the stream were delivered then';
COMMENT ON COLUMN orderexp.batches.dead_at IS
	'when the batch ran out of attempts (its events are dead rows since)';

/*
 * Where the stream's transaction ids come from.  Transaction ids and
 * snapshots mean something only in the cluster that made them, and
 * pg_dump keeps the outbox and the batches (their events' delivery) but
 * not the cursor, which a restore's CREATE EXTENSION makes anew with an
 * origin of its own, a random uuid.  This table holds the cursor's origin
 * and is dumped too: after a restore it holds the dumped origin beside the
 * new one.  While they differ, new events are rows (_stream_txid()), and
 * the first claim(), next_batch() or pruning adopts the restored stream
 * (_stream_adopt()).  pg_upgrade, a physical standby and CREATE DATABASE
 * ... TEMPLATE keep the cluster's transaction ids and copy the cursor with
 * them, so the origins stay equal.
 */
CREATE TABLE orderexp.stream_origins (
	origin			uuid NOT NULL
);
COMMENT ON TABLE orderexp.stream_origins IS
	'the origins of the outbox''s event stream: the cursor''s, and after a restore the dumped one until the stream is adopted';
INSERT INTO orderexp.stream_origins SELECT c.origin FROM orderexp.stream_cursor c;
SELECT pg_catalog.pg_extension_config_dump('orderexp.stream_origins', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.batches', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.batches_id_seq', '');

/*
 * How far the events delivered in batches are pruned: every stream batch
 * below pruned_to that was finished has lost its events but the records of
 * changes (which keep their batch row: it says when they were delivered).
 * A table of its own, so that pruning never waits for a relay's cut.
 */
CREATE TABLE orderexp.batch_pruning (
	one				boolean PRIMARY KEY DEFAULT true
					CONSTRAINT batch_pruning_one CHECK (one),
	pruned_to		bigint NOT NULL DEFAULT 1
);
COMMENT ON TABLE orderexp.batch_pruning IS
	'how far the events delivered in batches are pruned (one row)';
INSERT INTO orderexp.batch_pruning DEFAULT VALUES;

/*
 * The key extension tokens are signed with.  One row; only the extension
 * owner can read it.  It is kept by pg_dump: restoring a dump inserts the
 * dumped row after CREATE EXTENSION made a fresh one, and the trigger
 * secret_single_row lets the dumped one replace it.
 */
CREATE TABLE orderexp.secret (
	secret			bytea NOT NULL CHECK (length(secret) >= 32),
	created_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orderexp.secret IS
	'per-database key of the extension tokens (HMAC-SHA256); rotate with orderexp.rotate_secret()';
SELECT pg_catalog.pg_extension_config_dump('orderexp.secret', '');

/*
 * Token ids that survive a dump.  A token names its table; an OID does not
 * survive a dump and restore (tokens of 1.0 name their table by OID), so
 * each registered table gets a token id, its OID when it was registered,
 * kept in a table that is dumped with the data and maps the id to the table
 * (by regclass, i.e. by name in the dump).  token.c signs new tokens with
 * the id and looks the table up by it.
 */
CREATE TABLE orderexp.token_tables (
	token_relid		oid PRIMARY KEY,
	order_table		regclass NOT NULL UNIQUE
					REFERENCES orderexp.tables (order_table) ON DELETE CASCADE
);
COMMENT ON TABLE orderexp.token_tables IS
	'the id by which extension tokens name a registered table: its OID when it was registered, kept across dump and restore';
SELECT pg_catalog.pg_extension_config_dump('orderexp.token_tables', '');

/* ------------------------------------------------------------------------
 * After the close: the audit trail, outcomes, policy versions, experiments
 * on the timeout.
 *
 *   audit           one row per state change orderexp makes (close at the
 *                   deadline, cancel, extension, reopen): why, by whom, under
 *                   which policy, and which events it wrote; history() reads
 *                   it.  A view (1.3) of the changes' records in the outbox,
 *                   which are kept with the history after their delivery.
 *   outcomes        what became of the tracked orders when they left the
 *                   unpaid state (paid, closed, cancelled), for the
 *                   statistics: a C row trigger writes one row per order
 *                   (order_count 1) for the changes of the application and
 *                   of the gates, without SPI into a table without indexes
 *                   (outcome.c); the sweep writes one row per batch and
 *                   policy version, variant and reopened for the orders it
 *                   closes, order_count saying how many (1.3; before, one
 *                   per order).
 *   policy_versions every version of every policy; policies.version is
 *                   bumped by a trigger whenever the settings change.
 *   experiments     A/B tests of the timeout: variants and weights; orders
 *                   are assigned a variant from a hash of their key.
 * ------------------------------------------------------------------------ */

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
SELECT pg_catalog.pg_extension_config_dump('orderexp.policy_versions', '');

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
SELECT pg_catalog.pg_extension_config_dump('orderexp.experiments', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.experiments_id_seq', '');

/*
 * The audit trail: one row per change orderexp made to an order.  Up to 1.2
 * a table written beside the events; from 1.3 on the records of changes in
 * the outbox (see there), shown with the columns the table had.  id is the
 * record's outbox id, at its created_at; event_ids lists the events the
 * change wrote (for a record without an event, the events it is about).
 */
CREATE VIEW orderexp.audit AS
	SELECT o.id, o.created_at AS at, o.order_table, o.order_key, o.kind AS action, o.via,
		   o.actor, o.reason, o.policy_id, o.policy_version, o.variant, o.deadline,
		   o.previous_deadline,
		   CASE WHEN o.channel IS NULL THEN o.event_ids
				ELSE coalesce(o.event_ids, ARRAY[o.id]) END AS event_ids
	  FROM orderexp.outbox o
	 WHERE o.via IS NOT NULL;
COMMENT ON VIEW orderexp.audit IS
	'every state change orderexp made to an order, why and by whom: the records of changes in the outbox, written in the transaction of the change';
COMMENT ON COLUMN orderexp.audit.via IS
	'timeout: the sweep at the deadline; operator: a function call (cancel, extend, reopen); token: the customer''s extension link; fallback: a reminder sent again on the customer''s next channel';
COMMENT ON COLUMN orderexp.audit.actor IS
	'the role that made the change; NULL for the sweep, which acts for the policy';
COMMENT ON COLUMN orderexp.audit.deadline IS
	'closed: the deadline that passed; cancelled: the deadline the order had; extended, reopened: the new deadline';
COMMENT ON COLUMN orderexp.audit.event_ids IS
	'the outbox rows the change wrote, one per channel (NULL: none); the record is the first of them and is kept with the history, the others are pruned once delivered and old';

/*
 * No indexes, no constraints, no defaults: the outcome trigger writes it
 * with a bare heap insert on the application's payment path, and refuses to
 * write if an index appears.  The statistics views read it whole.
 *
 * A row stands for order_count orders.  The trigger's rows (paid,
 * cancelled, and the closes of anyone but the sweep) are one order's each,
 * with its key, times, reminder and extensions.  The sweep's closes are
 * counted, not listed: one row per close batch and (policy_id,
 * policy_version, variant, reopened), order_key, created_at, close_at,
 * reminded, extensions and token_extensions NULL; the audit trail names
 * each closed order.  The statistics need no more of a closed order:
 * reminders, extensions and time to pay are figures of the paid ones.
 * order_count NULL counts as 1: the rows of 1.2 and before, kept by the
 * update without rewriting the table, and those of a 1.2 dump restored
 * into 1.3, have no count and are one order's each.  (Not "orders": the
 * PL/pgSQL functions that read this table take a parameter of that name.)
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
	reopened		boolean,
	order_count		integer
);
COMMENT ON TABLE orderexp.outcomes IS
	'what became of the tracked orders when they left the unpaid state: one row per order, but one per close batch and policy version, variant and reopened for the sweep''s closes; no indexes (written by a C trigger)';
COMMENT ON COLUMN orderexp.outcomes.outcome IS
	'paid (any status but the closed and cancelled values), closed or cancelled';
COMMENT ON COLUMN orderexp.outcomes.close_at IS
	'the deadline in force when the order left the unpaid state';
COMMENT ON COLUMN orderexp.outcomes.decided_at IS
	'start of the transaction that changed the status';
COMMENT ON COLUMN orderexp.outcomes.order_count IS
	'how many orders the row stands for: 1 for one order''s row (NULL too: rows written before 1.3), the batch''s count for the sweep''s closes, whose per-order columns are NULL';
SELECT pg_catalog.pg_extension_config_dump('orderexp.outcomes', '');

/*
 * Orders a reminder could not reach on a channel: the contact the order
 * holds for it is missing or malformed (checked when the reminder is
 * written), or the channel refused it for good (fail() with retryable
 * false).  One row per order and channel, updated when it happens again,
 * deleted when a reminder goes out on that channel after all; channel ''
 * says that no channel of the order was left, and no reminder went out.
 * The view unreachable shows the rows of the reader's tables.
 */
CREATE TABLE orderexp.unreachable_contacts (
	order_table		regclass NOT NULL,
	order_key		text COLLATE "C" NOT NULL,
	channel			text NOT NULL,
	contact			text,
	why				text NOT NULL,
	since			timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (order_table, order_key, channel)
);
COMMENT ON TABLE orderexp.unreachable_contacts IS
	'orders a reminder could not reach on a channel (channel '''': on none), behind the view unreachable';
SELECT pg_catalog.pg_extension_config_dump('orderexp.unreachable_contacts', '');

/* ------------------------------------------------------------------------
 * Trigger functions of orderexp's own tables (the triggers are made after
 * the functions, below)
 * ------------------------------------------------------------------------ */

/*
 * The timer trigger caches policies in each backend, and the row triggers
 * the registrations (orderexp.tables): any change to either table makes
 * every backend drop its cache of that table when the change commits (a
 * relcache invalidation of the table changed).
 */
CREATE FUNCTION orderexp._policies_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_policies_changed'
LANGUAGE C;

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
	PERFORM orderexp._check_plain(NEW);
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

/*
 * A restore loads the dumped policies first, and policies_version records
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

/* one secret: a restored one replaces the one CREATE EXTENSION made */
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

/* ------------------------------------------------------------------------
 * C entry points
 * ------------------------------------------------------------------------ */

CREATE FUNCTION orderexp.timer_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_timer_trigger'
LANGUAGE C;
COMMENT ON FUNCTION orderexp.timer_trigger() IS
	'row trigger on registered tables: starts the timer of a new unpaid order';

CREATE FUNCTION orderexp.outcome_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_outcome_trigger'
LANGUAGE C;
COMMENT ON FUNCTION orderexp.outcome_trigger() IS
	'row trigger on registered tables: records the outcome of an order leaving the unpaid state';

CREATE FUNCTION orderexp.delete_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orderexp_delete_trigger'
LANGUAGE C;
COMMENT ON FUNCTION orderexp.delete_trigger() IS
	'row trigger on registered tables with plain deadlines and no insert trigger: drops the timer row a deleted order leaves';

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

/* the role on whose behalf the current orderexp call runs */
CREATE FUNCTION orderexp._actor()
RETURNS name
AS 'MODULE_PATHNAME', 'orderexp_actor'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION orderexp._actor() IS
	'the role on whose behalf the current orderexp call runs: the caller of the enclosing gate, else current_user';

/*
 * The GUCs orderexp.max_attempts and orderexp.event_retention are defined
 * by the library.  The SQL here reads them through C functions, so that the
 * library is loaded (and the GUCs defined, with any postgresql.conf value
 * applied) even where it is not in shared_preload_libraries.
 */
CREATE FUNCTION orderexp._max_reason_length()
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_get_max_reason_length'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp._max_reason_length() IS
	'orderexp.max_reason_length, in bytes (calling it loads the library, so the GUC is defined)';

/* a reason orderexp records and sends: at most orderexp.max_reason_length bytes */
CREATE FUNCTION orderexp._check_reason(reason text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF octet_length(reason) > orderexp._max_reason_length() THEN
		RAISE EXCEPTION 'reason is too long'
			USING ERRCODE = 'string_data_right_truncation',
				  DETAIL = format('It has %s bytes; orderexp.max_reason_length is %s.',
								  octet_length(reason), orderexp._max_reason_length()),
				  HINT = 'A reason goes into the audit trail and to every receiver: keep it short.';
	END IF;
END;
$$;

CREATE FUNCTION orderexp._max_attempts()
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_get_max_attempts'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp._max_attempts() IS
	'value of orderexp.max_attempts';

CREATE FUNCTION orderexp._event_retention()
RETURNS interval
AS 'MODULE_PATHNAME', 'orderexp_get_event_retention'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp._event_retention() IS
	'value of orderexp.event_retention as an interval; NULL when delivered events are kept forever';

CREATE FUNCTION orderexp._max_lease()
RETURNS interval
AS 'MODULE_PATHNAME', 'orderexp_get_max_lease'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp._max_lease() IS
	'value of orderexp.max_lease as an interval: the longest lease claim() grants';

CREATE FUNCTION orderexp.assign_variant(order_key text, weights integer[], seed bigint)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_assign_variant'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION orderexp.assign_variant(text, integer[], bigint) IS
	'the variant (1-based) an order key falls into: hash of the key seeded with the experiment id, by weight';

/* ------------------------------------------------------------------------
 * Internal helpers
 * ------------------------------------------------------------------------ */

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

/*
 * A statement on a registered table, run as somebody it belongs to: the
 * gate's caller, or the table's owner (src/gate.c).  Every statement of a
 * body on the orders table goes through it.
 */
CREATE FUNCTION orderexp._orders_exec(orders regclass, as_owner boolean, sql text,
									  params text[])
RETURNS SETOF jsonb
AS 'MODULE_PATHNAME', 'orderexp_orders_exec'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp._orders_exec(regclass, boolean, text, text[]) IS
	'run a statement on a registered table as the gate''s caller (or, with as_owner, as the table''s owner, security-restricted); its rows as jsonb';

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
	/* the key type's input may be the table owner's code: as the caller */
	SELECT r ->> 'k' INTO k
	  FROM orderexp._orders_exec(cfg.order_table, false,
								 format('SELECT $1::%s::text AS k', cfg.key_type),
								 ARRAY[order_key]) r;
	RETURN k;
END;
$$;

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
 * Is an interval positive in every one of its fields (months, days, time),
 * and not zero?  Only then does it move every timestamp forward: the
 * comparison of intervals counts a month as 30 days, so '1 mon -30 days
 * 1 sec' compares as positive yet ends a 31 January order's deadline before
 * its creation, and '-1 mon 30 days 1 sec' moves a 31 March deadline back.
 */
CREATE FUNCTION orderexp._positive_interval(i interval)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m >= 0 AND d >= 0 AND s >= 0 AND (m > 0 OR d > 0 OR s > 0)
	  FROM (SELECT extract(year FROM i) * 12 + extract(month FROM i) AS m,
				   extract(day FROM i) AS d,
				   extract(hour FROM i) * 3600 + extract(minute FROM i) * 60
				   + extract(second FROM i) AS s) f
$$;

CREATE FUNCTION orderexp._iso_interval(i interval)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET intervalstyle = 'iso_8601'
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i::text
$$;

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

/*
 * What is wrong with the contact an order holds for a channel, or NULL if
 * nothing is: none at all; for channel email, not a plain ASCII
 * local@domain address (one @, no spaces or quotes, a dotted domain of
 * letters, digits and hyphens ending in a letter, at most 64 bytes before
 * the @ and 254 in all); for channel sms, not an E.164 number ("+", then 8
 * to 15 digits, the first not 0).  Other channels only need a contact.
 * Checked in the database, when a reminder is written: nothing is looked
 * up on the network.
 */
CREATE FUNCTION orderexp._contact_problem(channel text, contact text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN contact IS NULL OR btrim(contact) = '' THEN 'no contact'
		WHEN channel = 'email' THEN
			CASE WHEN octet_length(contact) > 254
					  OR octet_length(split_part(contact, '@', 1)) > 64
					  OR contact !~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$'
				 THEN 'malformed e-mail address' END
		WHEN channel = 'sms' THEN
			CASE WHEN contact !~ '^\+[1-9][0-9]{7,14}$'
				 THEN 'not an E.164 phone number' END
	END
$$;

/*
 * The expression the reminders' orders statement evaluates per order (as
 * the table's owner) for the customer's channels and contacts:
 * {"prefer": <the channels column>, "contacts": {<channel>: <column>::text,
 * ...}}; NULL when the table maps neither, so that its reminders are
 * written as before 1.3.
 */
CREATE FUNCTION orderexp._reach_expr(cfg orderexp.tables)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN cfg.channels_column IS NULL AND cardinality(cfg.contact_columns) = 0 THEN NULL
		ELSE format('jsonb_build_object(''prefer'', %s, ''contacts'', %s)',
					CASE WHEN cfg.channels_column IS NULL THEN 'NULL::text'
						 ELSE format('o.%I', cfg.channels_column) END,
					CASE WHEN cardinality(cfg.contact_columns) = 0 THEN '''{}''::jsonb'
						 ELSE 'jsonb_build_object(' ||
							  (SELECT string_agg(format('%L, o.%I::text', ch, col), ', ' ORDER BY n)
								 FROM unnest(cfg.contact_channels, cfg.contact_columns)
									  WITH ORDINALITY AS u(ch, col, n)) ||
							  ')' END)
	END
$$;

CREATE FUNCTION orderexp._order_cols(cfg orderexp.tables, k text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cols jsonb;
BEGIN
	SELECT r -> 'cols' INTO cols
	  FROM orderexp._orders_exec(cfg.order_table, false,
								 format('SELECT %s AS cols FROM %s o WHERE o.%I = $1::%s',
										orderexp._payload_expr(cfg), cfg.order_table,
										cfg.key_column, cfg.key_type),
								 ARRAY[k]) r;
	RETURN cols;
END;
$$;

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
	/* the orders' created-at read as the table's owner, the timers written as ours */
	UPDATE orderexp.timers t SET order_created = (r ->> 'created')::timestamptz
	  FROM orderexp._orders_exec(cfg.order_table, true,
			format('SELECT o.%I::text AS k, %s AS created FROM %s o WHERE o.%I = ANY ($1::%s[])',
				   cfg.key_column, orderexp._created_utc(cfg, format('o.%I', cfg.created_column)),
				   cfg.order_table, cfg.key_column, cfg.key_type),
			ARRAY[(SELECT coalesce(array_agg(x.order_key), '{}') FROM orderexp.timers x
					WHERE x.order_table = cfg.order_table AND x.order_created IS NULL)::text]) r
	 WHERE t.order_table = cfg.order_table AND t.order_created IS NULL
	   AND t.order_key = r ->> 'k';
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

/*
 * Lock one order: its row, then its timer.
 *
 * Every writer of a timer holds the order's row (the timer trigger runs in
 * the transaction that writes the row), so locking the row first makes the
 * timer visible and the order of locks the same everywhere.  The other way
 * round, under READ COMMITTED, an order committed between the two
 * statements (its row and timer are written by one transaction) would have
 * its row locked and changed while its timer, invisible to the first
 * statement, was not locked: two operations on such an order, or an
 * operation and an application setting the order back to unpaid (row, then
 * the timer trigger), could deadlock (the soak test found it in 1.0).  The
 * sweep takes both with SKIP LOCKED and never waits, so it deadlocks with
 * neither order.  An order with a plain deadline gets the timer row it
 * stands for here, under the lock of its row and the table's plain lock,
 * so that the caller has a timer to change and the sweep's plain batch
 * leaves the order to the timers (see _plain_batch_sql).
 *
 * Order rows are locked FOR NO KEY UPDATE, here and in the sweep's
 * statements (_orders_sql, _plain_orders_sql, _cancel_orders): orderexp
 * changes an order's status, never its key.  That conflicts with the
 * application's UPDATE of the status, a DELETE and a change of the key,
 * as FOR UPDATE does, but not with the FOR KEY SHARE of a foreign key
 * check: a row that references the order (a payment, an order item) can
 * be inserted while orderexp holds it (isolation spec fk_lock).
 */
CREATE FUNCTION orderexp._lock_order(cfg orderexp.tables, k text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st text;
	ord jsonb;
	created timestamptz;
	tm orderexp.timers;
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
		SELECT r INTO ord
		  FROM orderexp._orders_exec(cfg.order_table, false,
				format('SELECT o.%I::text AS st, %s FROM %s o WHERE o.%I = $1::%s AND o.%I = %s FOR NO KEY UPDATE',
					   cfg.status_column, orderexp._plain_cols(cfg), cfg.order_table,
					   cfg.key_column, cfg.key_type,
					   cfg.partition_column, orderexp._created_utc(cfg, '$2::timestamptz')),
				ARRAY[k, created::text]) r;
	END IF;
	IF ord IS NULL THEN
		SELECT r INTO ord
		  FROM orderexp._orders_exec(cfg.order_table, false,
				format('SELECT o.%I::text AS st, %s FROM %s o WHERE o.%I = $1::%s FOR NO KEY UPDATE',
					   cfg.status_column, orderexp._plain_cols(cfg), cfg.order_table,
					   cfg.key_column, cfg.key_type),
				ARRAY[k]) r;
	END IF;
	IF ord IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, cfg.order_table
			USING ERRCODE = 'no_data_found';
	END IF;
	st := ord ->> 'st';
	PERFORM 1 FROM orderexp.timers t
	 WHERE t.order_table = cfg.order_table AND t.order_key = k
	   FOR UPDATE;
	IF NOT FOUND THEN
		/* a plain deadline becomes a timer row, which the caller may change */
		tm := orderexp._plain_timer(cfg, k, ord);
		IF tm.order_table IS NOT NULL THEN
			PERFORM orderexp._plain_lock(cfg.order_table, false);
			INSERT INTO orderexp.timers SELECT tm.*
			ON CONFLICT (order_table, order_key) DO NOTHING;
			PERFORM 1 FROM orderexp.timers t
			 WHERE t.order_table = cfg.order_table AND t.order_key = k
			   FOR UPDATE;
		END IF;
	END IF;
	RETURN st;
END;
$$;
COMMENT ON FUNCTION orderexp._lock_order(orderexp.tables, text) IS
	'lock one order: its row, then its timer (written first for a plain deadline); the row''s status as text, P0002 if there is no such order';

/*
 * Insert timers for the unpaid rows of a table that have none yet, with
 * deadlines from their created-at column, the policy version and the
 * experiment variant, as the timer trigger arms them.  With only_category
 * set, limited to that category; with reschedule, also recompute deadlines
 * of tracked rows governed by the policies of that scope.  Orders with a
 * plain deadline need no row (and follow the policy by themselves).
 * Returns the number of rows inserted or rescheduled.
 */
CREATE FUNCTION orderexp._track_existing(cfg orderexp.tables, only_category text,
										 scope_all boolean, reschedule boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	scope text;
	rows_sql text;
BEGIN
	IF scope_all THEN
		scope := 'true';
	ELSIF only_category IS NULL THEN
		/* default policy: rows whose category has no policy of its own */
		scope := format('NOT EXISTS (SELECT 1 FROM orderexp.policies q WHERE q.order_table = %L::regclass AND q.category = o.category)',
						cfg.order_table::oid::text);
	ELSE
		scope := format('o.category = %L', only_category);
	END IF;

	/*
	 * The unpaid rows, read as the table's owner (their category's and
	 * created-at's casts may be the owner's code); the timers written as
	 * ours.
	 */
	rows_sql := format('SELECT o.%I::text AS k, o.%I::timestamptz AS created_at, %s AS order_created, %s AS category FROM %s o WHERE o.%I = %L::text::%s',
					   cfg.key_column, cfg.created_column,
					   orderexp._created_utc(cfg, format('o.%I', cfg.created_column)),
					   orderexp._category_expr(cfg),
					   cfg.order_table, cfg.status_column, cfg.unpaid_value,
					   orderexp._status_type(cfg));
	EXECUTE format($q$
		INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, remind_at,
										  policy_version, variant, order_created)
		SELECT %1$L::regclass, o.k, p.id, c.close_at, c.close_at - p.remind_before,
			   p.version, v.variant, o.order_created
		  FROM (SELECT r ->> 'k' AS k, (r ->> 'created_at')::timestamptz AS created_at,
					   (r ->> 'order_created')::timestamptz AS order_created,
					   r ->> 'category' AS category
				  FROM orderexp._orders_exec(%1$L::regclass, true, $1, NULL) r) o
		 CROSS JOIN LATERAL (
				SELECT p.id, p.close_after, p.remind_before, p.version, p.plain_since,
					   e.id AS experiment_id, e.variants, e.weights
				  FROM orderexp.policies p
				  LEFT JOIN orderexp.experiments e ON e.id = p.experiment_id
				 WHERE p.order_table = %1$L::regclass
				   AND (p.category = o.category OR p.category IS NULL)
				 ORDER BY p.category IS NULL
				 LIMIT 1) p
		 CROSS JOIN LATERAL (
				SELECT CASE WHEN p.experiment_id IS NOT NULL
							THEN orderexp.assign_variant(o.k, p.weights, p.experiment_id)
					   END AS variant) v
		 CROSS JOIN LATERAL (
				SELECT coalesce(o.created_at, now())
					   + coalesce(p.variants[v.variant], p.close_after) AS close_at) c
		 WHERE %2$s
		   AND NOT coalesce(o.created_at >= p.plain_since, false)
		ON CONFLICT (order_table, order_key) DO %3$s$q$,
		cfg.order_table::oid::text,
		scope,
		CASE WHEN reschedule
			 THEN 'UPDATE SET policy_id = excluded.policy_id, close_at = excluded.close_at, '
				  'remind_at = CASE WHEN excluded.close_at = t.reminded_for THEN NULL '
				  'ELSE excluded.remind_at END, '
				  'policy_version = excluded.policy_version, variant = excluded.variant, '
				  'order_created = excluded.order_created'
			 ELSE 'NOTHING' END)
		USING rows_sql;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
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
								  'orderexp_timer_moved', 'orderexp_timer_truncate',
								  'orderexp_outcome', 'orderexp_status',
								  'orderexp_timer_delete')
	LOOP
		EXECUTE format('DROP TRIGGER %I ON %s', tg, orders);
	END LOOP;
END;
$$;

/*
 * (Re)create the triggers that keep timers and outcomes in step with a
 * registered table.  The timer and the status triggers have no WHEN
 * clause: PostgreSQL parses a trigger's WHEN clause anew for every
 * statement, which on the application's one-row INSERT and payment UPDATE
 * cost more than orderexp's work itself.  They take the status column and
 * the unpaid value as arguments instead, and orderexp_timer_trigger and
 * orderexp_outcome_trigger test the status in C.  One trigger on the
 * status does both of its jobs (1.3; 1.2 had two, orderexp_timer_unpaid and
 * orderexp_outcome): PostgreSQL queues and fires every AFTER row trigger
 * for every row an update changes, the sweep's closes and the
 * application's payments alike.  orderexp_timer_moved keeps its WHEN
 * clause: it fires only when created-at changes, which is rare, and the
 * clause tests that too.  A table with plain deadlines on a created-at that
 * is NOT NULL has no timer trigger on INSERT, and one on DELETE instead
 * (_needs_insert_trigger).
 *
 * None of the row triggers takes arguments (1.3): PostgreSQL copies a
 * table's triggers with their arguments into every statement that writes
 * the table, the application's INSERT and payment included, at some 230
 * instructions an argument.  The trigger functions read the table's
 * columns and values from orderexp.tables instead, through a cache in each
 * backend that a change of orderexp.tables resets (tables_changed).
 */
CREATE FUNCTION orderexp._install_triggers(cfg orderexp.tables)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM orderexp._drop_triggers(cfg.order_table);

	IF orderexp._needs_insert_trigger(cfg) THEN
		/* a new unpaid order starts its timer */
		EXECUTE format('CREATE TRIGGER orderexp_timer_insert AFTER INSERT ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION orderexp.timer_trigger()',
					   cfg.order_table);
	ELSE
		/*
		 * plain deadlines: a new order has its plain deadline, and a
		 * deleted one's lingering timer row goes (orderexp_delete_trigger),
		 * so that a new order of its key does not inherit it
		 */
		EXECUTE format('CREATE TRIGGER orderexp_timer_delete AFTER DELETE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION orderexp.delete_trigger()',
					   cfg.order_table);
	END IF;

	/* partitioned by created-at: an unpaid order whose created-at changes */
	IF cfg.partition_column IS NOT NULL THEN
		EXECUTE format('CREATE TRIGGER orderexp_timer_moved AFTER UPDATE OF %I ON %s '
					   'FOR EACH ROW WHEN (NEW.%I = %L AND OLD.%I = %L AND OLD.%I IS DISTINCT FROM NEW.%I) '
					   'EXECUTE FUNCTION orderexp.timer_trigger()',
					   cfg.created_column, cfg.order_table,
					   cfg.status_column, cfg.unpaid_value,
					   cfg.status_column, cfg.unpaid_value,
					   cfg.created_column, cfg.created_column);
	END IF;

	/*
	 * an order leaving the unpaid state has an outcome; one set back to
	 * unpaid outside orderexp is tracked again
	 */
	EXECUTE format('CREATE TRIGGER orderexp_status AFTER UPDATE OF %I ON %s '
				   'FOR EACH ROW EXECUTE FUNCTION orderexp.outcome_trigger()',
				   cfg.status_column, cfg.order_table);

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

/*
 * One change orderexp made to an order, written once (1.3): an event per
 * channel of the table (a table has at least one), the first of which is
 * also the change's record (via, actor, reason, the policy and variant of
 * the order's timer tm, the deadlines, and the ids of all the change's
 * events when there are more than one).  And a NOTIFY.  The ids are drawn
 * first, so that the record can name its events.
 */
CREATE FUNCTION orderexp._record_change(cfg orderexp.tables, kind text, k text, payload jsonb,
										via text, actor name, reason text, tm orderexp.timers,
										deadline timestamptz, previous_deadline timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ids bigint[] := ARRAY(SELECT nextval('orderexp.outbox_id_seq') FROM unnest(cfg.channels));
BEGIN
	INSERT INTO orderexp.outbox (id, kind, order_table, order_key, channel, payload, via,
								 actor, reason, policy_id, policy_version, variant, deadline,
								 previous_deadline, event_ids, part)
	SELECT ids[ch.n], kind, cfg.order_table, k, ch.channel, payload,
		   CASE WHEN ch.n = 1 THEN via END, CASE WHEN ch.n = 1 THEN actor END,
		   CASE WHEN ch.n = 1 THEN reason END, CASE WHEN ch.n = 1 THEN tm.policy_id END,
		   CASE WHEN ch.n = 1 THEN tm.policy_version END, CASE WHEN ch.n = 1 THEN tm.variant END,
		   CASE WHEN ch.n = 1 THEN deadline END, CASE WHEN ch.n = 1 THEN previous_deadline END,
		   CASE WHEN ch.n = 1 AND cardinality(ids) > 1 THEN ids END,
		   CASE WHEN ch.n = 1 THEN 0 ELSE orderexp._outbox_part() END
	  FROM unnest(cfg.channels) WITH ORDINALITY AS ch(channel, n);
	/* no table name: every role that may LISTEN hears it (1.3) */
	PERFORM pg_notify('orderexp', json_build_object('kind', kind, 'count', 1)::text);
END;
$$;

/* ------------------------------------------------------------------------
 * The sweep's statements
 *
 * A batch of the worker or of run_due() is three statements in the
 * caller's subtransaction (src/sweep.c, run_batch): take (as the extension
 * owner: the due timers, SKIP LOCKED), orders (as the table's owner under
 * SECURITY_RESTRICTED_OPERATION: the rows, SKIP LOCKED, closed with the
 * guarded update or read for reminders) and record (as the extension
 * owner: timers, events, audit rows, outcomes).  Only the orders statement
 * touches the orders table, so the table's triggers, constraints, index
 * expressions and casts run as its owner, never as the extension owner.
 * ------------------------------------------------------------------------ */

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
 * The category of an order as text, an expression of its row "o" in a
 * statement on the orders table: NULL::text for a table without a category
 * column.  (_track_existing, _closed_cols_sql, _orders_sql, _plain_pending,
 * _pending_json.)
 */
CREATE FUNCTION orderexp._category_expr(cfg orderexp.tables)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN cfg.category_column IS NULL THEN 'NULL::text'
				ELSE format('o.%I::text', cfg.category_column) END
$$;

/*
 * The columns an orders statement (_orders_sql, _plain_orders_sql) reads
 * of each row it locks, as "o": the key as text (order_key), the key as it
 * is (raw_key, which the count of busy keys sorts: text keys in the "C"
 * collation, so that it sorts cheaply) and whether the order is unpaid.
 */
CREATE FUNCTION orderexp._locked_cols_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format('o.%1$I::text AS order_key, o.%1$I%2$s AS raw_key, (o.%3$I IS NOT DISTINCT FROM %4$L::%5$s) AS unpaid',
				  cfg.key_column,
				  CASE WHEN cfg.key_type IN ('text'::regtype, 'character varying'::regtype)
					   THEN ' COLLATE "C"' ELSE '' END,
				  cfg.status_column, cfg.unpaid_value, orderexp._status_type(cfg))
$$;

/*
 * What the update of an orders statement returns of each row it closed,
 * as "o": key, unpaid (true), the payload columns ("payload", an
 * expression of o), category and created-at, as _orders_result_sql reads
 * them.
 */
CREATE FUNCTION orderexp._closed_cols_sql(cfg orderexp.tables, payload text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format('o.%1$I::text AS order_key, true AS unpaid, %2$s AS cols, %3$s AS category,
			  o.%4$I::timestamptz AS created_at',
				  cfg.key_column, payload, orderexp._category_expr(cfg), cfg.created_column)
$$;

/*
 * The CTEs "missing" and "busy" of an orders statement (_orders_sql,
 * _plain_orders_sql), after its "mine": the keys of $1 that mine lacks,
 * and those of them whose row exists, locked by someone else.  See
 * _orders_sql.  locked_keys is an expression of how many of $1's keys mine
 * holds: when it is less than $1 has, mine lacks one.
 */
CREATE FUNCTION orderexp._busy_keys_sql(cfg orderexp.tables, locked_keys text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
missing AS MATERIALIZED (
	SELECT x.order_key
	  FROM (SELECT k AS order_key FROM unnest($1::text[]) AS k
			EXCEPT
			SELECT m.order_key FROM mine m) AS x
	 WHERE %4$s < cardinality($1::text[])),
busy AS MATERIALIZED (
	SELECT x.order_key
	  FROM missing x
	 WHERE (SELECT true FROM %1$s o WHERE o.%2$I = x.order_key::%3$s LIMIT 1)),$q$,
				  cfg.order_table, cfg.key_column, cfg.key_type, locked_keys)
$$;

/* the same, with mine's distinct keys counted (see _orders_sql) */
CREATE FUNCTION orderexp._busy_keys_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT orderexp._busy_keys_sql(cfg, '(SELECT count(DISTINCT m.raw_key) FROM mine m)')
$$;

/*
 * The statement on the orders table, run as its owner: $1 the keys the take
 * statement locked, ($2, $3) the range of their created-at.  "mine" are the
 * rows it could lock (SKIP LOCKED: an application holds the others), "busy"
 * the keys whose row exists but was locked: looked up in the whole table
 * (an order whose created-at moved is not taken for gone), one correlated
 * probe per key that mine lacks, so that a batch whose rows were all locked
 * reads no other partition.  Which keys mine lacks is an EXCEPT, hashed or
 * sorted whatever the estimates: the plan is generic, and an anti-join of
 * two sets it takes for a few rows each could be a nested loop.  It runs
 * only when mine lacks a key, which a batch whose orders nobody holds
 * does not: mine then has as many distinct keys as $1 has elements (the
 * count is of the keys as they are, not as text, so that it sorts cheaply;
 * text keys in the "C" collation), and the EXCEPT that hashed both sets for
 * every batch is skipped (about 2,600 instructions a close,
 * bench/instructions.sh).  A count of mine's rows would not do: the key of
 * a partitioned table, or of one with inheritance children, need not be
 * unique, and two rows of one key would hide a key that is busy.
 *
 * For the close batch (lock 'UPDATE') the unpaid rows of mine are closed
 * with the guarded update and returned; for reminders (lock 'SHARE') mine
 * is returned as it is.  Every
 * result column is an array: busy keys, then keys, unpaid, payloads,
 * categories and created-ats of the rows returned, aligned; the reminders
 * of a table that maps the customer's channels or contacts add a seventh,
 * those (_reach_expr), which the record statement gets as $9.  Nothing of
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
	category text := orderexp._category_expr(cfg);
	reach text := orderexp._reach_expr(cfg);
	sql text;
BEGIN
	sql := format($q$
WITH mine AS MATERIALIZED (
	SELECT %3$s%5$s
	  FROM %1$s o
	 WHERE o.%2$I = ANY (ARRAY(SELECT unnest($1::text[])::%4$s))%6$s
	   FOR %7$s OF o SKIP LOCKED),$q$,
		cfg.order_table, cfg.key_column, orderexp._locked_cols_sql(cfg), cfg.key_type,
		CASE lock WHEN 'SHARE'
			 THEN format(', %s AS cols, %s AS category', orderexp._payload_expr(cfg), category)
				  || CASE WHEN reach IS NOT NULL THEN format(', %s AS reach', reach) ELSE '' END
			 ELSE '' END,
		range,
		CASE lock WHEN 'UPDATE' THEN 'NO KEY UPDATE' WHEN 'SHARE' THEN 'SHARE' END)
		|| orderexp._busy_keys_sql(cfg);

	IF lock = 'SHARE' AND reach IS NULL THEN
		RETURN sql || $q$
rows AS (
	SELECT m.order_key, m.unpaid, m.cols, m.category, NULL::timestamptz AS created_at
	  FROM mine m)$q$ || orderexp._orders_result_sql();
	END IF;
	IF lock = 'SHARE' THEN
		/* and a seventh array: the customer's channels and contacts */
		RETURN sql || $q$
rows AS (
	SELECT m.order_key, m.unpaid, m.cols, m.category, NULL::timestamptz AS created_at, m.reach
	  FROM mine m)
SELECT ARRAY(SELECT b.order_key FROM busy b), r.keys, r.unpaid, r.cols, r.categories,
	   r.created, r.reach
  FROM (SELECT array_agg(x.order_key) AS keys, array_agg(x.unpaid) AS unpaid,
			   array_agg(x.cols) AS cols, array_agg(x.category) AS categories,
			   array_agg(x.created_at) AS created, array_agg(x.reach) AS reach
		  FROM rows x) AS r$q$;
	END IF;

	RETURN sql || format($q$
rows AS (
	UPDATE %1$s o SET %3$I = %7$L::%5$s
	 WHERE o.%2$I = ANY (ARRAY(SELECT m.order_key::%6$s FROM mine m WHERE m.unpaid))
	   AND o.%3$I = %4$L::%5$s%8$s
	RETURNING %9$s)$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, cfg.closed_value, range,
		orderexp._closed_cols_sql(cfg, orderexp._payload_expr(cfg)))
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
 * The channels of one order's reminder, from what the orders statement read
 * (reach, see _reach_expr), in order: each with its contact (for the
 * channels in contact_channels), what is wrong with it, and its role:
 * 'send' (a reminder goes out on it), 'fallback' (kept in the reminder, in
 * case the channel before fails) or 'unreachable' (a missing or malformed
 * contact: no reminder on it).  The customer's channels are a JSON array
 * (a text[] column) or a comma-separated string; those the table does not
 * offer are left out.  A customer who chose some gets one reminder, on the
 * first of them with a good contact, and the rest are its fallbacks, which
 * the 'send' row carries as a JSON array of {channel, contact}; one who
 * chose none (or none the table offers) gets a reminder on every channel
 * of the table with a good contact, as before 1.3.  When no channel is
 * left, a last row with channel NULL and role 'none' says why.
 */
CREATE FUNCTION orderexp._reminder_channels(channels text[], contact_channels text[],
											reach jsonb)
RETURNS TABLE (channel text, contact text, problem text, role text, fallback jsonb)
LANGUAGE plpgsql IMMUTABLE ROWS 3
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	prefer jsonb := reach -> 'prefer';
	chosen text[];
	list text[];
	contacts text[] := '{}';
	problems text[] := '{}';
	first integer;
	i integer;
BEGIN
	SELECT array_agg(p.c ORDER BY p.first) INTO chosen
	  FROM (SELECT btrim(u.x) AS c, min(u.n) AS first
			  FROM unnest(CASE jsonb_typeof(prefer)
							  WHEN 'array' THEN ARRAY(SELECT jsonb_array_elements_text(prefer))
							  WHEN 'string' THEN string_to_array(prefer #>> '{}', ',')
						  END) WITH ORDINALITY AS u(x, n)
			 WHERE btrim(u.x) = ANY (channels)
			 GROUP BY btrim(u.x)) p;
	list := coalesce(chosen, channels);

	/* each channel's contact and what is wrong with it */
	FOR i IN 1 .. cardinality(list) LOOP
		contacts[i] := NULL;
		problems[i] := NULL;
		IF list[i] = ANY (contact_channels) THEN
			contacts[i] := reach -> 'contacts' ->> list[i];
			problems[i] := orderexp._contact_problem(list[i], contacts[i]);
		END IF;
		IF first IS NULL AND problems[i] IS NULL THEN
			first := i;
		END IF;
	END LOOP;

	FOR i IN 1 .. cardinality(list) LOOP
		channel := list[i];
		contact := contacts[i];
		problem := problems[i];
		fallback := NULL;
		IF problem IS NOT NULL THEN
			role := 'unreachable';
		ELSIF chosen IS NULL OR i = first THEN
			role := 'send';
			fallback := '[]';
			IF chosen IS NOT NULL THEN
				SELECT coalesce(jsonb_agg(jsonb_build_object('channel', list[j],
															 'contact', contacts[j]) ORDER BY j),
								'[]')
				  INTO fallback
				  FROM generate_series(i + 1, cardinality(list)) AS j
				 WHERE problems[j] IS NULL;
			END IF;
		ELSE
			role := 'fallback';
		END IF;
		RETURN NEXT;
	END LOOP;
	IF first IS NULL THEN
		channel := NULL;
		contact := NULL;
		problem := 'no channel left (' ||
			(SELECT string_agg(format('%s: %s', list[j], problems[j]), '; ' ORDER BY j)
			   FROM generate_series(1, cardinality(list)) AS j) || ')';
		role := 'none';
		fallback := NULL;
		RETURN NEXT;
	END IF;
END;
$$;

/*
 * The ids of each close's events, drawn before they are written when there
 * are several, so that the record (the first) names them all: the
 * expression of the "done" rows' event_ids (_record_closes_sql)
 */
CREATE FUNCTION orderexp._close_event_ids_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN cardinality(cfg.channels) <= 1 THEN 'NULL::bigint[]'
				ELSE format('ARRAY[%s]',
							array_to_string(array_fill('nextval(''orderexp.outbox_id_seq'')'::text,
													   ARRAY[cardinality(cfg.channels)]), ', ')) END
$$;

/*
 * The end of both record statements of a close (_record_close_sql for
 * timers, _record_plain_close_sql for plain deadlines), after their "done"
 * rows (order_key, cols, category, close_at, policy_id, policy_version,
 * variant, reopened, event_ids): the closed events, the first of each
 * close its record, and the outcomes counted, one row per policy version,
 * variant and reopened.  With plain deadlines (plain, their policy) every
 * close of a batch has the same, and its outcome row is counted without
 * grouping; as the done rows are then the closed rows' arrays unnested,
 * one per key ($4), the outcome and the result count that array instead
 * of the rows, and done, read once, is not materialized (about 4,000
 * instructions a close, bench/instructions.sh).
 */
CREATE FUNCTION orderexp._record_closes_sql(cfg orderexp.tables, plain orderexp.policies)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
events AS (
	INSERT INTO orderexp.outbox (id, kind, order_table, order_key, channel, payload, via,
								 policy_id, policy_version, variant, deadline, event_ids, part)
	SELECT %4$s, 'closed', $1, x.order_key, ch.channel,
		   orderexp._closed_payload(%1$L, x.order_key, x.close_at, x.policy_id,
									x.category, x.cols),
		   CASE WHEN ch.n = 1 THEN 'timeout' END,
		   CASE WHEN ch.n = 1 THEN x.policy_id END, CASE WHEN ch.n = 1 THEN x.policy_version END,
		   CASE WHEN ch.n = 1 THEN x.variant END, CASE WHEN ch.n = 1 THEN x.close_at END,
		   %5$s, CASE WHEN ch.n = 1 THEN 0 ELSE orderexp._outbox_part() END
	  FROM done x
	 CROSS JOIN unnest(%2$L::text[]) WITH ORDINALITY AS ch(channel, n)),
outcome AS (
	INSERT INTO orderexp.outcomes (order_table, outcome, status, policy_id, policy_version,
								   variant, decided_at, reopened, order_count)
	%6$s)
SELECT %7$s$q$,
		cfg.order_table::text, cfg.channels, cfg.closed_value,
		/* each event's id and the record's event_ids */
		CASE WHEN cardinality(cfg.channels) <= 1 THEN 'nextval(''orderexp.outbox_id_seq'')'
			 ELSE 'x.event_ids[ch.n]' END,
		CASE WHEN cardinality(cfg.channels) > 1 THEN 'CASE WHEN ch.n = 1 THEN x.event_ids END'
			 ELSE 'NULL::bigint[]' END,
		CASE WHEN plain.id IS NULL
			 THEN format($q$SELECT $1, 'closed', %1$L, x.policy_id, x.policy_version, x.variant, now(), x.reopened,
		   count(*)
	  FROM done x
	 GROUP BY x.policy_id, x.policy_version, x.variant, x.reopened$q$, cfg.closed_value)
			 ELSE format($q$SELECT $1, 'closed', %1$L, %2$s, %3$s, NULL, now(), false, cardinality($4)
	 WHERE cardinality($4) > 0$q$, cfg.closed_value, plain.id, plain.version) END,
		CASE WHEN plain.id IS NULL THEN 'count(*) FROM done'
			 ELSE 'coalesce(cardinality($4), 0)::bigint' END)
$$;

/*
 * The statement that records a close batch, as the extension owner: $1 the
 * table, $2 the tuple ids of the timers taken, $3 the busy keys, $4 to $8
 * the closed rows as the orders statement returned them.  Drops the timers
 * of every taken order that was not busy (closed, paid or gone), and writes
 * the closed orders' events (the first of each close also its record, see
 * the outbox) and their outcomes, counted: one row per policy version,
 * variant and reopened, whatever the number of orders (the created-ats, $8,
 * are not needed since).  The take statement locked the timers in this
 * transaction, so nobody else can have changed them: they are deleted by
 * tuple id, as 1.2's batch deleted them, and read by their primary key,
 * one index probe per closed order.  No step joins two sets of the batch
 * to each other: the statement's plan is generic (planned once, src/batch.c)
 * and cannot know the arrays' lengths; it took them for a few rows and
 * could join two of them with a nested loop, a thousand comparisons per
 * closed order of a full batch.  (Planning every batch with its arrays
 * costs more than that: the planner estimates ctid = ANY (array) element
 * by element.)  With more than one channel the events' ids are drawn
 * first, so that the record knows them without joining the events to each
 * other.  The arrays are unnested in a select list (a ProjectSet), as are
 * those of the orders statements and of the reminders' record, not as
 * functions in FROM: PostgreSQL materializes a function in FROM into a
 * tuplestore before the first row, one tuple for each value of each
 * array (about 5,400 instructions a close of the plain batch, which passes
 * four arrays here and two, twice, to its orders statement:
 * bench/instructions.md).
 */
CREATE FUNCTION orderexp._record_close_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
WITH gone AS (
	DELETE FROM orderexp.timers t
	 WHERE t.ctid = ANY ($2) AND t.order_table = $1
	   AND t.order_key <> ALL (coalesce($3, '{}'))),
done AS MATERIALIZED (
	SELECT c.order_key, c.cols, c.category, d.close_at, d.policy_id, d.policy_version,
		   d.variant, d.reopened, %1$s AS event_ids
	  FROM (SELECT unnest($4) AS order_key, unnest($6) AS cols, unnest($7) AS category) AS c
	 CROSS JOIN LATERAL (
			SELECT t.close_at, t.policy_id, t.policy_version, t.variant, t.reopened
			  FROM orderexp.timers t
			 WHERE t.order_table = $1 AND t.order_key = c.order_key) d),$q$,
		orderexp._close_event_ids_sql(cfg))
		|| orderexp._record_closes_sql(cfg, NULL)
$$;

/*
 * The statement that records a reminder batch, as the extension owner: the
 * arguments as for _record_close_sql, the rows being the orders
 * statement's "mine".  Clears the reminder of every taken order that was
 * not busy (by tuple id), and writes a reminder (with its extension token)
 * per channel for each order still unpaid before its deadline, as the
 * batch of 1.2 did.  Like the close's, it joins no two sets of the batch:
 * each order's timer is read by its primary key.
 *
 * A table that maps the customer's channels or contacts gets the second
 * form: $9 holds what the orders statement read of them, and
 * _reminder_channels picks each order's channels.  A reminder carries the
 * contact of its channel and the order's fallbacks (channel and contact,
 * in order: what fail() needs to send the next one without reading the
 * orders table); a channel whose contact is missing or malformed gets no
 * reminder but a row in unreachable_contacts (channel '' when none was
 * left), and a reminder sent on a channel clears its order's rows there.
 */
CREATE FUNCTION orderexp._record_remind_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
WITH done AS (
	UPDATE orderexp.timers t
	   SET remind_at = NULL,
		   /* no reminder goes out once the deadline has passed */
		   reminded_for = CASE WHEN t.close_at > now() THEN t.close_at ELSE t.reminded_for END
	 WHERE t.ctid = ANY ($2) AND t.order_table = $1
	   AND t.order_key <> ALL (coalesce($3, '{}'))),
reminded AS MATERIALIZED (
	SELECT m.order_key, m.cols, m.category, d.*
	  FROM (SELECT unnest($4) AS order_key, unnest($5) AS unpaid, unnest($6) AS cols,
				   unnest($7) AS category) AS m
	 CROSS JOIN LATERAL (
			SELECT t.close_at, t.remind_at, t.policy_id, t.extensions, t.token_extensions,
				   t.generation, p.extend_by,
				   greatest(p.max_extensions - t.token_extensions, 0) AS extensions_left
			  FROM orderexp.timers t
			  JOIN orderexp.policies p ON p.id = t.policy_id
			 WHERE t.order_table = $1 AND t.order_key = m.order_key) d
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
	 WHERE orderexp._reach_expr(cfg) IS NULL
	UNION ALL
	SELECT format($q$
WITH done AS (
	UPDATE orderexp.timers t
	   SET remind_at = NULL,
		   /* no reminder goes out once the deadline has passed */
		   reminded_for = CASE WHEN t.close_at > now() THEN t.close_at ELSE t.reminded_for END
	 WHERE t.ctid = ANY ($2) AND t.order_table = $1
	   AND t.order_key <> ALL (coalesce($3, '{}'))),
reminded AS MATERIALIZED (
	SELECT m.order_key, m.cols, m.category, m.reach, d.*
	  FROM (SELECT unnest($4) AS order_key, unnest($5) AS unpaid, unnest($6) AS cols,
				   unnest($7) AS category, unnest($9) AS reach) AS m
	 CROSS JOIN LATERAL (
			SELECT t.close_at, t.remind_at, t.policy_id, t.extensions, t.token_extensions,
				   t.generation, p.extend_by,
				   greatest(p.max_extensions - t.token_extensions, 0) AS extensions_left
			  FROM orderexp.timers t
			  JOIN orderexp.policies p ON p.id = t.policy_id
			 WHERE t.order_table = $1 AND t.order_key = m.order_key) d
	 WHERE m.unpaid AND d.close_at > now()),
ways AS MATERIALIZED (
	SELECT r.*, w.channel, w.contact, w.problem, w.role, w.fallback
	  FROM reminded r
	 CROSS JOIN LATERAL orderexp._reminder_channels(%2$L::text[], %3$L::text[], r.reach) w),
events AS (
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
	SELECT 'reminder', $1, r.order_key, r.channel,
		   jsonb_build_object('order_table', %1$L, 'order_key', r.order_key,
							  'close_at', r.close_at, 'remind_at', r.remind_at,
							  'policy_id', r.policy_id, 'category', r.category,
							  'extend_by', orderexp._iso_interval(r.extend_by), 'extensions_left', r.extensions_left,
							  'extension_token', tok.token,
							  'order', r.cols,
							  'contact', r.contact, 'fallback', r.fallback)
	  FROM ways r
	 CROSS JOIN LATERAL (
			SELECT CASE WHEN r.extend_by IS NOT NULL AND r.extensions_left > 0
							 AND octet_length(r.order_key) <= 1024	/* longer keys fit no token */
						THEN orderexp._token_make($1, r.order_key, r.close_at, r.extensions,
												  r.generation)
				   END AS token) tok
	 WHERE r.role = 'send'),
unreached AS (
	INSERT INTO orderexp.unreachable_contacts AS u (order_table, order_key, channel, contact, why)
	SELECT $1, w.order_key, coalesce(w.channel, ''), w.contact, w.problem
	  FROM ways w
	 WHERE w.role IN ('unreachable', 'none')
	ON CONFLICT (order_table, order_key, channel)
	DO UPDATE SET contact = excluded.contact, why = excluded.why),
reached AS (
	DELETE FROM orderexp.unreachable_contacts u
	 USING ways w
	 WHERE u.order_table = $1 AND u.order_key = w.order_key AND w.role = 'send'
	   AND u.channel IN (w.channel, ''))
SELECT count(*) FROM reminded$q$,
		cfg.order_table::text, cfg.channels, cfg.contact_channels)
	 WHERE orderexp._reach_expr(cfg) IS NOT NULL
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

/* ------------------------------------------------------------------------
 * Plain deadlines (1.3): orders due at their created-at plus close_after
 * need no timer row
 *
 * A table whose default policy has plain_since set (set_plain_deadlines())
 * keeps no timer row for an unpaid order created since then: its deadline
 * is its created-at plus the policy's close_after, and the sweep finds the
 * due ones through an index of the orders table on the created-at column
 * WHERE the status is unpaid, the index a pg_cron job closing orders would
 * use (_plain_batch_sql).  Such an order gets a timer row only when
 * something is to change it: cancel, extend or reopen lock the order and
 * write the row its plain deadline stands for (_lock_order, _plain_timer);
 * a change of the policy that leaves existing deadlines alone, or the end
 * of plain deadlines, writes the rows of all of them first
 * (_materialize_plain).  A timer row, where there is one, always wins: the
 * sweep leaves an order with one to the timers' batches.  The rule is:
 * an unpaid order with a created-at and without a timer row has a plain
 * deadline, whenever it was created (every unpaid order older than plain
 * deadlines has a row, written at registration or by the timer trigger,
 * unless it was inserted since, an import, which is then due at its
 * created-at plus close_after, as its row would have said).  An order
 * without a created-at gets a timer row from its insert's time: where the
 * created-at column is NOT NULL, the table needs no timer trigger on
 * INSERT at all, and has none (_needs_insert_trigger); a trigger on
 * DELETE drops the timer row a deleted order leaves instead.
 *
 * Plain deadlines need a deadline that is the same for every order of the
 * table: the default policy, no policy per category, no experiment, and no
 * reminders (a reminder is remembered in the timer row).  _check_plain()
 * keeps it so, from the trigger on orderexp.policies.
 * ------------------------------------------------------------------------ */

/*
 * The plain lock of a table (src/batch.c), for the transaction: shared to
 * write the timer row of one order with a plain deadline, exclusive to
 * write those of all of them; the sweep's plain batch takes it exclusively
 * or not at all, so that it never closes an order whose timer row was
 * written after it looked.
 */
CREATE FUNCTION orderexp._plain_lock(orders regclass, exclusive boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'orderexp_plain_lock'
LANGUAGE C STRICT VOLATILE;

/*
 * Is (t, k) one of the pairs (tids[i], keys[i])?  The plain orders
 * statement (_plain_orders_sql) checks with it that the row it locks at a
 * tuple id still has the key the take read there; the pairs are sorted once
 * an execution (src/batch.c).  Executed by the tables' owners.
 */
CREATE FUNCTION orderexp._tid_holds_key(t tid, k text, tids tid[], keys text[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'orderexp_tid_holds_key'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orderexp._tid_holds_key(tid, text, tid[], text[]) IS
	'is (t, k) one of the pairs (tids[i], keys[i])? the plain orders statement''s check of the rows it locks by tuple id';

CREATE FUNCTION orderexp._check_plain(p orderexp.policies)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF p.plain_since IS NOT NULL THEN
		IF p.category IS NOT NULL THEN
			RAISE EXCEPTION 'only the default close policy of a table can have plain deadlines'
				USING ERRCODE = 'object_not_in_prerequisite_state';
		END IF;
		IF p.remind_before IS NOT NULL THEN
			RAISE EXCEPTION 'table % has plain deadlines: its close policy cannot send reminders', p.order_table
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'An order with a plain deadline has no timer row to remember its reminder by.',
					  HINT = format('Turn plain deadlines off first: SELECT orderexp.set_plain_deadlines(%L, false);',
									p.order_table::text);
		END IF;
		IF p.experiment_id IS NOT NULL THEN
			RAISE EXCEPTION 'table % has plain deadlines: its close policy cannot run an experiment', p.order_table
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'Each variant of an experiment gives its orders a deadline of its own.',
					  HINT = format('Turn plain deadlines off first: SELECT orderexp.set_plain_deadlines(%L, false);',
									p.order_table::text);
		END IF;
	ELSIF p.category IS NOT NULL
		  AND EXISTS (SELECT 1 FROM orderexp.policies d
					   WHERE d.order_table = p.order_table AND d.category IS NULL
						 AND d.plain_since IS NOT NULL) THEN
		RAISE EXCEPTION 'table % has plain deadlines: it cannot have a close policy per category', p.order_table
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Plain deadlines find due orders by their created-at alone.',
				  HINT = format('Turn plain deadlines off first: SELECT orderexp.set_plain_deadlines(%L, false);',
								p.order_table::text);
	END IF;
END;
$$;

/*
 * The policy that gives a table its plain deadlines: its default policy if
 * plain_since is set, else a row of NULLs
 */
CREATE FUNCTION orderexp._plain_policy(orders regclass)
RETURNS orderexp.policies
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT p.* FROM orderexp.policies p
	 WHERE p.order_table = orders AND p.category IS NULL AND p.plain_since IS NOT NULL
$$;

/*
 * Does a registered table need the timer trigger on INSERT?  Not with plain
 * deadlines on a created-at column that is NOT NULL: every new unpaid order
 * has its plain deadline then, and the trigger would do no more than probe
 * orderexp.timers for a row its key left, which the trigger on DELETE
 * drops instead (orderexp_delete_trigger); the probe and the trigger's
 * firing are about 3 % of the application's insert-and-pay transaction
 * (bench/instructions.md).  An order without a created-at needs a timer row
 * from its insert's time: a created-at that may be NULL keeps the trigger.
 */
CREATE FUNCTION orderexp._needs_insert_trigger(cfg orderexp.tables)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT NOT ((orderexp._plain_policy(cfg.order_table)).id IS NOT NULL
				AND EXISTS (SELECT 1 FROM pg_attribute a
							 WHERE a.attrelid = cfg.order_table AND a.attname = cfg.created_column
							   AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull))
$$;

/*
 * Make a table's triggers anew if it has the trigger on INSERT where
 * _needs_insert_trigger says it needs none, or the one on DELETE where it
 * needs the other: after plain deadlines were turned on or off, and after
 * an ALTER TABLE that set or dropped the created-at column's NOT NULL
 * (_on_alter_table; DROP NOT NULL takes the table's ACCESS EXCLUSIVE lock,
 * so no order without a created-at is inserted before the trigger is
 * back).  A table with neither is left alone: pg_restore runs its ALTER
 * TABLEs before it creates the dump's triggers.
 */
CREATE FUNCTION orderexp._sync_triggers(cfg orderexp.tables)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_trigger t
				WHERE t.tgrelid = cfg.order_table AND NOT t.tgisinternal
				  AND t.tgname = CASE WHEN orderexp._needs_insert_trigger(cfg)
									  THEN 'orderexp_timer_delete'
									  ELSE 'orderexp_timer_insert' END) THEN
		PERFORM orderexp._install_triggers(cfg);
	END IF;
END;
$$;

/*
 * For orderexp_delete_trigger (src/timer.c), which found a timer row for
 * the key of a deleted order: has the table still an order of that key (a
 * row a cross-partition UPDATE moved, a key that inheritance children hold
 * twice)?  Looked up as the table's owner, security-restricted (the key
 * type's input and equality may be the owner's code).
 */
CREATE FUNCTION orderexp._order_key_exists(orders regclass, k text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables := orderexp._config(orders);
BEGIN
	RETURN EXISTS (SELECT 1
					 FROM orderexp._orders_exec(orders, true,
							format('SELECT true AS found FROM %s o WHERE o.%I = $1::%s LIMIT 1',
								   orders, cfg.key_column, cfg.key_type),
							ARRAY[k]));
END;
$$;

/*
 * What a plain deadline needs of an order, as select-list items of a
 * statement on the orders table (alias o): its created-at as timestamptz
 * ("created", a timestamp read in the session's time zone, as the timer
 * trigger reads it), as stored ("stored", see _created_utc) and the
 * generation of its timer ("gen": minus the created-at's microseconds
 * since 1970 as stored, whatever the time zone, so that a token made
 * before the timer row is written stays valid after, and an order made
 * again under the same key gets another).
 */
CREATE FUNCTION orderexp._plain_cols(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format('o.%1$I::timestamptz AS created, %2$s AS stored, '
				  '-(extract(epoch FROM o.%1$I) * 1000000)::bigint AS gen',
				  cfg.created_column,
				  orderexp._created_utc(cfg, format('o.%I', cfg.created_column)))
$$;

/*
 * The timer row an order's plain deadline stands for, or NULL if it has
 * none: ord is the order as read with _plain_cols and its status as text
 * ("st").  The caller has looked for a timer row and found none.
 */
CREATE FUNCTION orderexp._plain_timer(cfg orderexp.tables, k text, ord jsonb)
RETURNS orderexp.timers
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p	orderexp.policies := orderexp._plain_policy(cfg.order_table);
	tm	orderexp.timers;
	created timestamptz := (ord ->> 'created')::timestamptz;
BEGIN
	IF p.id IS NULL OR ord ->> 'st' IS DISTINCT FROM cfg.unpaid_value OR created IS NULL THEN
		RETURN NULL;
	END IF;
	tm.order_table := cfg.order_table;
	tm.order_key := k;
	tm.policy_id := p.id;
	tm.close_at := created + p.close_after;
	tm.extensions := 0;
	tm.token_extensions := 0;
	tm.generation := (ord ->> 'gen')::bigint;
	tm.order_created := (ord ->> 'stored')::timestamptz;
	tm.policy_version := p.version;
	tm.reopened := false;
	RETURN tm;
END;
$$;

/*
 * Write the timer rows of a table's plain orders (unpaid, with a
 * created-at, no row yet) as their plain deadlines give them now, before
 * something changes what those would be: the end of plain deadlines, or a
 * change of the policy that leaves existing deadlines alone.  The table's
 * plain lock keeps the sweep's plain batch out meanwhile, and the table is
 * locked in SHARE mode (as CREATE INDEX locks it), so that no transaction
 * that wrote orders without timer rows commits after the scan.
 * Returns the number of rows written.
 */
CREATE FUNCTION orderexp._materialize_plain(cfg orderexp.tables)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n	bigint;
BEGIN
	IF (orderexp._plain_policy(cfg.order_table)).id IS NULL THEN
		RETURN 0;
	END IF;
	PERFORM orderexp._plain_lock(cfg.order_table, true);
	EXECUTE format('LOCK TABLE %s IN SHARE MODE', cfg.order_table);
	INSERT INTO orderexp.timers AS t (order_table, order_key, policy_id, close_at, generation,
									  order_created, policy_version)
	SELECT cfg.order_table, x.order_key, x.policy_id, x.close_at, x.generation,
		   x.order_created, x.policy_version
	  FROM orderexp._plain_pending(cfg) x
	ON CONFLICT (order_table, order_key) DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

/*
 * A table's unpaid orders with plain deadlines that have no timer row, read
 * as the table's owner: key and category, and what the timer row each one
 * stands for would hold (as _plain_timer gives it for one order).  For
 * pending, monitor_backlog and _materialize_plain; nothing if the table has
 * no plain deadlines.
 */
CREATE FUNCTION orderexp._plain_pending(cfg orderexp.tables)
RETURNS TABLE (order_key text, category text, policy_id integer, close_at timestamptz,
			   generation bigint, order_created timestamptz, policy_version integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p	orderexp.policies := orderexp._plain_policy(cfg.order_table);
BEGIN
	IF p.id IS NULL THEN
		RETURN;
	END IF;
	RETURN QUERY
	SELECT r ->> 'k', r ->> 'category', p.id, (r ->> 'created')::timestamptz + p.close_after,
		   (r ->> 'gen')::bigint, (r ->> 'stored')::timestamptz, p.version
	  FROM orderexp._orders_exec(cfg.order_table, true,
			format('SELECT o.%I::text AS k, %s AS category, %s FROM %s o WHERE o.%I = %L::%s AND o.%I IS NOT NULL',
				   cfg.key_column, orderexp._category_expr(cfg),
				   orderexp._plain_cols(cfg), cfg.order_table, cfg.status_column,
				   cfg.unpaid_value, orderexp._status_type(cfg), cfg.created_column),
			NULL) r
	 WHERE NOT EXISTS (SELECT 1 FROM orderexp.timers t
						WHERE t.order_table = cfg.order_table AND t.order_key = r ->> 'k');
END;
$$;

/*
 * monitor_backlog's figures of the plain orders of a table, for a member
 * of pg_monitor, who cannot read the orders table: counts and the oldest
 * deadline only.
 */
CREATE FUNCTION orderexp._plain_backlog(orders regclass, OUT pending bigint, OUT overdue bigint,
										OUT oldest_deadline timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT count(*), count(*) FILTER (WHERE x.close_at <= now()), min(x.close_at)
	  FROM orderexp.tables t
	 CROSS JOIN LATERAL orderexp._plain_pending(t) x
	 WHERE t.order_table = orders
$$;

/*
 * The type the plain batch's take and next statements compare the status
 * column with: that of _status_type, but for a domain its base type (the
 * base type's, for a domain over a domain).  A partial index's predicate
 * on a domain column is stored as the column coerced to the base type
 * ("(status)::text = 'unpaid'::text"), and the planner can use the index
 * only for a condition that says the same; a constant cast to a domain
 * with a CHECK stays a coercion, run for every row, which says something
 * else, and the take would read the whole table (a sequential scan and a
 * sort for every batch).
 */
CREATE FUNCTION orderexp._status_index_type(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH RECURSIVE d(typ, typmod, typtype) AS (
		SELECT a.atttypid, a.atttypmod, t.typtype
		  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		 WHERE a.attrelid = cfg.order_table AND a.attname = cfg.status_column
		   AND NOT a.attisdropped AND a.attnum > 0
		UNION ALL
		SELECT t.typbasetype, t.typtypmod, b.typtype
		  FROM d JOIN pg_type t ON t.oid = d.typ JOIN pg_type b ON b.oid = t.typbasetype
		 WHERE d.typtype = 'd')
	SELECT coalesce((SELECT format_type(d.typ, d.typmod) FROM d WHERE d.typtype <> 'd'),
					orderexp._status_type(cfg))
$$;

/*
 * Is there an index the sweep can find a table's due plain orders by: a
 * valid b-tree index whose first column is the created-at column, partial
 * on the status column (WHERE status = <unpaid>)?  The predicate is
 * compared as PostgreSQL prints it back, against the one an index made as
 * the hint of set_plain_deadlines() says would have, both without casts
 * and parentheses: PostgreSQL casts a varchar or domain status column to
 * text, and the value to text or to the column's type, in what it prints
 * ("((status)::text = 'unpaid'::text)"), which a cast ending at the next
 * blank once missed.
 */
CREATE FUNCTION orderexp._plain_index(cfg orderexp.tables)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i.indexrelid::regclass
	  FROM pg_index i
	  JOIN pg_class c ON c.oid = i.indexrelid
	  JOIN pg_am am ON am.oid = c.relam
	  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	 CROSS JOIN (SELECT '::("[^"]*"|[a-z_][a-z0-9_.]*)( [a-z_][a-z0-9_]*)*|[()]' AS casts) re
	 WHERE i.indrelid = cfg.order_table AND i.indisvalid AND i.indisready
	   AND am.amname = 'btree' AND a.attname = cfg.created_column
	   AND i.indexprs IS NULL AND i.indpred IS NOT NULL
	   AND regexp_replace(pg_get_expr(i.indpred, i.indrelid), re.casts, '', 'g')
		   = regexp_replace(format('%I = %L', cfg.status_column, cfg.unpaid_value), re.casts, '', 'g')
	 ORDER BY i.indnatts, c.relname
	 LIMIT 1
$$;

CREATE FUNCTION orderexp._set_plain_deadlines(orders regclass, enabled boolean)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	p	orderexp.policies;
	why text;
BEGIN
	IF enabled IS NULL THEN
		RAISE EXCEPTION 'enabled must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	cfg := orderexp._config(orders);
	SELECT * INTO p FROM orderexp.policies x
	 WHERE x.order_table = orders AND x.category IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % has no default close policy', orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Plain deadlines are the default policy''s: set one with orderexp.set_close_policy().';
	END IF;

	IF NOT enabled THEN
		IF p.plain_since IS NOT NULL THEN
			/*
			 * the lock the trigger on INSERT coming back takes, before
			 * _materialize_plain's weaker SHARE: no upgrade, in which two
			 * such transactions could deadlock
			 */
			EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', orders);
			PERFORM orderexp._materialize_plain(cfg);
			UPDATE orderexp.policies x SET plain_since = NULL WHERE x.id = p.id;
			PERFORM orderexp._sync_triggers(cfg);
		END IF;
		RETURN false;
	END IF;
	IF p.plain_since IS NOT NULL THEN
		RETURN true;
	END IF;

	why := CASE
		WHEN cfg.partition_column IS NOT NULL THEN
			'it is partitioned by its created-at column'
		WHEN EXISTS (SELECT 1 FROM orderexp.policies x
					  WHERE x.order_table = orders AND x.category IS NOT NULL) THEN
			'it has close policies per category'
		WHEN p.remind_before IS NOT NULL THEN
			'its close policy sends reminders'
		WHEN p.experiment_id IS NOT NULL THEN
			'its close policy runs an experiment'
		END;
	IF why IS NOT NULL THEN
		RAISE EXCEPTION 'table % cannot have plain deadlines: %', orders, why
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Plain deadlines need one deadline rule for every order of the table: created-at plus the default policy''s close_after, without reminders, experiments or policies per category, on a table not partitioned by created-at.';
	END IF;
	IF orderexp._plain_index(cfg) IS NULL THEN
		RAISE EXCEPTION 'table % has no index to find its due orders by', orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Without timer rows, the sweep finds due orders through an index of the table on its created-at column, partial on the unpaid status.',
				  HINT = format('CREATE INDEX ON %s (%I) WHERE %I = %L;', orders, cfg.created_column,
								cfg.status_column, cfg.unpaid_value);
	END IF;
	UPDATE orderexp.policies x SET plain_since = now() WHERE x.id = p.id;
	PERFORM orderexp._sync_triggers(cfg);
	RETURN true;
END;
$$;

CREATE FUNCTION orderexp.set_plain_deadlines(orders regclass, enabled boolean DEFAULT true)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.set_plain_deadlines(regclass, boolean) IS
	'track the unpaid orders of a table without timer rows (each due at its created-at plus close_after), or stop; returns the new setting';

/*
 * The payload of a plain batch's closes (_plain_orders_sql): that of
 * _payload_expr, but when every payload column is text or varchar, made
 * with jsonb_object() of the names and the values as text, the same jsonb
 * (a NULL a JSON null) for about 2,200 instructions a close less:
 * jsonb_build_object() takes "any", and looks up each argument's type
 * category and output function for every row.  The statement keeps the
 * casts to text it was made with, for as long as its stamp (src/sweep.c)
 * stays: the stamp follows the table's pg_class row, which a change of a
 * string column to any type that is not a string rewrites.
 */
CREATE FUNCTION orderexp._plain_payload_expr(cfg orderexp.tables)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN cardinality(cfg.payload_columns) > 0
					 AND NOT EXISTS (SELECT FROM unnest(cfg.payload_columns) AS u(c)
									  LEFT JOIN pg_attribute a
											 ON a.attrelid = cfg.order_table AND a.attname = u.c
											AND NOT a.attisdropped AND a.attnum > 0
									  WHERE a.atttypid IS NULL
										 OR a.atttypid NOT IN ('text'::regtype, 'character varying'::regtype))
				THEN format('jsonb_object(%L::text[], ARRAY[%s])', cfg.payload_columns,
							(SELECT string_agg(format('o.%I::text', u.c), ', ' ORDER BY u.n)
							   FROM unnest(cfg.payload_columns) WITH ORDINALITY AS u(c, n)))
				ELSE orderexp._payload_expr(cfg)
		   END
$$;

/*
 * The orders statement of a plain close batch, run as the table's owner:
 * _orders_sql's close, which finds each row by the tuple id the take
 * statement read it at ($2, aligned with the keys $1) where it can.  The
 * take read every due row already; a second and a third descent of the
 * table's primary key, to lock the row and then to update it, cost about
 * 5,000 instructions each (bench/instructions.sh).
 *
 * mine's first part locks the rows of the table itself by tuple id, with
 * their key checked (a tuple id names a place, not a row: the row read
 * there may have gone since the take and another taken its place).  It is
 * one scan of all the tuple ids, whose rows are checked against the pairs
 * of tuple id and key the take read by _tid_holds_key(), a binary search
 * in the pairs sorted once: a join of the keys to the table, planned as a
 * nested loop over a tuple id scan, began that scan again for every key,
 * and each new beginning asks the kernel for the table's size (an lseek:
 * 6 % of a drain's CPU time, which instruction counts do not show); a
 * hashed subplan over the unnested pairs, which replaced it, cost about
 * 2,500 instructions a close more than the function.  It locks a row
 * only in the version the take read.  A row updated since the take is
 * left out: if the update committed before the statement's snapshot, the
 * version at the tuple id is not visible any more; if after it, the lock
 * follows the row to its latest version, and EvalPlanQual checks the
 * filter on that version again, which fails (every update writes a new
 * version, at another tuple id).
 * Either way the key is missing from mine and reported busy, like a row
 * someone holds, so that the worker comes back for it soon (isolation
 * spec tid_race).  Nobody may update the version mine locked, which the
 * snapshot sees, so the update by tuple id finds every row mine locked,
 * and finds it unpaid if mine did (no condition on the status, which would
 * let the planner scan the partial index of unpaid orders instead).
 *
 * mine's second part locks by key, as _orders_sql does, the rows the take
 * found in partitions or inheritance children (no tuple id: one names a
 * row only with its table); by_key closes them, by key.  Both run only
 * when the take gave a key without a tuple id, which for a table without
 * partitions or children it never does: array_position(..., NULL) on an
 * array without NULLs returns at once, and as the condition uses no column
 * the plan checks it once, before the scan (a One-Time Filter): the batch's
 * arrays are not unnested to find no such key, nor mine scanned again for
 * by_key.
 *
 * Whether mine lacks a key of the take's (busy keys, see _orders_sql) is
 * known from a count of its rows when all of them were locked by tuple id:
 * each pair of tuple id and key the take gave locks at most one row, so
 * mine holds every pair exactly when it has as many rows as $1 has keys.
 * Only rows locked by key need mine's distinct keys counted, which sorts
 * them.  The two together: about 1,900 instructions a close
 * (bench/instructions.md).
 */
CREATE FUNCTION orderexp._plain_orders_sql(cfg orderexp.tables)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	status_type text := orderexp._status_type(cfg);
	locked_cols text := orderexp._locked_cols_sql(cfg);
BEGIN
	RETURN format($q$
WITH mine AS MATERIALIZED (
	SELECT x.order_key, x.raw_key, x.unpaid, x.tid
	  FROM (SELECT %3$s, o.ctid AS tid
			  FROM ONLY %1$s o
			 WHERE o.ctid = ANY ($2::tid[])
			   AND orderexp._tid_holds_key(o.ctid, o.%2$I::text, $2::tid[], $1::text[])
			   FOR NO KEY UPDATE OF o SKIP LOCKED) AS x
	UNION ALL
	SELECT y.order_key, y.raw_key, y.unpaid, NULL::tid
	  FROM (SELECT %3$s
			  FROM %1$s o
			 WHERE o.%2$I = ANY (ARRAY(SELECT u.k::%4$s
										 FROM (SELECT unnest($1::text[]) AS k,
													  unnest($2::tid[]) AS t) AS u
										WHERE u.t IS NULL))
			   AND o.tableoid <> %5$L::oid
			   AND array_position($2::tid[], NULL) IS NOT NULL
			   FOR NO KEY UPDATE OF o SKIP LOCKED) AS y),$q$,
		cfg.order_table, cfg.key_column, locked_cols, cfg.key_type,
		cfg.order_table::oid::text)
		|| orderexp._busy_keys_sql(cfg, $q$CASE WHEN array_position($2::tid[], NULL) IS NULL
				THEN (SELECT count(*) FROM mine m)
				ELSE (SELECT count(DISTINCT m.raw_key) FROM mine m) END$q$)
		|| format($q$
by_tid AS (
	UPDATE ONLY %1$s o SET %3$I = %7$L::%5$s
	 WHERE o.ctid = ANY (ARRAY(SELECT m.tid FROM mine m WHERE m.unpaid AND m.tid IS NOT NULL))
	RETURNING %9$s),
by_key AS (
	UPDATE %1$s o SET %3$I = %7$L::%5$s
	 WHERE o.%2$I = ANY (ARRAY(SELECT m.order_key::%6$s FROM mine m
								WHERE m.unpaid AND m.tid IS NULL))
	   AND o.%3$I = %4$L::%5$s AND o.tableoid <> %8$L::oid
	   AND array_position($2::tid[], NULL) IS NOT NULL
	RETURNING %9$s),
rows AS (
	SELECT * FROM by_tid
	UNION ALL
	SELECT * FROM by_key)$q$,
		cfg.order_table, cfg.key_column, cfg.status_column, cfg.unpaid_value,
		status_type, cfg.key_type, cfg.closed_value, cfg.order_table::oid::text,
		orderexp._closed_cols_sql(cfg, orderexp._plain_payload_expr(cfg)))
		|| orderexp._orders_result_sql();
END;
$$;

/*
 * The statements of a plain close batch (src/batch.c), or NULL when the
 * table has no plain deadlines:
 *   take     (the table's owner)  up to $1 due plain orders, in the order
 *            of created-at and key, after ($2, $3), the last of the sweep's
 *            previous batch, through the partial index: their keys (text),
 *            created-ats and, for the rows of the table itself (not of a
 *            partition or inheritance child), tuple ids.  The
 *            watermark makes its round trip as text, whatever the time
 *            zone: src/batch.c turns the last row's created-at into text
 *            with the type's output function (only that row's), and the
 *            statement turns $2 back once, in an init plan; a cast of the
 *            parameter in the filter itself would parse the text again
 *            for every row the index gives (about 3,300 instructions a
 *            close, and 1,200 more for the text of every row's
 *            created-at: bench/instructions.sh);
 *   next     (the table's owner)  the next plain deadline after now, of the
 *            first unpaid order not yet due (for the worker's sleep; run
 *            when the take did not fill the batch);
 *   own      (the extension owner)  the keys and tuple ids ($1, $2) of
 *            those without a timer row: an order with one is left to the
 *            timers' batch, whatever its deadline;
 *   orders   (the table's owner)  _plain_orders_sql: lock the rows, by
 *            tuple id where there is one, SKIP LOCKED, and close the unpaid
 *            ones;
 *   record   (the extension owner)  the events and counted outcomes, as
 *            _record_close_sql writes them, with the deadline and policy
 *            the plain deadline gives.
 * The settings are written into the text: a change of the policy changes
 * the statements, which the sweep prepares anew.  The batch runs with the
 * table's plain lock (_plain_lock), so that no timer row is written
 * between its "own" statement and the close (src/batch.c).
 */
CREATE FUNCTION orderexp._plain_batch_sql(cfg orderexp.tables)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p orderexp.policies := orderexp._plain_policy(cfg.order_table);
	typ text;
BEGIN
	IF p.id IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT a.atttypid::regtype::text INTO typ
	  FROM pg_attribute a
	 WHERE a.attrelid = cfg.order_table AND a.attname = cfg.created_column;
	RETURN ARRAY[
		format($q$
SELECT o.%2$I::text COLLATE "C" AS k, o.%3$I AS at,
	   CASE WHEN o.tableoid = %9$L::oid THEN o.ctid END AS tid
  FROM %1$s o
 WHERE o.%4$I = %5$L::%6$s
   AND o.%3$I <= (now() - %7$L::interval)::%8$s
   AND o.%3$I >= $2::%8$s
   AND (o.%3$I > (SELECT $2::%8$s) OR o.%2$I::text COLLATE "C" > $3)
 ORDER BY o.%3$I, o.%2$I::text COLLATE "C"
 LIMIT $1$q$,
			cfg.order_table, cfg.key_column, cfg.created_column, cfg.status_column,
			cfg.unpaid_value, orderexp._status_index_type(cfg), p.close_after, typ,
			cfg.order_table::oid::text),
		format($q$
SELECT o.%2$I::timestamptz + %5$L::interval
  FROM %1$s o
 WHERE o.%3$I = %4$L::%6$s AND o.%2$I > (now() - %5$L::interval)::%7$s
 ORDER BY o.%2$I
 LIMIT 1$q$,
			cfg.order_table, cfg.created_column, cfg.status_column, cfg.unpaid_value,
			p.close_after, orderexp._status_index_type(cfg), typ),
		/*
		 * one scan of the timers' primary key for all the keys, which
		 * stops at the first key that has a timer row; only then one pass
		 * over the keys and their tuple ids that keeps those without (a
		 * hashed NOT IN), else both as they came (most batches: a key
		 * with a timer row is an order with a deadline of its own, which
		 * is rare).  The pass's condition on h.hit is a one-time filter,
		 * and OFFSET 0 keeps h a row of its own, so that its EXISTS is not
		 * copied into each use of h.hit and run three times.  A plan for
		 * every size of batch and of timers.
		 */
		format($q$
SELECT CASE WHEN h.hit THEN coalesce(f.keys, '{}') ELSE $1::text[] END,
	   CASE WHEN h.hit THEN coalesce(f.tids, '{}') ELSE $2::tid[] END
  FROM (SELECT EXISTS (%1$s) AS hit OFFSET 0) AS h,
	   LATERAL (SELECT array_agg(u.k) AS keys, array_agg(u.t) AS tids
				  FROM unnest($1::text[], $2::tid[]) AS u(k, t)
				 WHERE h.hit AND u.k COLLATE "C" NOT IN (%1$s)) AS f$q$,
			format('SELECT t.order_key FROM orderexp.timers t WHERE t.order_table = %L::regclass AND t.order_key = ANY ($1::text[])',
				   cfg.order_table::oid::text)),
		orderexp._plain_orders_sql(cfg),
		orderexp._record_plain_close_sql(cfg, p)];
END;
$$;

/*
 * The record statement of a plain close batch: _record_close_sql without
 * the timers (there are none to drop or read); the deadline is the
 * created-at ($8) plus close_after, the policy and its version are p's,
 * written into the text.
 */
CREATE FUNCTION orderexp._record_plain_close_sql(cfg orderexp.tables, p orderexp.policies)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($q$
WITH done AS (
	SELECT c.order_key, c.cols, c.category, c.created + %2$L::interval AS close_at,
		   %3$s AS policy_id, %4$s AS policy_version, NULL::integer AS variant,
		   false AS reopened, %1$s AS event_ids
	  FROM (SELECT unnest($4) AS order_key, unnest($6) AS cols, unnest($7) AS category,
				   unnest($8) AS created) AS c),$q$,
		orderexp._close_event_ids_sql(cfg), p.close_after, p.id, p.version)
		|| orderexp._record_closes_sql(cfg, p)
$$;

/* ------------------------------------------------------------------------
 * Policies: the bodies, and the owner gates
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
	reschedule			boolean,
	channels_column		name,
	contact_columns		text[],
	fallback_before		interval)
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
	item		text;
	ch			text;
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
	IF NOT orderexp._positive_interval(close_after) THEN
		RAISE EXCEPTION 'close_after must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('close_after is %s; each of its months, days and time must be zero or more, so that no deadline comes before its order.', close_after);
	END IF;
	IF close_after > interval '100 years' THEN
		RAISE EXCEPTION 'close_after must be at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('close_after is %s.', close_after);
	END IF;
	IF remind_before IS NOT NULL AND NOT orderexp._positive_interval(remind_before) THEN
		RAISE EXCEPTION 'remind_before must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('remind_before is %s; each of its months, days and time must be zero or more.', remind_before),
				  HINT = 'Pass NULL for no reminders.';
	END IF;
	IF remind_before IS NOT NULL AND remind_before >= close_after THEN
		RAISE EXCEPTION 'remind_before must be shorter than close_after'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('remind_before is %s, close_after is %s.', remind_before, close_after);
	END IF;
	IF extend_by IS NOT NULL AND (NOT orderexp._positive_interval(extend_by)
								  OR extend_by > interval '100 years') THEN
		RAISE EXCEPTION 'extend_by must be positive and at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('extend_by is %s.%s', extend_by,
								  CASE WHEN NOT orderexp._positive_interval(extend_by)
									   THEN ' Each of its months, days and time must be zero or more.'
									   ELSE '' END);
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
	cfg.channels_column := CASE WHEN channels_column = '' THEN NULL
								ELSE coalesce(channels_column, old_cfg.channels_column) END;
	cfg.contact_channels := coalesce(old_cfg.contact_channels, '{}');
	cfg.contact_columns := coalesce(old_cfg.contact_columns, '{}');
	cfg.fallback_before := coalesce(fallback_before, old_cfg.fallback_before, '5 minutes');

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
				/* the type's input may be the owner's code: as the owner */
				SELECT (r ->> 'ok')::boolean INTO ok
				  FROM orderexp._orders_exec(orders, true,
						format('SELECT %L::%s::text = %L AS ok', v, att.typ, v), NULL) r;
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
	/* names a relay routes by: identifier-like, as long as a name may be, once each */
	IF EXISTS (SELECT 1 FROM unnest(cfg.channels) c
				WHERE c !~ '^[A-Za-z_][A-Za-z0-9_-]*$' OR octet_length(c) > 63) THEN
		RAISE EXCEPTION 'channel names must be identifier-like and at most 63 bytes'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('channels is %s.', left(cfg.channels::text, 200)),
				  HINT = 'Use letters, digits, "_" and "-", starting with a letter or "_".';
	END IF;
	IF (SELECT count(DISTINCT c) FROM unnest(cfg.channels) c) <> cardinality(cfg.channels) THEN
		RAISE EXCEPTION 'channels must not repeat'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('channels is %L: every event would go out twice on a repeated channel.', cfg.channels);
	END IF;

	/* --- the customer's channels, the contacts, the fallback --- */
	IF cfg.channels_column IS NOT NULL THEN
		SELECT a.attnum, a.atttypid::regtype AS typ INTO att
		  FROM pg_attribute a
		 WHERE a.attrelid = orders AND a.attname = cfg.channels_column AND NOT a.attisdropped
		   AND a.attnum > 0;
		IF att.attnum IS NULL THEN
			RAISE EXCEPTION 'column "%" of table % does not exist', cfg.channels_column, orders
				USING ERRCODE = 'undefined_column', HINT = 'Check channels_column.';
		END IF;
		IF att.typ NOT IN ('text[]'::regtype, 'character varying[]'::regtype,
						   'text'::regtype, 'character varying'::regtype) THEN
			RAISE EXCEPTION 'channels column "%" of table % has unsupported type %',
				cfg.channels_column, orders, att.typ
				USING ERRCODE = 'datatype_mismatch',
					  DETAIL = 'The channels column must be text[] (or varchar[]), or text with a comma-separated list.';
		END IF;
	END IF;
	IF contact_columns IS NOT NULL THEN
		/* channel=column, once per channel of the table */
		cfg.contact_channels := '{}';
		cfg.contact_columns := '{}';
		FOREACH item IN ARRAY contact_columns LOOP
			ch := split_part(item, '=', 1);
			col := substr(item, strpos(item, '=') + 1);
			IF item IS NULL OR strpos(item, '=') = 0 OR col = '' THEN
				RAISE EXCEPTION 'contact_columns entries must read channel=column'
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = format('contact_columns has %s.', coalesce(quote_literal(item), 'NULL')),
						  HINT = 'E.g. contact_columns => ''{email=customer_email,sms=phone}''.';
			END IF;
			IF NOT ch = ANY (cfg.channels) THEN
				RAISE EXCEPTION 'contact_columns names channel %, which the table does not use', quote_literal(ch)
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = format('channels is %s.', left(cfg.channels::text, 200));
			END IF;
			IF ch = ANY (cfg.contact_channels) THEN
				RAISE EXCEPTION 'contact_columns names channel % twice', quote_literal(ch)
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF NOT EXISTS (SELECT 1 FROM pg_attribute a
							WHERE a.attrelid = orders AND a.attname = col AND NOT a.attisdropped
							  AND a.attnum > 0) THEN
				RAISE EXCEPTION 'contact column "%" of table % does not exist', col, orders
					USING ERRCODE = 'undefined_column', HINT = 'Check contact_columns.';
			END IF;
			cfg.contact_channels := cfg.contact_channels || ch;
			cfg.contact_columns := cfg.contact_columns || col;
		END LOOP;
	ELSIF is_new THEN
		/* by default: the e-mail address in "email", the phone number in "phone" */
		SELECT coalesce(array_agg(d.ch ORDER BY d.n), '{}'), coalesce(array_agg(d.col ORDER BY d.n), '{}')
		  INTO cfg.contact_channels, cfg.contact_columns
		  FROM (VALUES (1, 'email', 'email'::name), (2, 'sms', 'phone'::name)) AS d(n, ch, col)
		 WHERE d.ch = ANY (cfg.channels)
		   AND EXISTS (SELECT 1 FROM pg_attribute a
						WHERE a.attrelid = orders AND a.attname = d.col AND NOT a.attisdropped
						  AND a.attnum > 0);
	END IF;
	IF cfg.fallback_before < interval '0' OR (cfg.fallback_before <> interval '0'
											  AND NOT orderexp._positive_interval(cfg.fallback_before))
	   OR cfg.fallback_before > interval '100 years' THEN
		RAISE EXCEPTION 'fallback_before must be zero or positive, and at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('fallback_before is %s; each of its months, days and time must be zero or more.', cfg.fallback_before);
	END IF;

	/*
	 * --- plain deadlines read the key, status and created-at columns:
	 * those stay while they are on ---
	 */
	IF NOT is_new
	   AND (cfg.key_column, cfg.status_column, cfg.created_column, cfg.unpaid_value)
		   IS DISTINCT FROM
		   (old_cfg.key_column, old_cfg.status_column, old_cfg.created_column, old_cfg.unpaid_value)
	   AND EXISTS (SELECT 1 FROM orderexp.policies p
				    WHERE p.order_table = orders AND p.plain_since IS NOT NULL) THEN
		RAISE EXCEPTION 'table % has plain deadlines: its key, status and created-at columns and its unpaid value cannot change', orders
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'The deadlines of its orders without timer rows are read from these columns.',
				  HINT = format('Turn plain deadlines off first: SELECT orderexp.set_plain_deadlines(%L, false);',
								orders::text);
	END IF;

	/* --- store --- */
	IF is_new THEN
		INSERT INTO orderexp.tables (order_table, key_column, key_type, status_column,
									 created_column, category_column, unpaid_value,
									 closed_value, cancelled_value, payload_columns, channels,
									 partition_column, channels_column, contact_channels,
									 contact_columns, fallback_before)
		VALUES (cfg.order_table, cfg.key_column, cfg.key_type, cfg.status_column,
				cfg.created_column, cfg.category_column, cfg.unpaid_value,
				cfg.closed_value, cfg.cancelled_value, cfg.payload_columns, cfg.channels,
				cfg.partition_column, cfg.channels_column, cfg.contact_channels,
				cfg.contact_columns, cfg.fallback_before);
	ELSE
		UPDATE orderexp.tables t
		   SET key_column = cfg.key_column, key_type = cfg.key_type,
			   status_column = cfg.status_column, created_column = cfg.created_column,
			   category_column = cfg.category_column, unpaid_value = cfg.unpaid_value,
			   closed_value = cfg.closed_value, cancelled_value = cfg.cancelled_value,
			   payload_columns = cfg.payload_columns, channels = cfg.channels,
			   partition_column = cfg.partition_column,
			   channels_column = cfg.channels_column, contact_channels = cfg.contact_channels,
			   contact_columns = cfg.contact_columns, fallback_before = cfg.fallback_before,
			   last_error = NULL, last_error_at = NULL
		 WHERE t.order_table = orders;
	END IF;
	SELECT * INTO cfg FROM orderexp.tables t WHERE t.order_table = orders;

	SELECT p.id INTO policy_id FROM orderexp.policies p
	 WHERE p.order_table = orders AND p.category IS NOT DISTINCT FROM _set_close_policy.category
	   FOR UPDATE;
	had_policy := FOUND;
	/*
	 * Plain deadlines follow close_after: a change that leaves existing
	 * deadlines alone writes the timer rows of the plain orders first, with
	 * the deadlines they have now (with reschedule they take the new one,
	 * as the timers do)
	 */
	IF had_policy AND NOT reschedule
	   AND EXISTS (SELECT 1 FROM orderexp.policies p
				    WHERE p.id = policy_id AND p.plain_since IS NOT NULL
					  AND (p.close_after, p.remind_before, p.extend_by, p.max_extensions)
						  IS DISTINCT FROM
						  (_set_close_policy.close_after, _set_close_policy.remind_before,
						   _set_close_policy.extend_by, _set_close_policy.max_extensions)) THEN
		PERFORM orderexp._materialize_plain(cfg);
	END IF;
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
		DELETE FROM orderexp.unreachable_contacts u WHERE u.order_table = orders;
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
	reschedule			boolean DEFAULT false,
	channels_column		name DEFAULT NULL,
	contact_columns		text[] DEFAULT NULL,
	fallback_before		interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name, name, name, text, text, text, name[], text[], boolean, name, text[], interval) IS
	'register an orders table or change its close policy (per table, or per category)';

CREATE FUNCTION orderexp.drop_close_policy(orders regclass, category text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'orderexp_owner_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.drop_close_policy(regclass, text) IS
	'stop tracking a table (category NULL) or remove the policy of one category';

/* ------------------------------------------------------------------------
 * Order operations: the bodies, each writes its audit row and takes its
 * actor from _actor(); and the gates
 * ------------------------------------------------------------------------ */

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
	PERFORM orderexp._check_reason(reason);
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

	/* the order's update, as the caller's own UPDATE would run */
	SELECT r -> 'cols' INTO payload
	  FROM orderexp._orders_exec(orders, false,
			format('UPDATE %s o SET %I = $2::text::%s WHERE o.%I = $1::%s RETURNING %s AS cols',
				   orders, cfg.status_column,
				   orderexp._status_type(cfg),
				   cfg.key_column, cfg.key_type, orderexp._payload_expr(cfg)),
			ARRAY[k, cfg.cancelled_value]) r;
	DELETE FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k
	RETURNING * INTO tm;

	PERFORM orderexp._record_change(cfg, 'cancelled', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'reason', reason, 'cancelled_by', actor::text,
						   'order', payload),
		'operator', actor, reason, tm, tm.close_at, NULL);
	RETURN true;
END;
$$;

CREATE FUNCTION orderexp.cancel_order(orders regclass, order_key anyelement, reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.cancel_order(regclass, anyelement, text) IS
	'cancel one unpaid order; false if it was already cancelled';

CREATE FUNCTION orderexp._cancel_orders(orders regclass, order_keys anyarray, reason text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	cfg orderexp.tables;
	keys text[];
	cancelled_keys text[];
	cancelled_cols jsonb[];
	cancelled_created timestamptz[];
	n integer;
BEGIN
	PERFORM orderexp._check_reason(reason);
	cfg := orderexp._config(orders);
	IF order_keys IS NULL THEN
		RAISE EXCEPTION 'order keys must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF array_position(order_keys, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'order keys must not contain null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	/* canonical and distinct */
	SELECT ARRAY(SELECT jsonb_array_elements_text(r -> 'keys')) INTO keys
	  FROM orderexp._orders_exec(orders, false,
			format('SELECT coalesce(array_agg(DISTINCT k::%s::text), ''{}'') AS keys FROM unnest($1::text[]) k',
				   cfg.key_type),
			ARRAY[order_keys::text[]::text]) r;

	/*
	 * Lock the rows first, in key order, then their timers: the order of
	 * orderexp._lock_order.  Only the rows locked here are cancelled: an
	 * order committed after this statement is left alone, as if it had come
	 * a moment later.  Every writer of a timer holds its order's row, so no
	 * timer of a row locked here can appear or change before we are done.
	 */
	SELECT ARRAY(SELECT jsonb_array_elements_text(r -> 'keys')) INTO keys
	  FROM orderexp._orders_exec(orders, false,
			format('SELECT coalesce(array_agg(l.k), ''{}'') AS keys FROM (SELECT o.%1$I::text AS k FROM %2$s o WHERE o.%1$I = ANY ($1::%3$s[]) ORDER BY o.%1$I FOR NO KEY UPDATE) l',
				   cfg.key_column, orders, cfg.key_type),
			ARRAY[keys::text]) r;
	PERFORM 1 FROM orderexp.timers t
	 WHERE t.order_table = orders AND t.order_key = ANY (keys)
	 ORDER BY t.order_key
	   FOR UPDATE;

	/* the orders' update as the caller's own UPDATE would run, then ours */
	SELECT coalesce(array_agg(r ->> 'k'), '{}'), coalesce(array_agg(r -> 'cols'), '{}'),
		   coalesce(array_agg((r ->> 'created')::timestamptz), '{}')
	  INTO cancelled_keys, cancelled_cols, cancelled_created
	  FROM orderexp._orders_exec(orders, false,
			format($q$UPDATE %1$s o SET %2$I = $3::text::%3$s
			 WHERE o.%4$I = ANY ($1::%5$s[]) AND o.%2$I = $2::text::%3$s
			RETURNING o.%4$I::text AS k, %6$s AS cols, o.%7$I::timestamptz AS created$q$,
				   orders, cfg.status_column, orderexp._status_type(cfg),
				   cfg.key_column, cfg.key_type, orderexp._payload_expr(cfg),
				   cfg.created_column),
			ARRAY[keys::text, cfg.unpaid_value, cfg.cancelled_value]) r;
	WITH c AS (
			SELECT x.k, x.cols, x.created
			  FROM unnest(cancelled_keys, cancelled_cols, cancelled_created) AS x(k, cols, created)),
		d AS (
			DELETE FROM orderexp.timers t USING c
			 WHERE t.order_table = orders AND t.order_key = c.k
			RETURNING t.*),
		x AS (
			/* an order without a timer row: its plain deadline's */
			SELECT c.k, c.cols, coalesce(d.policy_id, pp.id) AS policy_id,
				   coalesce(d.policy_version, pp.version) AS policy_version, d.variant,
				   coalesce(d.close_at, c.created + pp.close_after) AS close_at,
				   /* the ids of the order's events, drawn first: its record names them */
				   ARRAY(SELECT nextval('orderexp.outbox_id_seq')
						   FROM unnest(cfg.channels) WHERE c.k IS NOT NULL) AS ids
			  FROM c LEFT JOIN d ON d.order_key = c.k
			  LEFT JOIN orderexp.policies pp
					 ON d.order_key IS NULL AND pp.order_table = orders AND pp.category IS NULL
					AND pp.plain_since IS NOT NULL AND c.created IS NOT NULL),
		e AS (
			/* one change written once: see _record_change */
			INSERT INTO orderexp.outbox (id, kind, order_table, order_key, channel, payload,
										 via, actor, reason, policy_id, policy_version,
										 variant, deadline, event_ids, part)
			SELECT x.ids[ch.n], 'cancelled', orders, x.k, ch.channel,
				   jsonb_build_object('order_table', orders::text, 'order_key', x.k,
									  'reason', reason, 'cancelled_by', actor::text,
									  'order', x.cols),
				   CASE WHEN ch.n = 1 THEN 'operator' END, CASE WHEN ch.n = 1 THEN actor END,
				   CASE WHEN ch.n = 1 THEN reason END, CASE WHEN ch.n = 1 THEN x.policy_id END,
				   CASE WHEN ch.n = 1 THEN x.policy_version END,
				   CASE WHEN ch.n = 1 THEN x.variant END, CASE WHEN ch.n = 1 THEN x.close_at END,
				   CASE WHEN ch.n = 1 AND cardinality(x.ids) > 1 THEN x.ids END,
				   CASE WHEN ch.n = 1 THEN 0 ELSE orderexp._outbox_part() END
			  FROM x
			 CROSS JOIN unnest(cfg.channels) WITH ORDINALITY AS ch(channel, n))
	SELECT count(*) INTO n FROM c;

	IF n > 0 THEN
		PERFORM pg_notify('orderexp', json_build_object('kind', 'cancelled', 'count', n)::text);
	END IF;
	RETURN n;
END;
$$;

CREATE FUNCTION orderexp.cancel_orders(orders regclass, order_keys anyarray, reason text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.cancel_orders(regclass, anyarray, text) IS
	'cancel the unpaid orders among the given keys; returns how many were cancelled';

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
	IF "by" IS NOT NULL AND (NOT orderexp._positive_interval("by") OR "by" > interval '100 years') THEN
		RAISE EXCEPTION 'extension must be positive and at most 100 years'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('by is %s.%s', "by",
								  CASE WHEN NOT orderexp._positive_interval("by")
									   THEN ' Each of its months, days and time must be zero or more.'
									   ELSE '' END);
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
	/* a policy's extend_by stored by an older version may still go back */
	IF new_close <= tm.close_at THEN
		RAISE EXCEPTION 'extension by % would not move the deadline of order % forward', step, k
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The deadline is %s; adding %s gives %s.', tm.close_at, step, new_close);
	END IF;
	UPDATE orderexp.timers t
	   SET close_at = new_close,
		   remind_at = new_close - pol.remind_before,
		   extensions = t.extensions + 1
	 WHERE t.order_table = orders AND t.order_key = k;

	PERFORM orderexp._record_change(cfg, 'extended', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'close_at', new_close, 'previous_close_at', tm.close_at,
						   'extended_by', orderexp._iso_interval(step), 'extensions', tm.extensions + 1,
						   'extensions_left', greatest(pol.max_extensions - tm.token_extensions, 0),
						   'extended_by_role', actor::text, 'via', 'operator',
						   'order', orderexp._order_cols(cfg, k)),
		'operator', actor, NULL, tm, new_close, tm.close_at);
	RETURN new_close;
END;
$$;

CREATE FUNCTION orderexp.extend_order(orders regclass, order_key anyelement, "by" interval DEFAULT NULL)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.extend_order(regclass, anyelement, interval) IS
	'move the deadline of an unpaid order (NULL: by the policy''s extend_by); returns the new deadline';

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
	PERFORM orderexp._check_reason(reason);
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);
	IF close_after IS NOT NULL AND (NOT orderexp._positive_interval(close_after)
									OR close_after > interval '100 years') THEN
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
	 ORDER BY a.at DESC, a.id DESC LIMIT 1;
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
	PERFORM 1
	   FROM orderexp._orders_exec(orders, false,
			format('UPDATE %s o SET %I = $2::text::%s WHERE o.%I = $1::%s RETURNING true AS done',
				   orders, cfg.status_column, orderexp._status_type(cfg),
				   cfg.key_column, cfg.key_type),
			ARRAY[k, cfg.unpaid_value]);
	SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	IF NOT FOUND THEN
		/*
		 * A plain deadline: the row it stands for, with a generation drawn
		 * anew, as the trigger draws one, so that no token of the order's
		 * first life works again
		 */
		PERFORM orderexp._lock_order(cfg, k);
		UPDATE orderexp.timers t SET generation = nextval('orderexp.timer_generation')
		 WHERE t.order_table = orders AND t.order_key = k AND t.generation < 0;
		SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	END IF;
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

	PERFORM orderexp._record_change(cfg, 'reopened', k,
		jsonb_build_object('order_table', orders::text, 'order_key', k,
						   'close_at', new_close, 'previous_status', st,
						   'reason', reason, 'reopened_by', actor::text,
						   'order', orderexp._order_cols(cfg, k)),
		'operator', actor, reason, tm, new_close, last_change.deadline);
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
	ord jsonb;
	tm	orderexp.timers;
	pol	orderexp.policies;
	refusal text[];
BEGIN
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key);
	SELECT true, r ->> 'st', r INTO found_row, st, ord
	  FROM orderexp._orders_exec(cfg.order_table, false,
			format('SELECT o.%I::text AS st, %s FROM %s o WHERE o.%I = $1::%s',
				   cfg.status_column, orderexp._plain_cols(cfg), cfg.order_table,
				   cfg.key_column, cfg.key_type),
			ARRAY[k]) r;
	IF found_row IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, orders
			USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	IF NOT FOUND THEN
		/* a plain deadline: the token names the timer row it stands for */
		tm := orderexp._plain_timer(cfg, k, ord);
	END IF;
	SELECT * INTO pol FROM orderexp.policies p WHERE p.id = tm.policy_id;
	refusal := orderexp._token_refusal(cfg, st, tm, pol);
	IF refusal IS NOT NULL THEN
		RAISE EXCEPTION 'cannot make an extension token for order % in table %: %', k, orders, refusal[1]
			USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = refusal[2];
	END IF;
	RETURN orderexp._token_make(orders, k, tm.close_at, tm.extensions, tm.generation);
END;
$$;

/* the customer's extension, with its audit row */
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
	/* a policy's extend_by stored by an older version may still go back */
	IF new_close <= tm.close_at THEN
		RAISE EXCEPTION 'extension by % would not move the deadline of order % forward', pol.extend_by, k
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The deadline is %s; adding %s gives %s.', tm.close_at, pol.extend_by, new_close);
	END IF;
	UPDATE orderexp.timers t
	   SET close_at = new_close,
		   remind_at = new_close - pol.remind_before,
		   extensions = t.extensions + 1,
		   token_extensions = t.token_extensions + 1
	 WHERE t.order_table = cfg.order_table AND t.order_key = claim.order_key;

	PERFORM orderexp._record_change(cfg, 'extended', claim.order_key,
		jsonb_build_object('order_table', cfg.order_table::text, 'order_key', claim.order_key,
						   'close_at', new_close, 'previous_close_at', tm.close_at,
						   'extended_by', orderexp._iso_interval(pol.extend_by), 'extensions', tm.extensions + 1,
						   'extensions_left', pol.max_extensions - tm.token_extensions - 1,
						   'extended_by_role', caller, 'via', 'token',
						   'order', orderexp._order_cols(cfg, claim.order_key)),
		'token', caller, NULL, tm, new_close, tm.close_at);
	RETURN new_close;
END;
$$;

/*
 * A new secret: every token made so far stops working, for every table.
 * Runs as the extension owner, who alone may write the secret; a
 * superuser's to call (1.2: orderexp_admin's too).
 */
CREATE FUNCTION orderexp.rotate_secret()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO orderexp.secret (secret) VALUES (orderexp._new_secret());
END;
$$;
COMMENT ON FUNCTION orderexp.rotate_secret() IS
	'replace the token secret; tokens made under the old one stop working';

/* ------------------------------------------------------------------------
 * History and retention
 * ------------------------------------------------------------------------ */

/*
 * What orderexp did to one order, oldest first (by time, then id), with the
 * events each change wrote (audit.event_ids) and whether they are
 * delivered, and the feedback recorded about it (1.3: action 'feedback', id
 * the feedback's, after the audit rows of its time).  The body reads
 * orderexp's tables as the owner, so it is behind a gate (history_json: the
 * caller needs UPDATE on the orders table, as for every other order
 * function); history() unpacks its result into rows.
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
	SELECT coalesce(jsonb_agg(to_jsonb(h) - '{pos,src}'::text[] ORDER BY h.pos, h.src, h.id), '[]')
	  INTO result
	  FROM (SELECT a.id, a.at, a.action, a.via, a.actor, a.reason, a.policy_id, a.policy_version,
				   a.variant, a.deadline, a.previous_deadline, a.event_ids,
				   ev.delivered, a.at AS pos, 0 AS src
			  FROM orderexp.audit a
			  LEFT JOIN LATERAL (
					SELECT bool_and(o.delivered_at IS NOT NULL) AS delivered
					  FROM orderexp.outbox_state o
					 WHERE o.id = ANY (a.event_ids)) ev ON true
			 WHERE a.order_table = orders AND a.order_key = k
			UNION ALL
			/* feedback (1.3): after the audit rows of its time, in its own order */
			SELECT f.id, f.recorded_at, 'feedback', 'operator', f.recorded_by,
				   f.topic || ': ' || f.body, f.policy_id, f.policy_version, f.variant,
				   NULL, NULL, NULL, NULL, f.recorded_at, 1
			  FROM orderexp.feedback f
			 WHERE f.order_table = orders AND f.order_key = k) h;
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
	SELECT h.*
	  FROM jsonb_array_elements(orderexp.history_json(orders, order_key)) WITH ORDINALITY AS e(j, n)
	 CROSS JOIN LATERAL jsonb_to_record(e.j)
		AS h(id bigint, at timestamptz, action text, via text, actor name, reason text,
			 policy_id integer, policy_version integer, variant integer,
			 deadline timestamptz, previous_deadline timestamptz,
			 event_ids bigint[], delivered boolean)
	 ORDER BY e.n
$$;
COMMENT ON FUNCTION orderexp.history(regclass, anyelement) IS
	'every change orderexp made to one order, oldest first, with the ids and delivery state of its events';

/*
 * Retention: delete audit rows (the records of changes), outcomes and
 * feedback (1.3) older than the cutoff, of the tables the caller owns (every table's for a superuser).  A
 * cutoff in the future would delete what happened a moment ago, and
 * 'infinity' all of it: refused.  The result counts audit rows and outcomes
 * only, as before 1.3, and rows, not orders (since 1.3 one outcome row of
 * the sweep's stands for the orders of a close batch).  forget_before() is
 * the role gate in front of this body.
 */
CREATE FUNCTION orderexp._forget_before(cutoff timestamptz,
										OUT audit_rows bigint, OUT outcome_rows bigint)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tables regclass[];
BEGIN
	IF cutoff IS NULL THEN
		RAISE EXCEPTION 'cutoff must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF cutoff > now() THEN
		RAISE EXCEPTION 'cutoff must not be in the future'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('cutoff is %s.', cutoff),
				  HINT = 'forget_before() deletes the history of orders decided before the cutoff, e.g. now() - interval ''1 year''.';
	END IF;
	tables := orderexp._tables_visible(orderexp._actor(), false);
	/*
	 * The records of changes (1.3: the view audit): deleted when settled; a
	 * record whose event is still to be delivered (or dead, waiting for
	 * requeue) stays an event and only stops being a record.
	 */
	WITH gone AS (
		DELETE FROM orderexp.outbox o
		 WHERE o.via IS NOT NULL AND o.created_at < cutoff
		   AND (tables IS NULL OR o.order_table = ANY (tables))
		   AND (o.delivered_at IS NOT NULL OR o.obsolete_at IS NOT NULL
				OR (orderexp._batch_of(o.txid, o.id)).finished_at IS NOT NULL)
		RETURNING 1),
	kept AS (
		UPDATE orderexp.outbox o
		   SET via = NULL, actor = NULL, reason = NULL, policy_id = NULL, policy_version = NULL,
			   variant = NULL, deadline = NULL, previous_deadline = NULL, event_ids = NULL
		 WHERE o.via IS NOT NULL AND o.created_at < cutoff
		   AND (tables IS NULL OR o.order_table = ANY (tables))
		   AND o.delivered_at IS NULL AND o.obsolete_at IS NULL
		   AND (orderexp._batch_of(o.txid, o.id)).finished_at IS NULL
		RETURNING 1)
	SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM kept) INTO audit_rows;
	DELETE FROM orderexp.outcomes o
	 WHERE o.decided_at < cutoff AND (tables IS NULL OR o.order_table = ANY (tables));
	GET DIAGNOSTICS outcome_rows = ROW_COUNT;
	/* feedback goes with the audit trail (not counted: the result's columns stay) */
	DELETE FROM orderexp.feedback f
	 WHERE f.recorded_at < cutoff AND (tables IS NULL OR f.order_table = ANY (tables));
	/* and so do the orders listed as unreachable since before it (not counted) */
	DELETE FROM orderexp.unreachable_contacts u
	 WHERE u.since < cutoff AND (tables IS NULL OR u.order_table = ANY (tables));
END;
$$;

CREATE FUNCTION orderexp.forget_before(cutoff timestamptz,
									   OUT audit_rows bigint, OUT outcome_rows bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'orderexp_role_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.forget_before(timestamptz) IS
	'retention: delete audit rows, outcomes and feedback older than cutoff (not in the future) of the tables the caller owns';

/* ------------------------------------------------------------------------
 * Experiments
 * ------------------------------------------------------------------------ */

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
		IF variants[i] IS NULL OR NOT orderexp._positive_interval(variants[i])
		   OR variants[i] > interval '100 years' THEN
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

/* ------------------------------------------------------------------------
 * Delivery: the consumer side of the outbox (see the outbox above)
 * ------------------------------------------------------------------------ */

/*
 * A reminder that cannot be delivered on its channel (refused: fail() with
 * retryable false; or out of attempts) makes way for one on the next
 * channel of its order, which the reminder carries in its payload
 * ("fallback", written with it by the sweep): the same payload and
 * extension token, the next channel's contact, the remaining fallbacks, and
 * where it came from ("fallback_from"), with an audit row (action
 * reminder, via fallback) that history() shows.  Only while the order is
 * tracked with the deadline the reminder was for, at least the table's
 * fallback_before before it, and once per channel and deadline.  A refused
 * reminder with a checked contact also lists its order and channel in
 * unreachable_contacts.  Reads no orders table: what it needs came with
 * the reminder.  Returns the new outbox row (or none) for the caller to
 * insert, so that claim() can write it from within its own statement.
 */
CREATE FUNCTION orderexp._fallback(event_id bigint, error text, refused boolean)
RETURNS SETOF orderexp.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r		orderexp.outbox;
	tm		orderexp.timers;
	nxt		jsonb;
	wait	interval;
	why		text;
	e		orderexp.outbox;
BEGIN
	SELECT * INTO r FROM orderexp.outbox o WHERE o.id = event_id;
	IF NOT FOUND OR r.kind <> 'reminder' THEN
		RETURN;
	END IF;
	why := left(CASE WHEN refused THEN 'refused: ' ELSE 'out of attempts: ' END
				|| coalesce(error, ''), 1000);
	IF refused AND r.payload ? 'contact' THEN
		INSERT INTO orderexp.unreachable_contacts AS u (order_table, order_key, channel,
														contact, why)
		VALUES (r.order_table, r.order_key, r.channel, r.payload ->> 'contact', why)
		ON CONFLICT (order_table, order_key, channel)
		DO UPDATE SET contact = excluded.contact, why = excluded.why;
	END IF;

	nxt := r.payload -> 'fallback' -> 0;
	IF jsonb_typeof(nxt) IS DISTINCT FROM 'object' THEN
		RETURN;
	END IF;
	SELECT * INTO tm FROM orderexp.timers t
	 WHERE t.order_table = r.order_table AND t.order_key = r.order_key;
	IF NOT FOUND OR tm.close_at IS DISTINCT FROM (r.payload ->> 'close_at')::timestamptz THEN
		RETURN;					/* closed, cancelled, extended or reopened since */
	END IF;
	SELECT t.fallback_before INTO wait FROM orderexp.tables t
	 WHERE t.order_table = r.order_table;
	IF wait IS NULL OR tm.close_at - now() < wait THEN
		RETURN;					/* too late to be of use */
	END IF;
	IF EXISTS (SELECT 1 FROM orderexp.audit a
				WHERE a.order_table = r.order_table AND a.order_key = r.order_key
				  AND a.action = 'reminder' AND a.via = 'fallback' AND a.deadline = tm.close_at
				  AND split_part(a.reason, ':', 1) = 'reminder by ' || (nxt ->> 'channel')) THEN
		RETURN;					/* e.g. a requeued reminder that failed again */
	END IF;

	e.id := nextval('orderexp.outbox_id_seq');
	e.kind := 'reminder';
	e.order_table := r.order_table;
	e.order_key := r.order_key;
	e.channel := nxt ->> 'channel';
	e.payload := r.payload
		|| jsonb_build_object('contact', nxt -> 'contact',
							  'fallback', (r.payload -> 'fallback') - 0,
							  'fallback_from', jsonb_build_object('event_id', r.id,
																  'channel', r.channel,
																  'error', error));
	e.created_at := now();
	e.attempts := 0;
	e.next_attempt_at := now();
	/* the new reminder is also the record of the change (1.3) */
	e.via := 'fallback';
	e.reason := format('reminder by %s: %s %s', e.channel, r.channel, why);
	e.policy_id := tm.policy_id;
	e.policy_version := tm.policy_version;
	e.variant := tm.variant;
	e.deadline := tm.close_at;
	e.part := 0;				/* a record: kept with the history */
	PERFORM pg_notify('orderexp', json_build_object('kind', 'reminder', 'count', 1)::text);
	RETURN NEXT e;
END;
$$;

/*
 * Lease up to max_rows due rows, oldest due first.  Rows locked by another
 * claim in flight are skipped, not waited for; a row another claim took
 * while this one looked is re-checked on its new version (READ COMMITTED)
 * and dropped, because its next_attempt_at moved to the lease end.  A
 * reminder it finds out of attempts may make way for one on the order's
 * next channel (_fallback).
 */
/*
 * Of the outbox rows ids (locked by claim()), settle the reminders that no
 * longer matter and return the others.  A reminder announces a deadline to
 * the customer of an unpaid order: it is withheld when its order is no
 * longer tracked, when the deadline it announces has passed or moved (an
 * extension, a reopen), or when the order is no longer unpaid in its table
 * (read as the table's owner, as the sweep reads it: a paid order's timer
 * lingers until its deadline).  A withheld row is obsolete (obsolete_at,
 * the reason in last_error), is never claimed again, and gets an audit row
 * (reminder_withheld), so that history() shows it.  Other kinds are always
 * delivered: what they say stays true.
 */
CREATE FUNCTION orderexp._withhold_reminders(ids bigint[], t timestamptz)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	unpaid text[];
	withheld bigint[];
	reasons text[];
BEGIN
	/* no timer, or the deadline passed or moved */
	SELECT coalesce(array_agg(o.id), '{}'),
		   coalesce(array_agg(CASE WHEN tm.order_key IS NULL THEN 'the order is no longer tracked'
								   WHEN (o.payload ->> 'close_at')::timestamptz <= t
									   THEN 'its deadline passed'
								   ELSE format('its deadline moved to %s',
										   to_char(tm.close_at AT TIME ZONE 'UTC',
												   'YYYY-MM-DD HH24:MI:SS "UTC"')) END), '{}')
	  INTO withheld, reasons
	  FROM orderexp.outbox o
	  LEFT JOIN orderexp.timers tm
		ON tm.order_table = o.order_table AND tm.order_key = o.order_key
	 WHERE o.id = ANY (ids) AND o.kind = 'reminder'
	   AND (tm.order_key IS NULL OR (o.payload ->> 'close_at')::timestamptz <= t
			OR tm.close_at IS DISTINCT FROM (o.payload ->> 'close_at')::timestamptz);

	/* no longer unpaid, per table, as the table's owner */
	FOR cfg IN SELECT c.* FROM orderexp.tables c
				WHERE c.order_table IN (SELECT o.order_table FROM orderexp.outbox o
										 WHERE o.id = ANY (ids) AND o.kind = 'reminder'
										   AND o.id <> ALL (withheld))
	LOOP
		unpaid := ARRAY(
			SELECT r ->> 'k'
			  FROM orderexp._orders_exec(cfg.order_table, true,
					format('SELECT o.%I::text AS k FROM %s o WHERE o.%I = ANY ($1::%s[]) AND o.%I::text = $2',
						   cfg.key_column, cfg.order_table, cfg.key_column, cfg.key_type,
						   cfg.status_column),
					ARRAY[ARRAY(SELECT o.order_key FROM orderexp.outbox o
								 WHERE o.id = ANY (ids) AND o.kind = 'reminder'
								   AND o.order_table = cfg.order_table)::text,
						  cfg.unpaid_value]) r);
		SELECT withheld || coalesce(array_agg(o.id), '{}'),
			   reasons || coalesce(array_agg('the order is no longer unpaid'::text), '{}')
		  INTO withheld, reasons
		  FROM orderexp.outbox o
		 WHERE o.id = ANY (ids) AND o.kind = 'reminder' AND o.order_table = cfg.order_table
		   AND o.id <> ALL (withheld) AND o.order_key <> ALL (unpaid);
	END LOOP;

	IF cardinality(withheld) = 0 THEN
		RETURN ids;
	END IF;
	WITH settled AS (
		UPDATE orderexp.outbox o
		   SET obsolete_at = t, next_attempt_at = 'infinity', leased_until = NULL,
			   last_error = w.reason, txid = NULL
		  FROM unnest(withheld, reasons) AS w(id, reason)
		 WHERE o.id = w.id
		RETURNING o.id, o.order_table, o.order_key, o.payload, w.reason)
	/* the records: rows without a channel, settled as they are written */
	INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at,
								 delivered_at, via, reason, policy_id, deadline, event_ids, part)
	SELECT 'reminder_withheld', s.order_table, s.order_key, NULL, '{}', t, t, 'timeout',
		   format('reminder not sent: %s', s.reason), (s.payload ->> 'policy_id')::integer,
		   (s.payload ->> 'close_at')::timestamptz, ARRAY[s.id], 0
	  FROM settled s;
	RETURN ARRAY(SELECT x FROM unnest(ids) x WHERE x <> ALL (withheld));
END;
$$;
REVOKE ALL ON FUNCTION orderexp._withhold_reminders(bigint[], timestamptz) FROM PUBLIC;

/*
 * The rows claimed one by one (txid NULL: retries, waiting events, rows
 * from before batches, and every row while orderexp.batch_delivery is
 * off): claim()'s way up to 1.3, for claim() and next_batch().  A row
 * waits while an earlier event of its order and channel is out or waiting
 * for a retry, as a row (outbox_in_flight) or in a stream batch not
 * finished yet (the same rule as _batch_exceptions').
 */
CREATE FUNCTION orderexp._claim_rows(max_rows integer, lease interval, kinds text[],
									 channels text[], t timestamptz)
RETURNS SETOF orderexp.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	max_attempts integer := orderexp._max_attempts();
	picked bigint[];
	result bigint[] := '{}';
	need integer;
	npicked integer;
	any_reminder boolean;
	stale bigint[];
	nblockers bigint;
	open_from bigint := (SELECT c.open_from FROM orderexp.stream_cursor c);
	bwaiting bigint[];		/* picked rows held back by a stream batch ... */
	buntils timestamptz[];	/* ... until its lease ends, aligned */
BEGIN
	/*
	 * Take due rows, earliest first, until max_rows may go out or nothing
	 * is due: rows that may not go out now (below) leave room for more.
	 */
	LOOP
		need := max_rows - cardinality(result);
		SELECT coalesce(array_agg(x.id), '{}'), coalesce(bool_or(x.kind = 'reminder'), false)
		  INTO picked, any_reminder
		  FROM (SELECT o.id, o.kind
				  FROM orderexp.outbox o
				 WHERE o.delivered_at IS NULL AND o.txid IS NULL AND o.dead_at IS NULL
				   AND o.next_attempt_at <= t
				   AND (o.leased_until IS NULL OR o.leased_until <= t)
				   AND (kinds IS NULL OR o.kind = ANY (kinds))
				   AND (channels IS NULL OR o.channel = ANY (channels))
				   AND o.id <> ALL (result)
				 ORDER BY o.next_attempt_at
				 LIMIT need
				   FOR UPDATE SKIP LOCKED) x;
		npicked := cardinality(picked);
		EXIT WHEN npicked = 0;

		/* reminders that no longer matter are settled, not handed out */
		IF any_reminder THEN
			picked := orderexp._withhold_reminders(picked, t);
		END IF;

		/*
		 * Earlier events of the same orders and channels that are out or
		 * wait for a retry (outbox_in_flight; usually there is none): the
		 * reminders among them that a relay does not hold and that no
		 * longer matter are settled now, so that a close or a cancel need
		 * not wait for the retry of a reminder that will never go out.
		 */
		SELECT coalesce(array_agg(DISTINCT e.id)
							FILTER (WHERE e.kind = 'reminder'
									  AND (e.leased_until IS NULL OR e.leased_until <= t)), '{}'),
			   count(*)
		  INTO stale, nblockers
		  FROM orderexp.outbox o
		 CROSS JOIN LATERAL (
				SELECT x.id, x.kind, x.leased_until
				  FROM orderexp.outbox x
				 WHERE x.order_table = o.order_table AND x.order_key = o.order_key
				   AND x.channel = o.channel AND x.id < o.id
				   AND x.attempts > 0 AND x.delivered_at IS NULL AND x.dead_at IS NULL
				   AND x.obsolete_at IS NULL
				OFFSET 0) e		/* kept apart: one outbox_in_flight probe per row */
		 WHERE o.id = ANY (picked) AND e.id <> ALL (picked);
		/*
		 * Earlier events of the same orders and channels in stream batches
		 * that are out (their events are in no index by order: read only
		 * when such a batch exists, usually a few thousand events at most)
		 */
		bwaiting := '{}';
		buntils := '{}';
		IF EXISTS (SELECT 1 FROM orderexp.batches x
					WHERE x.id >= open_from AND x.finished_at IS NULL
					  AND x.hi_snap IS NOT NULL) THEN
			SELECT coalesce(array_agg(o.id), '{}'), coalesce(array_agg(r.next_attempt_at), '{}')
			  INTO bwaiting, buntils
			  FROM orderexp.batches ob
			 CROSS JOIN LATERAL orderexp._batch_rows(ob) r
			  JOIN orderexp.outbox o
				ON o.order_table = r.order_table AND o.order_key = r.order_key
			   AND o.channel = r.channel AND r.id < o.id
			 WHERE ob.id >= open_from AND ob.finished_at IS NULL AND ob.hi_snap IS NOT NULL
			   AND o.id = ANY (picked);
		END IF;
		IF nblockers = 0 AND cardinality(bwaiting) = 0 THEN
			result := result || picked;
			EXIT WHEN npicked < need OR cardinality(result) >= max_rows;
			CONTINUE;
		END IF;
		IF cardinality(stale) > 0 THEN
			PERFORM orderexp._withhold_reminders(ARRAY(
				SELECT e.id FROM orderexp.outbox e
				 WHERE e.id = ANY (stale)
				   FOR UPDATE SKIP LOCKED), t);
		END IF;

		/*
		 * A row waits while an earlier event of its order on its channel is
		 * out or waiting for a retry, so that events arrive in the order
		 * they were made; it is looked at again within a second.
		 */
		WITH blocked AS (
			SELECT u.id, min(u.until) AS until
			  FROM (SELECT o.id, e.next_attempt_at AS until
					  FROM orderexp.outbox o
					 CROSS JOIN LATERAL (
							SELECT x.id, x.next_attempt_at
							  FROM orderexp.outbox x
							 WHERE x.order_table = o.order_table AND x.order_key = o.order_key
							   AND x.channel = o.channel AND x.id < o.id
							   AND x.attempts > 0 AND x.delivered_at IS NULL AND x.dead_at IS NULL
							   AND x.obsolete_at IS NULL
							OFFSET 0) e
					 WHERE o.id = ANY (picked) AND e.id <> ALL (picked)
					UNION ALL
					SELECT w.id, w.until
					  FROM unnest(bwaiting, buntils) AS w(id, until)) u
			 GROUP BY u.id),
		postponed AS (
			UPDATE orderexp.outbox o
			   SET next_attempt_at = least(greatest(b.until, t + interval '1 ms'), t + interval '1 s')
			  FROM blocked b
			 WHERE o.id = b.id
			RETURNING o.id)
		SELECT result || ARRAY(SELECT x FROM unnest(picked) x
								WHERE x NOT IN (SELECT p.id FROM postponed p))
		  INTO result;

		EXIT WHEN npicked < need OR cardinality(result) >= max_rows;
	END LOOP;

	RETURN QUERY
	WITH taken AS (
		UPDATE orderexp.outbox o
		   SET attempts = CASE WHEN o.attempts < max_attempts THEN o.attempts + 1
							   ELSE o.attempts END,
			   leased_until = CASE WHEN o.attempts < max_attempts THEN t + lease END,
			   next_attempt_at = CASE WHEN o.attempts < max_attempts THEN t + lease
									  ELSE 'infinity' END,
			   dead_at = CASE WHEN o.attempts < max_attempts THEN NULL ELSE t END,
			   last_error = CASE WHEN o.attempts < max_attempts THEN o.last_error
								 ELSE concat_ws('; ', 'lease of the last attempt expired without ack or fail',
												o.last_error) END,
			   claimed_by = CASE WHEN o.attempts < max_attempts THEN session_user
								 ELSE o.claimed_by END
		 WHERE o.id = ANY (result)
		RETURNING o.*),
	/* a reminder out of attempts makes way for its order's next channel (_fallback) */
	fallen AS (
		INSERT INTO orderexp.outbox
		SELECT f.*
		  FROM taken x
		 CROSS JOIN LATERAL orderexp._fallback(x.id, x.last_error, false) f
		 WHERE x.dead_at IS NOT NULL AND x.kind = 'reminder')
	SELECT * FROM taken WHERE taken.dead_at IS NULL ORDER BY taken.id;
END;
$$;
REVOKE ALL ON FUNCTION orderexp._claim_rows(integer, interval, text[], text[], timestamptz) FROM PUBLIC;

/*
 * The current snapshot, as a cut of the event stream must see it: with the
 * calling transaction's own id among those in progress (a snapshot counts
 * its own transaction as finished), so that an event this transaction
 * writes after the cut is not taken for one already cut.
 */
CREATE FUNCTION orderexp._snapshot_for_cut()
RETURNS pg_snapshot
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN a.me IS NULL OR NOT pg_visible_in_snapshot(a.me, a.s) THEN a.s
				ELSE format('%s:%s:%s', least(pg_snapshot_xmin(a.s), a.me), pg_snapshot_xmax(a.s),
							(SELECT string_agg(u.x::text, ',' ORDER BY u.x)
							   FROM (SELECT pg_snapshot_xip(a.s) UNION SELECT a.me) u(x)))::pg_snapshot
		   END
	  FROM (SELECT pg_current_snapshot() AS s, pg_current_xact_id_if_assigned() AS me) a
$$;

/* is the stream event at position (txid, id) one of stream batch b's? */
CREATE FUNCTION orderexp._in_batch(txid xid8, id bigint, b orderexp.batches)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT b.hi_snap IS NOT NULL
	   AND pg_visible_in_snapshot(txid, b.hi_snap)
	   AND NOT pg_visible_in_snapshot(txid, b.lo_snap)
	   AND (txid, id) > (b.from_txid, b.from_id)
	   AND (txid, id) <= (b.to_txid, b.to_id)
$$;

/*
 * The events of batch b still to deliver, as the relay holding it sees
 * them: a stream batch's events with the batch's attempts, lease and
 * claimer (and, once finished, its finish as their delivery); a batch of
 * rows' rows that are still leased by it.  In delivery order: (txid, id),
 * the order of outbox_stream, whose range between the batch's ends is all
 * a stream batch reads (the events there that are not the batch's, of
 * transactions seen by lo_snap or not by hi_snap, are few: those of
 * transactions that ran across a cut).  The range is read as two index
 * ranges, the transactions before the last one and the last one's ids up
 * to to_id, because PostgreSQL 15's b-tree ends a scan at a row
 * comparison's bound only by its first column: (txid, id) <= (to_txid,
 * to_id) read every event of to_txid, all of a batch's transaction when
 * one transaction wrote thousands of events (bench/results.md).
 */
CREATE FUNCTION orderexp._batch_rows(b orderexp.batches)
RETURNS SETOF orderexp.outbox
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT o.id, o.kind, o.order_table, o.order_key, o.channel, o.payload, o.created_at,
		   b.attempts, CASE WHEN b.finished_at IS NULL THEN b.leased_until ELSE o.next_attempt_at END,
		   CASE WHEN b.finished_at IS NULL THEN b.leased_until END, b.finished_at, o.last_error,
		   o.dead_at, b.claimed_by, o.obsolete_at, o.via, o.actor, o.reason, o.policy_id,
		   o.policy_version, o.variant, o.deadline, o.previous_deadline, o.event_ids, o.txid,
		   o.part
	  FROM (SELECT x.* FROM orderexp.outbox x
			 WHERE x.txid IS NOT NULL AND x.delivered_at IS NULL
			   AND (x.txid, x.id) > (b.from_txid, b.from_id) AND x.txid < b.to_txid
			UNION ALL
			SELECT x.* FROM orderexp.outbox x
			 WHERE x.txid IS NOT NULL AND x.delivered_at IS NULL
			   AND x.txid = b.to_txid AND x.id <= b.to_id
			   AND x.id > CASE WHEN b.from_txid = b.to_txid THEN b.from_id ELSE 0 END) o
	 WHERE b.hi_snap IS NOT NULL
	   AND pg_visible_in_snapshot(o.txid, b.hi_snap)
	   AND NOT pg_visible_in_snapshot(o.txid, b.lo_snap)
	UNION ALL
	SELECT o.*
	  FROM orderexp.outbox o
	 WHERE b.hi_snap IS NULL
	   AND o.id = ANY (b.row_ids) AND o.txid IS NULL AND o.delivered_at IS NULL
	   AND o.dead_at IS NULL AND o.claimed_by = b.claimed_by AND o.leased_until = b.leased_until
	 ORDER BY 25, 1;
END;
$$;

/* the positions of stream batch b's events still in the stream (_batch_rows') */
CREATE FUNCTION orderexp._batch_ids(b orderexp.batches)
RETURNS TABLE (txid xid8, id bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT o.txid, o.id
	  FROM (SELECT x.* FROM orderexp.outbox x
			 WHERE x.txid IS NOT NULL AND x.delivered_at IS NULL
			   AND (x.txid, x.id) > (b.from_txid, b.from_id) AND x.txid < b.to_txid
			UNION ALL
			SELECT x.* FROM orderexp.outbox x
			 WHERE x.txid IS NOT NULL AND x.delivered_at IS NULL
			   AND x.txid = b.to_txid AND x.id <= b.to_id
			   AND x.id > CASE WHEN b.from_txid = b.to_txid THEN b.from_id ELSE 0 END) o
	 WHERE pg_visible_in_snapshot(o.txid, b.hi_snap)
	   AND NOT pg_visible_in_snapshot(o.txid, b.lo_snap);
END;
$$;

/*
 * The stream batch that event (txid, id) was cut into, if it was: NULL for
 * an event not yet cut, or one no longer in the stream (txid NULL).  For
 * outbox_state and the functions that need an event's derived state.
 */
CREATE FUNCTION orderexp._batch_of(txid xid8, id bigint)
RETURNS orderexp.batches
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT b.*
	  FROM orderexp.stream_cursor c, orderexp.batches b
	 WHERE _batch_of.txid IS NOT NULL
	   AND (pg_visible_in_snapshot(_batch_of.txid, c.done_snap)
			OR (c.next_snap IS NOT NULL AND pg_visible_in_snapshot(_batch_of.txid, c.next_snap)
				AND (_batch_of.txid, _batch_of.id) <= (c.pos_txid, c.pos_id)))
	   AND b.hi_snap IS NOT NULL AND b.to_txid >= _batch_of.txid AND b.from_txid <= _batch_of.txid
	   AND orderexp._in_batch(_batch_of.txid, _batch_of.id, b)
	 ORDER BY b.to_txid
	 LIMIT 1
$$;

/*
 * Events of the outbox with the state a relay's batches gave them (1.3):
 * the table's rows, but for an event still in the stream (txid set) that
 * was cut into a batch, the attempts, lease, claimer and delivery of its
 * batch (delivered_at: when the batch was finished).  What delivery_stats,
 * delivery_health, history() and explain_order() read.  row_delivered_at
 * is the table's own delivered_at, for filters that an index of the
 * outbox answers (outbox_undelivered, outbox_stream).
 */
CREATE VIEW orderexp.outbox_state AS
	SELECT o.id, o.kind, o.order_table, o.order_key, o.channel, o.payload, o.created_at,
		   CASE WHEN b.id IS NULL THEN o.attempts ELSE b.attempts END AS attempts,
		   CASE WHEN b.id IS NULL OR b.finished_at IS NOT NULL THEN o.next_attempt_at
				ELSE b.leased_until END AS next_attempt_at,
		   CASE WHEN b.id IS NULL THEN o.leased_until
				WHEN b.finished_at IS NULL THEN b.leased_until END AS leased_until,
		   coalesce(o.delivered_at, b.finished_at) AS delivered_at,
		   o.last_error, o.dead_at,
		   CASE WHEN b.id IS NULL THEN o.claimed_by ELSE b.claimed_by END AS claimed_by,
		   o.obsolete_at, o.via, o.actor, o.reason, o.policy_id, o.policy_version, o.variant,
		   o.deadline, o.previous_deadline, o.event_ids, o.txid, b.id AS batch_id,
		   o.delivered_at AS row_delivered_at
	  FROM orderexp.outbox o
	  LEFT JOIN LATERAL (
			SELECT b.*
			  FROM orderexp.stream_cursor c, orderexp.batches b
			 WHERE o.txid IS NOT NULL AND o.delivered_at IS NULL
			   AND (pg_visible_in_snapshot(o.txid, c.done_snap)
					OR (c.next_snap IS NOT NULL AND pg_visible_in_snapshot(o.txid, c.next_snap)
						AND (o.txid, o.id) <= (c.pos_txid, c.pos_id)))
			   AND b.hi_snap IS NOT NULL AND b.to_txid >= o.txid AND b.from_txid <= o.txid
			   AND pg_visible_in_snapshot(o.txid, b.hi_snap)
			   AND NOT pg_visible_in_snapshot(o.txid, b.lo_snap)
			   AND (o.txid, o.id) > (b.from_txid, b.from_id)
			   AND (o.txid, o.id) <= (b.to_txid, b.to_id)
			 ORDER BY b.to_txid
			 LIMIT 1) b ON true;
COMMENT ON VIEW orderexp.outbox_state IS
	'the outbox''s rows with the state of events delivered in batches (attempts, lease, claimer, delivery of their batch), and the batch';

/*
 * Are there events in the stream that snapshot s did not see?  The events
 * of the stream keep their place in outbox_stream until they are pruned,
 * delivered or not, so each probe is a scalar subquery ordered by the index
 * with LIMIT 1, which only an index scan of outbox_stream answers: as an
 * EXISTS (whose ORDER BY and LIMIT the planner drops) over a range whose
 * bound it cannot know, it may take a sequential scan of the whole outbox
 * for the cheaper plan (an idle claim() over 100,000
 * events kept took 20 ms).
 */
CREATE FUNCTION orderexp._stream_has_new(s pg_snapshot)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN (SELECT (SELECT o.txid FROM orderexp.outbox o
					WHERE o.txid >= pg_snapshot_xmax(s)
					  AND o.txid IS NOT NULL AND o.delivered_at IS NULL
					ORDER BY o.txid, o.id LIMIT 1) IS NOT NULL
		OR (SELECT o.txid FROM orderexp.outbox o
					WHERE o.txid = ANY (ARRAY(SELECT pg_snapshot_xip(s)))
					  AND o.txid IS NOT NULL AND o.delivered_at IS NULL
					ORDER BY o.txid, o.id LIMIT 1) IS NOT NULL);
END;
$$;

/*
 * Is there anything for a batch at t: a window being cut, an expired
 * batch, or events the last cut did not see?  One statement of index
 * probes (ordered, as _stream_has_new's) and no write, so that an idle
 * relay's poll stays cheap.  (This and the other helpers that run on every
 * batch are PL/pgSQL, whose plans are kept for the session: a SQL function
 * called from PL/pgSQL is planned again in every transaction.)
 */
CREATE FUNCTION orderexp._stream_due(t timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN (SELECT EXISTS (
		SELECT 1
		  FROM orderexp.stream_cursor c
		 WHERE c.next_snap IS NOT NULL
			OR EXISTS (SELECT 1 FROM orderexp.batches x
						WHERE x.id >= c.open_from AND x.finished_at IS NULL
						  AND x.hi_snap IS NOT NULL AND x.leased_until <= t)
			OR (SELECT o.txid FROM orderexp.outbox o
						WHERE o.txid >= pg_snapshot_xmax(c.done_snap)
						  AND o.txid IS NOT NULL AND o.delivered_at IS NULL
						ORDER BY o.txid, o.id LIMIT 1) IS NOT NULL
			OR (SELECT o.txid FROM orderexp.outbox o
						WHERE o.txid = ANY (ARRAY(SELECT pg_snapshot_xip(c.done_snap)))
						  AND o.txid IS NOT NULL AND o.delivered_at IS NULL
						ORDER BY o.txid, o.id LIMIT 1) IS NOT NULL));
END;
$$;

/*
 * Cut the next batch of up to max_rows events off the stream for the
 * calling role, leased for lease from t; returns its id, or NULL when the
 * stream has nothing new.  The cut works on a window: the events of the
 * transactions that committed between the last snapshot cut whole
 * (done_snap) and a new one (next_snap), in (txid, id) order, a batch at a
 * time; a window cut whole becomes done_snap.  The cursor row is locked
 * while a batch is cut, so that concurrent relays cut one after the other
 * (it is short: an index range scan of outbox_stream, one row written); an
 * idle stream writes nothing.  The events of the new batch that must not
 * go out now leave the stream (_batch_exceptions).
 */
CREATE FUNCTION orderexp._cut_batch(max_rows integer, lease interval, t timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c		orderexp.stream_cursor;
	b		orderexp.batches;
	xip		xid8[];
	txids	xid8[];
	ids		bigint[];
	reminders bigint[];
	n		integer;
	opened	boolean := false;
BEGIN
	SELECT * INTO c FROM orderexp.stream_cursor;
	IF c.next_snap IS NULL AND NOT orderexp._stream_has_new(c.done_snap) THEN
		RETURN NULL;
	END IF;
	SELECT * INTO c FROM orderexp.stream_cursor FOR UPDATE;
	LOOP
		IF c.next_snap IS NULL THEN
			EXIT WHEN opened OR NOT orderexp._stream_has_new(c.done_snap);
			c.next_snap := orderexp._snapshot_for_cut();
			/*
			 * The window starts at the least transaction id that can be in
			 * it: one below done_snap's xmin is seen by done_snap.  (From
			 * 0, each window's first batch read every event kept in
			 * outbox_stream, delivered ones too, up to the retention.)
			 */
			c.pos_txid := pg_snapshot_xmin(c.done_snap);
			c.pos_id := 0;
			opened := true;
		END IF;
		xip := ARRAY(SELECT pg_snapshot_xip(c.done_snap));
		/* the input comes in (txid, id) order: the arrays keep it */
		SELECT array_agg(x.txid), array_agg(x.id),
			   array_agg(x.id) FILTER (WHERE x.kind = 'reminder')
		  INTO txids, ids, reminders
		  FROM (SELECT u.txid, u.id, u.kind
				  FROM ((SELECT o.txid, o.id, o.kind
						   FROM orderexp.outbox o
						  WHERE o.txid = ANY (xip) AND o.txid >= c.pos_txid
							AND o.txid IS NOT NULL AND o.delivered_at IS NULL
							AND pg_visible_in_snapshot(o.txid, c.next_snap)
							AND (o.txid, o.id) > (c.pos_txid, c.pos_id)
						  ORDER BY o.txid, o.id
						  LIMIT max_rows)
						UNION ALL
						(SELECT o.txid, o.id, o.kind
						   FROM orderexp.outbox o
						  WHERE o.txid >= pg_snapshot_xmax(c.done_snap) AND o.txid >= c.pos_txid
							AND o.txid < pg_snapshot_xmax(c.next_snap)
							AND o.txid IS NOT NULL AND o.delivered_at IS NULL
							AND pg_visible_in_snapshot(o.txid, c.next_snap)
							AND (o.txid, o.id) > (c.pos_txid, c.pos_id)
						  ORDER BY o.txid, o.id
						  LIMIT max_rows)) u
				 ORDER BY u.txid, u.id
				 LIMIT max_rows) x;
		n := coalesce(cardinality(ids), 0);
		IF n > 0 THEN
			INSERT INTO orderexp.batches AS nb (lo_snap, hi_snap, from_txid, from_id, to_txid,
												to_id, created_at, claimed_by, leased_until)
			VALUES (c.done_snap, c.next_snap, c.pos_txid, c.pos_id, txids[n], ids[n], t,
					session_user, t + lease)
			RETURNING nb.* INTO b;
			c.pos_txid := txids[n];
			c.pos_id := ids[n];
		END IF;
		IF n < max_rows THEN
			/* the window is cut whole */
			c.done_snap := c.next_snap;
			c.next_snap := NULL;
			c.pos_txid := NULL;
			c.pos_id := NULL;
		END IF;
		EXIT WHEN n > 0;
	END LOOP;
	UPDATE orderexp.stream_cursor s
	   SET done_snap = c.done_snap, next_snap = c.next_snap, pos_txid = c.pos_txid,
		   pos_id = c.pos_id,
		   open_from = coalesce((SELECT min(x.id) FROM orderexp.batches x
								  WHERE x.id >= c.open_from AND x.finished_at IS NULL
									AND x.hi_snap IS NOT NULL),
								(SELECT max(x.id) + 1 FROM orderexp.batches x), c.open_from);
	IF b.id IS NULL THEN
		RETURN NULL;
	END IF;
	PERFORM orderexp._batch_exceptions(b, coalesce(reminders, '{}'), t);
	RETURN b.id;
END;
$$;

/*
 * The events of a new batch b that must not go out now leave the stream:
 * its reminders that no longer matter are withheld (_withhold_reminders,
 * as claim() withholds them), and an event waits, as claim() makes it
 * wait, while an earlier event of its order on its channel is out of the
 * stream and neither delivered, dead nor withheld (out, retrying or
 * waiting itself), or in another batch not finished yet.  A waiting event
 * becomes a row of its own, due when that earlier one's lease or retry is
 * due, at most a second from now.  Of the earlier events, the reminders out
 * of the stream that no relay holds and that no longer matter are settled
 * first, as claim() settles them, so that a close or a cancel in the batch
 * need not wait for the retry of a reminder that will never go out.  The
 * batch's events and the earlier ones are read once.  Costs nothing when
 * there is no such earlier event anywhere.
 */
CREATE FUNCTION orderexp._batch_exceptions(b orderexp.batches, reminders bigint[],
										   t timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	open_from bigint := (SELECT c.open_from FROM orderexp.stream_cursor c);
	waiting bigint[];		/* events of b held back ... */
	blockers bigint[];		/* ... by these earlier events, aligned ... */
	untils timestamptz[];	/* ... until their lease or retry is due */
	settle bigint[];		/* blockers that are reminders no relay holds */
	kept bigint[];
	withheld bigint[] := '{}';
BEGIN
	IF cardinality(reminders) > 0 THEN
		PERFORM orderexp._withhold_reminders(reminders, t);
	END IF;
	IF NOT EXISTS (SELECT 1 FROM orderexp.outbox x
					WHERE x.delivered_at IS NULL AND x.txid IS NULL
					  AND x.next_attempt_at < 'infinity')
	   AND NOT EXISTS (SELECT 1 FROM orderexp.batches x
						WHERE x.id >= open_from AND x.id <> b.id AND x.finished_at IS NULL
						  AND x.hi_snap IS NOT NULL) THEN
		RETURN;
	END IF;
	WITH mine AS MATERIALIZED (
		SELECT r.id, r.order_table, r.order_key, r.channel
		  FROM orderexp._batch_rows(b) r),
	earlier AS MATERIALIZED (
		SELECT x.id, x.order_table, x.order_key, x.channel, x.next_attempt_at AS until,
			   x.kind = 'reminder' AND (x.leased_until IS NULL OR x.leased_until <= t) AS settleable
		  FROM orderexp.outbox x
		 WHERE x.delivered_at IS NULL AND x.txid IS NULL AND x.next_attempt_at < 'infinity'
		   AND x.dead_at IS NULL AND x.obsolete_at IS NULL
		UNION ALL
		SELECT r.id, r.order_table, r.order_key, r.channel, ob.leased_until, false
		  FROM orderexp.batches ob
		 CROSS JOIN LATERAL orderexp._batch_rows(ob) r
		 WHERE ob.id >= open_from AND ob.id <> b.id AND ob.finished_at IS NULL
		   AND ob.hi_snap IS NOT NULL)
	SELECT array_agg(m.id), array_agg(e.id), array_agg(e.until),
		   array_agg(DISTINCT e.id) FILTER (WHERE e.settleable)
	  INTO waiting, blockers, untils, settle
	  FROM mine m
	  JOIN earlier e
		ON e.order_table = m.order_table AND e.order_key = m.order_key
	   AND e.channel = m.channel AND e.id < m.id;
	IF waiting IS NULL THEN
		RETURN;
	END IF;
	IF settle IS NOT NULL THEN
		/* those locked here (SKIP LOCKED) and not returned are withheld */
		settle := ARRAY(SELECT x.id FROM orderexp.outbox x
						 WHERE x.id = ANY (settle) FOR UPDATE SKIP LOCKED);
		IF cardinality(settle) > 0 THEN
			kept := orderexp._withhold_reminders(settle, t);
			withheld := ARRAY(SELECT l.id FROM unnest(settle) AS l(id) WHERE l.id <> ALL (kept));
		END IF;
	END IF;
	UPDATE orderexp.outbox o
	   SET txid = NULL, attempts = 0,
		   next_attempt_at = least(greatest(w.until, t + interval '1 ms'), t + interval '1 s')
	  FROM (SELECT u.waiting, min(u.until) AS until
			  FROM unnest(waiting, blockers, untils) AS u(waiting, blocker, until)
			 WHERE u.blocker <> ALL (withheld)
			 GROUP BY u.waiting) w
	 WHERE o.id = w.waiting;
END;
$$;

/*
 * A stream batch whose lease expired unfinished (its relay died, or took
 * too long) comes back whole, to the calling role, as its next attempt:
 * the first such batch not locked by another relay.  A batch out of
 * attempts dies instead: its events become dead rows (a reminder may make
 * way for one on its order's next channel, _fallback), as a row does whose
 * last lease expires.  Events beyond the caller's max_rows leave the
 * stream, claimable at once.  Returns the batch's id, or NULL.
 */
CREATE FUNCTION orderexp._reoffer(max_rows integer, lease interval, t timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b orderexp.batches;
	max_attempts integer := orderexp._max_attempts();
BEGIN
	LOOP
		SELECT x.* INTO b
		  FROM orderexp.batches x
		 WHERE x.id >= (SELECT c.open_from FROM orderexp.stream_cursor c)
		   AND x.finished_at IS NULL AND x.hi_snap IS NOT NULL AND x.leased_until <= t
		 ORDER BY x.id
		 LIMIT 1
		   FOR UPDATE SKIP LOCKED;
		IF NOT FOUND THEN
			RETURN NULL;
		END IF;
		IF b.attempts >= max_attempts THEN
			WITH dead AS (
				UPDATE orderexp.outbox o
				   SET txid = NULL, attempts = b.attempts, claimed_by = b.claimed_by,
					   leased_until = NULL, next_attempt_at = 'infinity', dead_at = t,
					   last_error = concat_ws('; ', 'lease of the last attempt expired without ack or fail',
											  o.last_error)
				 WHERE o.id IN (SELECT r.id FROM orderexp._batch_rows(b) r)
				RETURNING o.id, o.kind, o.last_error)
			INSERT INTO orderexp.outbox
			SELECT f.*
			  FROM dead d
			 CROSS JOIN LATERAL orderexp._fallback(d.id, d.last_error, false) f
			 WHERE d.kind = 'reminder';
			UPDATE orderexp.batches x SET finished_at = t, dead_at = t WHERE x.id = b.id;
			CONTINUE;
		END IF;
		UPDATE orderexp.outbox o
		   SET txid = NULL, attempts = b.attempts, claimed_by = b.claimed_by,
			   leased_until = NULL, next_attempt_at = t
		 WHERE o.id IN (SELECT r.id FROM orderexp._batch_rows(b) r
						 ORDER BY r.txid, r.id OFFSET max_rows);
		UPDATE orderexp.batches x
		   SET attempts = x.attempts + 1, claimed_by = session_user, leased_until = t + lease
		 WHERE x.id = b.id;
		RETURN b.id;
	END LOOP;
END;
$$;

/* claim()'s and next_batch()'s checks of their arguments */
CREATE FUNCTION orderexp._check_lease(max_rows integer, lease interval, t timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF max_rows IS NULL OR lease IS NULL THEN
		RAISE EXCEPTION 'max_rows and lease must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF max_rows <= 0 THEN
		RAISE EXCEPTION 'max_rows must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('max_rows is %s.', max_rows);
	END IF;
	IF NOT orderexp._positive_interval(lease) OR t + lease = t THEN
		RAISE EXCEPTION 'lease must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('lease is %s; each of its months, days and time must be zero or more.', lease),
				  HINT = 'Lease a row for longer than a delivery takes, e.g. ''30 s''.';
	END IF;
	IF t + lease > t + orderexp._max_lease() THEN
		RAISE EXCEPTION 'lease must be at most orderexp.max_lease'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('lease is %s; orderexp.max_lease is %s.', lease, orderexp._max_lease()),
				  HINT = 'Lease a row for a little longer than a delivery takes.';
	END IF;
END;
$$;

/*
 * The next batch of up to max_rows events for the calling role, leased for
 * lease (at most orderexp.max_lease): an expired batch coming back (its
 * next attempt), else the due rows that are claimed one by one (retries,
 * events that waited for an earlier one, rows from before batches) as a
 * batch of rows, else a new batch cut off the stream.  Returns the batch's
 * id, NULL when nothing is due; get_batch_events() lists its events,
 * finish_batch() marks them delivered, fail() reports one that was not.
 * Attempts are counted per batch, when it is handed out.
 */
CREATE FUNCTION orderexp.next_batch(max_rows integer DEFAULT 1000,
									lease interval DEFAULT '30 s')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t timestamptz := clock_timestamp();
	bid bigint;
	ids bigint[];
	due boolean;
BEGIN
	PERFORM orderexp._check_lease(max_rows, lease, t);
	IF orderexp._stream_foreign() THEN
		PERFORM orderexp._stream_adopt(t);
	END IF;
	due := orderexp._stream_due(t);
	IF due THEN
		bid := orderexp._reoffer(max_rows, lease, t);
		IF bid IS NOT NULL THEN
			RETURN bid;
		END IF;
	END IF;
	IF EXISTS (SELECT 1 FROM orderexp.outbox o
				WHERE o.next_attempt_at <= t AND o.delivered_at IS NULL AND o.txid IS NULL) THEN
		ids := ARRAY(SELECT r.id FROM orderexp._claim_rows(max_rows, lease, NULL, NULL, t) r);
	END IF;
	IF cardinality(ids) > 0 THEN
		INSERT INTO orderexp.batches AS nb (row_ids, created_at, claimed_by, leased_until)
		VALUES (ids, t, session_user, t + lease)
		RETURNING nb.id INTO bid;
		RETURN bid;
	END IF;
	IF NOT due THEN
		RETURN NULL;
	END IF;
	RETURN orderexp._cut_batch(max_rows, lease, t);
END;
$$;
COMMENT ON FUNCTION orderexp.next_batch(integer, interval) IS
	'lease the next batch of up to max_rows outbox events to the calling role (an expired batch again, rows due one by one, or new events); returns its id, NULL when nothing is due';

/* batch batch_id, locked, if the calling role holds it; else an error */
CREATE FUNCTION orderexp._my_batch(batch_id bigint)
RETURNS orderexp.batches
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b orderexp.batches;
BEGIN
	IF batch_id IS NULL THEN
		RAISE EXCEPTION 'batch_id must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO b FROM orderexp.batches x WHERE x.id = batch_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'batch % does not exist', batch_id
			USING ERRCODE = 'no_data_found';
	END IF;
	IF b.claimed_by <> session_user THEN
		RAISE EXCEPTION 'batch % was claimed by another role', batch_id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s holds it; only that role may read or finish it.',
								  b.claimed_by);
	END IF;
	RETURN b;
END;
$$;

/*
 * The events of a batch the calling role holds, in the order to deliver
 * them, with the batch's attempts and lease.  None once it is finished.
 */
CREATE FUNCTION orderexp.get_batch_events(batch_id bigint)
RETURNS SETOF orderexp.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b orderexp.batches;
BEGIN
	IF batch_id IS NULL THEN
		RAISE EXCEPTION 'batch_id must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO b FROM orderexp.batches x WHERE x.id = batch_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'batch % does not exist', batch_id
			USING ERRCODE = 'no_data_found';
	END IF;
	IF b.claimed_by <> session_user THEN
		RAISE EXCEPTION 'batch % was claimed by another role', batch_id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s holds it; only that role may read or finish it.',
								  b.claimed_by);
	END IF;
	IF b.finished_at IS NOT NULL THEN
		RETURN;
	END IF;
	IF b.hi_snap IS NULL THEN
		RETURN QUERY SELECT * FROM orderexp._batch_rows(b);
		RETURN;
	END IF;
	/* _batch_rows' stream events, written out: one copy of them less */
	RETURN QUERY
	SELECT o.id, o.kind, o.order_table, o.order_key, o.channel, o.payload, o.created_at,
		   b.attempts, b.leased_until, b.leased_until, NULL::timestamptz, o.last_error,
		   o.dead_at, b.claimed_by, o.obsolete_at, o.via, o.actor, o.reason, o.policy_id,
		   o.policy_version, o.variant, o.deadline, o.previous_deadline, o.event_ids, o.txid,
		   o.part
	  FROM orderexp.outbox o
	 WHERE o.txid IS NOT NULL AND o.delivered_at IS NULL
	   AND (o.txid, o.id) > (b.from_txid, b.from_id)
	   AND (o.txid, o.id) <= (b.to_txid, b.to_id)
	   AND pg_visible_in_snapshot(o.txid, b.hi_snap)
	   AND NOT pg_visible_in_snapshot(o.txid, b.lo_snap)
	 ORDER BY o.txid, o.id;
END;
$$;
COMMENT ON FUNCTION orderexp.get_batch_events(bigint) IS
	'the events of a batch the calling role holds (next_batch), in delivery order, with the batch''s attempts and lease';

/*
 * The calling role delivered its batch: every event of it that fail() did
 * not report is delivered now, a stream batch's by one write of the batch
 * row.  Returns how many events that delivered (0 for a batch finished
 * before, or whose rows' leases another claim took over).
 */
CREATE FUNCTION orderexp.finish_batch(batch_id bigint)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b orderexp.batches := orderexp._my_batch(batch_id);
	n integer;
BEGIN
	IF b.finished_at IS NOT NULL THEN
		RETURN 0;
	END IF;
	IF b.hi_snap IS NULL THEN
		UPDATE orderexp.outbox o
		   SET delivered_at = clock_timestamp(), leased_until = NULL
		 WHERE o.id IN (SELECT r.id FROM orderexp._batch_rows(b) r);
		GET DIAGNOSTICS n = ROW_COUNT;
	ELSE
		SELECT count(*) INTO n FROM orderexp._batch_ids(b);
	END IF;
	UPDATE orderexp.batches x SET finished_at = clock_timestamp() WHERE x.id = b.id;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION orderexp.finish_batch(bigint) IS
	'mark the events of a batch the calling role holds delivered (all but those fail() reported); returns how many';

/*
 * Adopt an event stream restored from a dump (see stream_origins): each
 * event still in the stream becomes a row of its own with the state its
 * dumped batch gave it (a finished batch's events delivered when it was
 * finished; an unfinished batch's events due now, with the batch's
 * attempts, since the relay that held it worked on another database; an
 * event not cut yet due as it was; "now" is t), the dumped batches go, and the cursor
 * starts afresh at the current snapshot.  Events written in the meantime
 * are rows already (_stream_txid()).  It runs once: under the cursor's
 * lock, and only while the origins differ.  claim(), next_batch() and the
 * pruning call it when _stream_foreign() says so.
 */
CREATE FUNCTION orderexp._stream_adopt(t timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c	orderexp.stream_cursor;
	b	orderexp.batches;
BEGIN
	SELECT * INTO c FROM orderexp.stream_cursor FOR UPDATE;
	IF NOT EXISTS (SELECT 1 FROM orderexp.stream_origins o WHERE o.origin <> c.origin) THEN
		RETURN;					/* adopted by another transaction meanwhile */
	END IF;
	/* a dead batch's events are dead rows already */
	FOR b IN SELECT x.* FROM orderexp.batches x
			  WHERE x.hi_snap IS NOT NULL AND x.dead_at IS NULL ORDER BY x.id LOOP
		UPDATE orderexp.outbox o
		   SET txid = NULL, attempts = b.attempts, claimed_by = b.claimed_by,
			   leased_until = NULL, delivered_at = b.finished_at,
			   next_attempt_at = CASE WHEN b.finished_at IS NULL THEN t
									  ELSE o.next_attempt_at END
		 WHERE o.id IN (SELECT k.id FROM orderexp._batch_ids(b) k);
	END LOOP;
	UPDATE orderexp.outbox o SET txid = NULL
	 WHERE o.txid IS NOT NULL AND o.delivered_at IS NULL;
	DELETE FROM orderexp.batches;
	UPDATE orderexp.stream_cursor
	   SET done_snap = orderexp._snapshot_for_cut(), next_snap = NULL, pos_txid = NULL,
		   pos_id = NULL;
	DELETE FROM orderexp.stream_origins o WHERE o.origin <> c.origin;
	RAISE LOG 'orderexp: adopted an event stream restored from a dump';
END;
$$;

/*
 * Retention of events delivered in batches (called by the worker's and
 * run_due()'s pruning, src/outbox.c).  The events themselves leave with
 * their rotating part (_rotate_outbox()); this moves batch_pruning's
 * pruned_to past the stream batches finished before cutoff, in the order
 * they were cut, up to max_rows batches, and stops at the first stream
 * batch that is not (dead batches and batches of rows are passed over:
 * their events are rows).  So every stream batch below pruned_to was
 * delivered before cutoff, which _stream_settled() turns into a horizon of
 * transaction ids for the rotation.  Then it deletes, by the index
 * outbox_0_forgotten, the stream events in outbox_0 that are not records
 * (records forget_before() forgot while their events were in the stream)
 * below that horizon.  Returns the events deleted.
 */
CREATE FUNCTION orderexp._prune_batches(cutoff timestamptz, max_rows integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b		record;
	pos		bigint;
	start	bigint;
	n		bigint;
BEGIN
	IF orderexp._stream_foreign() THEN
		PERFORM orderexp._stream_adopt(clock_timestamp());
	END IF;
	SELECT p.pruned_to INTO start FROM orderexp.batch_pruning p FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN 0;				/* another pruning is under way */
	END IF;
	pos := start;
	FOR b IN SELECT x.id, x.hi_snap IS NOT NULL AND x.dead_at IS NULL AS stream, x.finished_at
			   FROM orderexp.batches x WHERE x.id >= start ORDER BY x.id LIMIT max_rows LOOP
		EXIT WHEN b.stream AND (b.finished_at IS NULL OR b.finished_at >= cutoff);
		pos := b.id + 1;
	END LOOP;
	IF pos <> start THEN
		UPDATE orderexp.batch_pruning SET pruned_to = pos;
	END IF;
	DELETE FROM orderexp.outbox_0 o
	 WHERE o.txid < orderexp._stream_settled() AND o.txid IS NOT NULL AND o.via IS NULL
	   AND o.delivered_at IS NULL AND o.dead_at IS NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

/*
 * The stream's settled horizon: every event still in the stream whose
 * transaction id is below it was delivered by a stream batch below
 * batch_pruning.pruned_to, i.e. finished before the last pruning's cutoff.
 * A stream batch is cut off a snapshot, lo_snap, that saw every
 * transaction below its xmin as finished and whose events were cut into
 * the batches before it; so the horizon is the least such xmin of the
 * stream batches at or after pruned_to that are not dead (a batch split
 * off an older one comes later than the batches of later windows, hence
 * the least, not the first), or without any, the xmin of the cursor's
 * done_snap: events not yet cut are of transactions at or above it.
 */
CREATE FUNCTION orderexp._stream_settled()
RETURNS xid8
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce((SELECT min(pg_snapshot_xmin(b.lo_snap))
					   FROM orderexp.batches b, orderexp.batch_pruning p
					  WHERE b.id >= p.pruned_to AND b.hi_snap IS NOT NULL AND b.dead_at IS NULL),
					(SELECT pg_snapshot_xmin(c.done_snap) FROM orderexp.stream_cursor c))
$$;

/*
 * Rotation of the outbox's parts (see outbox_parts), called by the pruning
 * after _prune_batches() with the same cutoff and period (half the
 * retention): when the current part has been current for period and the
 * next one stopped being current before cutoff, the next one is emptied
 * and becomes current.  Its events that are not settled before cutoff move
 * to outbox_0 with their ids and state first: rows (txid NULL) not
 * delivered or made obsolete before cutoff (undelivered, retrying, dead,
 * or delivered since), and records, which belong in outbox_0 anyway (a
 * direct INSERT may have put one here).  A part with events still in the
 * stream at or above the horizon (_stream_settled()) is not emptied now:
 * its batches are not delivered, or not for the retention yet.
 *
 * The part is locked ACCESS EXCLUSIVE before it is read, so that no claim,
 * ack or fail changes a row while it moves, and no transaction that wrote
 * to the part is still running.  The lock is waited for lock_wait at most
 * (0: not at all): a relay reading the outbox holds it off, and waiting
 * longer would hold off every later reader; the next pruning tries again.
 * Returns the events kept, or NULL when nothing was rotated.
 */
CREATE FUNCTION orderexp._rotate_outbox(cutoff timestamptz, period interval,
									   lock_wait interval DEFAULT '100 ms')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur		orderexp.outbox_parts;
	nxt		orderexp.outbox_parts;
	horizon	xid8;
	moved_rows bigint;
	t		timestamptz := clock_timestamp();
	waited	text := current_setting('lock_timeout');
BEGIN
	/* too early: the common case, a read without a row lock (no WAL) */
	IF NOT EXISTS (SELECT 1 FROM orderexp.outbox_parts p
					WHERE p.closed_at IS NULL AND p.opened_at <= t - period) THEN
		RETURN NULL;
	END IF;
	SELECT * INTO cur FROM orderexp.outbox_parts p WHERE p.closed_at IS NULL
	   FOR UPDATE SKIP LOCKED;
	IF NOT FOUND OR cur.opened_at > t - period THEN
		RETURN NULL;			/* another rotation is under way, or was just done */
	END IF;
	SELECT * INTO nxt FROM orderexp.outbox_parts p WHERE p.part = cur.part % 3 + 1 FOR UPDATE;
	IF nxt.closed_at >= cutoff THEN
		RETURN NULL;
	END IF;
	horizon := orderexp._stream_settled();
	/* a cheap look first, without the lock: not now if its stream is not settled */
	IF EXISTS (SELECT 1 FROM orderexp.outbox o
				WHERE o.part = nxt.part AND o.txid >= horizon AND o.delivered_at IS NULL) THEN
		RETURN NULL;
	END IF;
	/*
	 * The lock, the move and the TRUNCATE in a subtransaction: a lock not
	 * had in time, or the part in use by a query of this very session (a
	 * cursor open on the outbox, run_due() called from a query that reads
	 * it: TRUNCATE refuses), leaves everything as it was for the next try
	 */
	BEGIN
		IF lock_wait > interval '0' THEN
			PERFORM set_config('lock_timeout',
							   (ceil(extract(epoch FROM lock_wait) * 1000))::bigint || 'ms', true);
		END IF;
		EXECUTE format('LOCK TABLE orderexp.%I IN ACCESS EXCLUSIVE MODE%s', 'outbox_' || nxt.part,
					   CASE WHEN lock_wait > interval '0' THEN '' ELSE ' NOWAIT' END);
		PERFORM set_config('lock_timeout', waited, true);
		/* and again under the lock: a transaction may have committed meanwhile */
		IF EXISTS (SELECT 1 FROM orderexp.outbox o
					WHERE o.part = nxt.part AND o.txid >= horizon AND o.delivered_at IS NULL) THEN
			RETURN NULL;
		END IF;
		WITH moved AS (
			INSERT INTO orderexp.outbox_0
			SELECT o.id, o.kind, o.order_table, o.order_key, o.channel, o.payload, o.created_at,
				   o.attempts, o.next_attempt_at, o.leased_until, o.delivered_at, o.last_error,
				   o.dead_at, o.claimed_by, o.obsolete_at, o.via, o.actor, o.reason, o.policy_id,
				   o.policy_version, o.variant, o.deadline, o.previous_deadline, o.event_ids,
				   o.txid, 0
			  FROM orderexp.outbox o
			 WHERE o.part = nxt.part
			   AND (o.via IS NOT NULL
					OR (o.txid IS NULL
						AND NOT coalesce(o.delivered_at < cutoff OR o.obsolete_at < cutoff, false)))
			RETURNING 1)
		SELECT count(*) INTO moved_rows FROM moved;
		EXECUTE format('TRUNCATE orderexp.%I', 'outbox_' || nxt.part);
	EXCEPTION WHEN lock_not_available OR object_in_use THEN
		PERFORM set_config('lock_timeout', waited, true);
		RETURN NULL;
	END;
	UPDATE orderexp.outbox_parts p SET closed_at = t WHERE p.part = cur.part;
	UPDATE orderexp.outbox_parts p
	   SET opened_at = t, closed_at = NULL, rotated_at = t, kept = moved_rows
	 WHERE p.part = nxt.part;
	RETURN moved_rows;
END;
$$;

/*
 * claim() as relays up to 1.2 call it, over both kinds of events: the rows
 * claimed one by one first (_claim_rows), then, with the room left,
 * batches (an expired one again, or a new one cut off the stream) whose
 * events it returns as rows, up to four: a batch smaller than the room
 * (one coming back, the end of a window) is followed by the next, since a
 * relay takes a claim of fewer than max_rows for "nothing more is due", as
 * it was with rows only.  ack() of all of a batch's events finishes
 * it; fail() takes one event out of it.  With kinds or channels, the
 * events of the batch that do not match leave the stream, claimable at
 * once by a claim that wants them (a write per such event: relays that
 * split the work by kind or channel cost what they cost before 1.3).
 */
CREATE FUNCTION orderexp.claim(max_rows integer DEFAULT 100,
							   lease interval DEFAULT '30 s',
							   kinds text[] DEFAULT NULL,
							   channels text[] DEFAULT NULL)
RETURNS SETOF orderexp.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t timestamptz := clock_timestamp();
	n integer := 0;
	got integer;
	bid bigint;
	b orderexp.batches;
BEGIN
	PERFORM orderexp._check_lease(max_rows, lease, t);
	IF orderexp._stream_foreign() THEN
		PERFORM orderexp._stream_adopt(t);
	END IF;
	/* rows due one by one (none, mostly, when events go into the stream) */
	IF EXISTS (SELECT 1 FROM orderexp.outbox o
				WHERE o.next_attempt_at <= t AND o.delivered_at IS NULL AND o.txid IS NULL) THEN
		RETURN QUERY SELECT * FROM orderexp._claim_rows(max_rows, lease, kinds, channels, t);
		GET DIAGNOSTICS n = ROW_COUNT;
	END IF;
	IF n >= max_rows OR NOT orderexp._stream_due(t) THEN
		RETURN;
	END IF;
	/*
	 * Batches until max_rows events are out.  A batch may give fewer or
	 * none: the end of a window, events that left the stream (waiting,
	 * withheld) and, for a filtered claim, the events it does not want,
	 * which become rows for the claims that want them.  So it goes on while
	 * batches come, for at most a tenth of the lease and a second: a relay
	 * is not told "nothing due" while its events wait further down the
	 * stream, and what it gets keeps most of its lease.
	 */
	LOOP
		EXIT WHEN n >= max_rows OR clock_timestamp() >= t + least(lease / 10, interval '1 s');
		bid := orderexp._reoffer(max_rows - n, lease, t);
		IF bid IS NULL THEN
			bid := orderexp._cut_batch(max_rows - n, lease, t);
		END IF;
		EXIT WHEN bid IS NULL;
		SELECT * INTO b FROM orderexp.batches x WHERE x.id = bid;
		IF kinds IS NOT NULL OR channels IS NOT NULL THEN
			UPDATE orderexp.outbox o
			   SET txid = NULL, attempts = b.attempts - 1, next_attempt_at = t,
				   leased_until = NULL, claimed_by = NULL
			 WHERE o.id IN (SELECT r.id FROM orderexp._batch_rows(b) r
							 WHERE NOT ((kinds IS NULL OR r.kind = ANY (kinds))
										AND (channels IS NULL OR r.channel = ANY (channels))));
		END IF;
		RETURN QUERY SELECT * FROM orderexp._batch_rows(b);
		GET DIAGNOSTICS got = ROW_COUNT;
		IF got = 0 THEN
			UPDATE orderexp.batches x SET finished_at = t WHERE x.id = b.id;
		END IF;
		n := n + got;
	END LOOP;
END;
$$;
COMMENT ON FUNCTION orderexp.claim(integer, interval, text[], text[]) IS
	'lease up to max_rows due outbox rows (SKIP LOCKED) to the calling role for at most orderexp.max_lease, counting the attempt; an expired lease makes a row claimable again';

/*
 * delivered: counts only rows that were not delivered before, and that the
 * calling role claimed (or that were claimed before 1.3 recorded who
 * claimed: no claimed_by, but a lease, so that an update of the extension
 * does not turn the acks of running relays into duplicates)
 */
CREATE FUNCTION orderexp.ack(ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
	b orderexp.batches;
	members integer;
	nacked integer;
	nfirst integer;
	scattered bigint[];
	end_txid xid8;
	end_id bigint;
BEGIN
	IF ids IS NULL THEN
		RAISE EXCEPTION 'ids must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	UPDATE orderexp.outbox o
	   SET delivered_at = clock_timestamp(), leased_until = NULL, dead_at = NULL,
		   obsolete_at = NULL
	 WHERE o.id = ANY (ids) AND o.delivered_at IS NULL AND o.txid IS NULL
	   AND (o.claimed_by = session_user
			OR (o.claimed_by IS NULL AND o.leased_until IS NOT NULL));
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n >= cardinality(ids) THEN
		RETURN n;
	END IF;
	/*
	 * Events of the caller's open batches.  All of a batch's finish it (one
	 * write).  Of some of them (a relay acks in groups as its deliveries
	 * end), those that make up the start of the batch become a finished
	 * batch of their own and the open one starts after them (two writes);
	 * the others acked leave the stream delivered; the rest come back when
	 * the batch's lease expires.
	 */
	FOR b IN SELECT x.*
			   FROM orderexp.batches x
			  WHERE x.id >= (SELECT c.open_from FROM orderexp.stream_cursor c)
				AND x.finished_at IS NULL AND x.hi_snap IS NOT NULL
				AND x.claimed_by = session_user
			  ORDER BY x.id
				FOR UPDATE
	LOOP
		SELECT count(*), count(*) FILTER (WHERE w.acked), count(*) FILTER (WHERE w.first),
			   array_agg(w.id) FILTER (WHERE w.acked AND NOT w.first),
			   (array_agg(w.txid ORDER BY w.txid DESC, w.id DESC) FILTER (WHERE w.first))[1],
			   (array_agg(w.id ORDER BY w.txid DESC, w.id DESC) FILTER (WHERE w.first))[1]
		  INTO members, nacked, nfirst, scattered, end_txid, end_id
		  FROM (SELECT r.txid, r.id, a.id IS NOT NULL AS acked,
					   bool_and(a.id IS NOT NULL) OVER (ORDER BY r.txid, r.id) AS first
				  FROM orderexp._batch_ids(b) r
				  LEFT JOIN (SELECT DISTINCT x AS id FROM unnest(ids) x) a ON a.id = r.id) w;
		CONTINUE WHEN nacked = 0;
		IF nacked = members THEN
			UPDATE orderexp.batches x SET finished_at = clock_timestamp() WHERE x.id = b.id;
		ELSE
			IF nfirst > 0 THEN
				INSERT INTO orderexp.batches (lo_snap, hi_snap, from_txid, from_id, to_txid, to_id,
											  created_at, attempts, claimed_by, leased_until,
											  finished_at)
				VALUES (b.lo_snap, b.hi_snap, b.from_txid, b.from_id, end_txid, end_id,
						b.created_at, b.attempts, b.claimed_by, b.leased_until, clock_timestamp());
				UPDATE orderexp.batches x SET from_txid = end_txid, from_id = end_id
				 WHERE x.id = b.id;
			END IF;
			IF scattered IS NOT NULL THEN
				UPDATE orderexp.outbox o
				   SET txid = NULL, attempts = b.attempts, claimed_by = b.claimed_by,
					   delivered_at = clock_timestamp(), leased_until = NULL
				 WHERE o.id = ANY (scattered);
			END IF;
		END IF;
		n := n + nacked;
	END LOOP;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION orderexp.ack(bigint[]) IS
	'mark outbox rows the calling role claimed delivered; returns how many were not delivered before (other ids are no error)';

/*
 * A failed attempt.  Back-off after attempt n (n = attempts, counted by
 * claim): 10 s * 2^(n-1), at most 1 hour, times a random factor in
 * [0.8, 1.2) so that rows that failed together do not come back together.
 * A failure that no retry can mend (retryable false: a mailbox that does not
 * exist, a webhook answering 410) makes the row dead at once.  Only the role
 * that claimed the row may report on it.  A reminder that dies may make way
 * for one on the order's next channel (_fallback).
 */
CREATE FUNCTION orderexp.fail(id bigint, error text, retryable boolean DEFAULT true)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r orderexp.outbox;
	t timestamptz := clock_timestamp();
	max_attempts integer := orderexp._max_attempts();
	next_at timestamptz;
	b orderexp.batches;
BEGIN
	IF fail.id IS NULL OR fail.error IS NULL OR fail.retryable IS NULL THEN
		RAISE EXCEPTION 'id, error and retryable must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Say what went wrong: it is kept in last_error.';
	END IF;
	SELECT * INTO r FROM orderexp.outbox o WHERE o.id = fail.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox row % does not exist', fail.id
			USING ERRCODE = 'no_data_found';
	END IF;
	/* an event of a batch leaves the stream, with the batch's attempts and lease */
	IF r.txid IS NOT NULL AND r.delivered_at IS NULL THEN
		b := orderexp._batch_of(r.txid, r.id);
		IF b.finished_at IS NOT NULL THEN
			r.delivered_at := b.finished_at;
		ELSIF b.id IS NOT NULL THEN
			UPDATE orderexp.outbox o
			   SET txid = NULL, attempts = b.attempts, claimed_by = b.claimed_by,
				   leased_until = b.leased_until, next_attempt_at = b.leased_until
			 WHERE o.id = fail.id
			RETURNING * INTO r;
		END IF;
	END IF;
	IF r.delivered_at IS NOT NULL THEN
		RAISE EXCEPTION 'outbox row % is already delivered', fail.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('It was acknowledged at %s.', r.delivered_at);
	END IF;
	IF r.dead_at IS NOT NULL THEN
		RAISE EXCEPTION 'outbox row % is dead', fail.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('It ran out of attempts at %s.', r.dead_at),
				  HINT = 'orderexp.requeue() makes it claimable again.';
	END IF;
	IF r.claimed_by IS NULL AND r.leased_until IS NULL THEN
		RAISE EXCEPTION 'outbox row % is not claimed', fail.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'A relay reports on the rows it claimed with orderexp.claim().';
	END IF;
	IF r.claimed_by <> session_user THEN
		RAISE EXCEPTION 'outbox row % was claimed by another role', fail.id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s claimed it; only that role may report on its delivery.',
								  r.claimed_by);
	END IF;

	IF NOT fail.retryable OR r.attempts >= max_attempts THEN
		UPDATE orderexp.outbox o
		   SET last_error = fail.error, leased_until = NULL,
			   next_attempt_at = 'infinity', dead_at = t
		 WHERE o.id = fail.id;
		/* a dead reminder makes way for its order's next channel (_fallback) */
		INSERT INTO orderexp.outbox
		SELECT * FROM orderexp._fallback(fail.id, fail.error, NOT fail.retryable);
		RETURN NULL;
	END IF;

	/* the exponent stops at 20 (10 s * 2^19 is past the cap) before it overflows */
	next_at := t + least(interval '10 s' * power(2, least(greatest(r.attempts, 1), 20) - 1),
						 interval '1 hour')
				 * (0.8 + 0.4 * random());
	UPDATE orderexp.outbox o
	   SET last_error = fail.error, leased_until = NULL, next_attempt_at = next_at
	 WHERE o.id = fail.id;
	RETURN next_at;
END;
$$;
COMMENT ON FUNCTION orderexp.fail(bigint, text, boolean) IS
	'record a failed delivery of a row the calling role claimed: retry with exponential back-off (returns when), or NULL when the row is now dead (out of attempts, or retryable false)';

/*
 * Dead rows (all of them, or those named) of the tables the caller owns
 * (every table's for a superuser) get a fresh set of attempts.
 * requeue() is the role gate in front of this body.
 */
CREATE FUNCTION orderexp._requeue(ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
	tables regclass[] := orderexp._tables_visible(orderexp._actor(), false);
BEGIN
	UPDATE orderexp.outbox o
	   SET dead_at = NULL, attempts = 0, leased_until = NULL, claimed_by = NULL,
		   next_attempt_at = clock_timestamp()
	 WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL
	   AND (ids IS NULL OR o.id = ANY (ids))
	   AND (tables IS NULL OR o.order_table = ANY (tables));
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM pg_notify('orderexp', json_build_object('kind', 'requeued', 'count', n)::text);
	END IF;
	RETURN n;
END;
$$;

CREATE FUNCTION orderexp.requeue(ids bigint[] DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_role_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.requeue(bigint[]) IS
	'dead outbox rows (all, or those named) of the tables the caller owns get a fresh set of attempts; returns how many';

/* ------------------------------------------------------------------------
 * Statistics helpers (for the views below)
 * ------------------------------------------------------------------------ */

/* two-sided p-value of a standard normal z (erf after Abramowitz-Stegun 7.1.26, error < 1.5e-7) */
CREATE FUNCTION orderexp._normal_p(z double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
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

/* ------------------------------------------------------------------------
 * Registered tables: what a DROP or ALTER TABLE does to them
 * ------------------------------------------------------------------------ */

/*
 * A dropped table takes its registration, policies and timers with it.  Runs
 * as the extension owner: whoever may drop a table may also make orderexp
 * forget it, and needs no privileges on orderexp's tables for that.  The
 * last index a table with plain deadlines finds its due orders by may not
 * be dropped (1.3): without it every sweep would read the whole table.
 */
CREATE FUNCTION orderexp._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped oid[];
	bare	regclass;
BEGIN
	SELECT array_agg(d.objid) INTO dropped
	  FROM pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
	   AND d.object_type IN ('table', 'partitioned table');
	IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
				WHERE d.classid = 'pg_class'::regclass AND d.object_type = 'index') THEN
		SELECT t.order_table INTO bare
		  FROM orderexp.tables t
		  JOIN orderexp.policies p ON p.order_table = t.order_table AND p.plain_since IS NOT NULL
		 WHERE t.order_table <> ALL (coalesce(dropped, '{}')::regclass[])
		   AND orderexp._plain_index(t) IS NULL
		 LIMIT 1;
		IF bare IS NOT NULL THEN
			RAISE EXCEPTION 'cannot drop the index table % finds its due orders by', bare
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = 'The table has plain deadlines: its orders without timer rows are found through an index on created-at, partial on the unpaid status.',
					  HINT = format('Create another such index first, or turn plain deadlines off: SELECT orderexp.set_plain_deadlines(%L, false);',
									bare::text);
		END IF;
	END IF;
	IF dropped IS NULL THEN
		RETURN;
	END IF;
	DELETE FROM orderexp.timers t WHERE t.order_table = ANY (dropped::regclass[]);
	DELETE FROM orderexp.unreachable_contacts u WHERE u.order_table = ANY (dropped::regclass[]);
	DELETE FROM orderexp.tables t WHERE t.order_table = ANY (dropped::regclass[]);
END;
$$;

/*
 * A registered table may be renamed (the registration names it by OID, and
 * its triggers go with it).  A mapped column may be renamed: the
 * registration and the timer triggers, whose arguments name the columns,
 * follow it.  A mapped column may not be dropped, nor changed to a type
 * orderexp cannot use, while the table is registered: the ALTER TABLE fails
 * with a clear error instead of leaving a trigger that would fail every
 * INSERT and a worker that would fail on the table every minute.
 */
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
				  || cfg.payload_columns
				  || CASE WHEN cfg.channels_column IS NULL THEN '{}'::name[]
						  ELSE ARRAY[cfg.channels_column] END
				  || cfg.contact_columns;
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
														  WHEN cfg.channels_column THEN 'the channels column'
														  ELSE CASE WHEN missing[1] = ANY (cfg.payload_columns)
																	THEN 'a payload column'
																	ELSE 'a contact column' END END),
						  HINT = 'Map another column with orderexp.set_close_policy(), or unregister the table with orderexp.drop_close_policy(), first.';
			END IF;
			UPDATE orderexp.tables t
			   SET key_column = CASE WHEN t.key_column = missing[1] THEN new_name ELSE t.key_column END,
				   status_column = CASE WHEN t.status_column = missing[1] THEN new_name ELSE t.status_column END,
				   created_column = CASE WHEN t.created_column = missing[1] THEN new_name ELSE t.created_column END,
				   category_column = CASE WHEN t.category_column = missing[1] THEN new_name ELSE t.category_column END,
				   partition_column = CASE WHEN t.partition_column = missing[1] THEN new_name ELSE t.partition_column END,
				   payload_columns = array_replace(t.payload_columns, missing[1], new_name),
				   channels_column = CASE WHEN t.channels_column = missing[1] THEN new_name ELSE t.channels_column END,
				   contact_columns = array_replace(t.contact_columns, missing[1], new_name)
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

		/* plain deadlines on created-at: SET/DROP NOT NULL (_needs_insert_trigger) */
		PERFORM orderexp._sync_triggers(cfg);
	END LOOP;
END;
$$;

/* ------------------------------------------------------------------------
 * Explanations and feedback: explain_order(), record_feedback() and the
 * templates of explanations (issue 19)
 * ------------------------------------------------------------------------ */

/*
 * Feedback about an order (record_feedback), kept with the policy version
 * and variant of the order so that policy_stats and experiment_stats can
 * count it; history() and explain_order() show it.  forget_before() deletes
 * it with the audit trail.
 */
CREATE TABLE orderexp.feedback (
	id				bigserial PRIMARY KEY,
	order_table		regclass NOT NULL,
	order_key		text COLLATE "C" NOT NULL,
	topic			text NOT NULL
					CHECK (topic IN ('complaint', 'closed too early', 'reminder not received',
									 'other')),
	body			text NOT NULL,
	recorded_by		name NOT NULL,
	recorded_at		timestamptz NOT NULL DEFAULT now(),
	policy_id		integer,
	policy_version	integer,
	variant			integer
);
/* history() and explain_order() read one order's; the statistics count per version */
CREATE INDEX feedback_order ON orderexp.feedback (order_table, order_key, id);
CREATE INDEX feedback_policy ON orderexp.feedback (policy_id, policy_version, variant);
COMMENT ON TABLE orderexp.feedback IS
	'what customers or staff said about an order (record_feedback), with the order''s policy version and variant';
COMMENT ON COLUMN orderexp.feedback.recorded_by IS
	'the role that called record_feedback';
COMMENT ON COLUMN orderexp.feedback.policy_version IS
	'the order''s policy version (its timer, else its last audit row, else its last outcome); NULL if orderexp never tracked it';
SELECT pg_catalog.pg_extension_config_dump('orderexp.feedback', '');
SELECT pg_catalog.pg_extension_config_dump('orderexp.feedback_id_seq', '');

/*
 * The sentences explain_order() is made of, one template per step and
 * language.  The rows with lang 'default' are orderexp's English texts:
 * the install script writes them, so pg_dump leaves them out (and a restore
 * gets those of the version installed); the shop's own (lang '*' for every
 * language, or a language tag) are dumped.
 */
CREATE TABLE orderexp.explanation_templates (
	step			text NOT NULL,
	lang			text NOT NULL,
	template		text NOT NULL,
	PRIMARY KEY (step, lang)
);
COMMENT ON TABLE orderexp.explanation_templates IS
	'templates of explain_order(), per step and language: lang ''default'' is orderexp''s English, ''*'' the shop''s for every language';
SELECT pg_catalog.pg_extension_config_dump('orderexp.explanation_templates',
										   'WHERE lang <> ''default''');

/*
 * The steps of an explanation and the placeholders each may use, in the
 * order explain_order() tells them when they happen at the same time.
 * Every step also knows {order}, the order's key.
 */
CREATE FUNCTION orderexp._explanation_steps()
RETURNS TABLE (step text, placeholders text[], rank integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.step, '{order}'::text[] || s.placeholders, s.rank
	  FROM (VALUES
		('placed',				'{at}'::text[], 0),
		('policy',				'{policy,version,category,timeout,timeout_iso}', 1),
		('policy_variant',		'{policy,version,category,timeout,timeout_iso,experiment,variant}', 1),
		('reminder_delivered',	'{at,channel,delivered_at}', 2),
		('reminder_pending',	'{at,channel,attempts}', 2),
		('reminder_dead',		'{at,channel,attempts,error,dead_at}', 2),
		('extension_offered',	'{at,extend_by,extend_by_iso,extensions_left}', 3),
		('extended_token',		'{at,deadline,previous_deadline,by,by_iso,n,extensions_left}', 4),
		('extended_staff',		'{at,deadline,previous_deadline,by,by_iso,n,actor}', 4),
		('paid',				'{at}', 5),
		('closed',				'{at,deadline}', 5),
		('cancelled',			'{at,actor,reason,deadline}', 5),
		('cancelled_no_reason',	'{at,actor,deadline}', 5),
		('reopened',			'{at,actor,reason,deadline}', 6),
		('reopened_no_reason',	'{at,actor,deadline}', 6),
		/* withheld when claimed, after the change that made it stale */
		('reminder_withheld',	'{at,channel,reason,deadline}', 7),
		('feedback',			'{at,actor,topic,body}', 8),
		('pending',				'{deadline}', 9)) AS s(step, placeholders, rank)
$$;
COMMENT ON FUNCTION orderexp._explanation_steps() IS
	'the steps of explain_order() with the placeholders each template may use';

INSERT INTO orderexp.explanation_templates (step, lang, template) VALUES
	('placed', 'default', 'Order {order} was placed on {at}.'),
	('policy', 'default',
	 'Under close policy {policy} (version {version}, category {category}) it had {timeout} to be paid.'),
	('policy_variant', 'default',
	 'Under close policy {policy} (version {version}, category {category}) it was in variant {variant} of experiment {experiment} and had {timeout} to be paid.'),
	('reminder_delivered', 'default',
	 'A reminder by {channel} was sent on {at} and delivered on {delivered_at}.'),
	('reminder_pending', 'default',
	 'A reminder by {channel} was sent on {at} and has not been delivered yet (attempts so far: {attempts}).'),
	('reminder_dead', 'default',
	 'A reminder by {channel} was sent on {at} but could not be delivered (attempts: {attempts}; last error: {error}).'),
	('reminder_withheld', 'default',
	 'A reminder by {channel} was not sent on {at} because {reason}.'),
	('extension_offered', 'default',
	 'The reminder let the customer extend the order by {extend_by} through a link (extensions left: {extensions_left}).'),
	('extended_token', 'default',
	 'On {at} the customer extended the order through the link by {by}, to {deadline} (extensions left: {extensions_left}).'),
	('extended_staff', 'default',
	 'On {at} {actor} extended the order by {by}, to {deadline}.'),
	('paid', 'default', 'It was paid on {at}.'),
	('closed', 'default',
	 'It was closed on {at} because it was not paid by its deadline, {deadline}.'),
	('cancelled', 'default', 'It was cancelled on {at} by {actor} ("{reason}").'),
	('cancelled_no_reason', 'default', 'It was cancelled on {at} by {actor}.'),
	('reopened', 'default',
	 'On {at} {actor} reopened it ("{reason}") with a new deadline of {deadline}.'),
	('reopened_no_reason', 'default',
	 'On {at} {actor} reopened it with a new deadline of {deadline}.'),
	('feedback', 'default', 'On {at} {actor} recorded feedback ({topic}): "{body}".'),
	('pending', 'default', 'It is unpaid; its deadline is {deadline}.');

/* a time as explain_order() writes it, whatever the session's TimeZone and DateStyle */
CREATE FUNCTION orderexp._explain_time(t timestamptz)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC'
$$;

/*
 * An interval in English words ("1 day 2 hours 30 minutes"), whatever the
 * session's IntervalStyle; seconds only when there are some.
 */
CREATE FUNCTION orderexp._explain_interval(i interval)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(string_agg(u.n::text || ' ' || u.unit || CASE WHEN u.n = 1 THEN '' ELSE 's' END,
							   ' ' ORDER BY u.pos), '0 minutes')
	  FROM (VALUES (1, 'year', extract(year FROM i)::bigint),
				   (2, 'month', extract(month FROM i)::bigint),
				   (3, 'day', extract(day FROM i)::bigint),
				   (4, 'hour', extract(hour FROM i)::bigint),
				   (5, 'minute', extract(minute FROM i)::bigint),
				   (6, 'second', trunc(extract(second FROM i))::bigint)) AS u(pos, unit, n)
	 WHERE u.n <> 0
$$;

/*
 * A template with its {placeholders} replaced by the values in vals (a
 * missing or NULL value by nothing), in one pass, so that a value that
 * holds "{...}" stays as it is.
 */
CREATE FUNCTION orderexp._explain_fill(template text, vals jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parts text[] := regexp_split_to_array(template, '\{[a-z_]+\}');
	names text[] := ARRAY(SELECT m.m[1]
							FROM regexp_matches(template, '\{([a-z_]+)\}', 'g')
								 WITH ORDINALITY AS m(m, n)
						   ORDER BY m.n);
	result text := parts[1];
BEGIN
	FOR i IN 1 .. coalesce(cardinality(names), 0) LOOP
		result := result || coalesce(vals ->> names[i], '') || parts[i + 1];
	END LOOP;
	RETURN result;
END;
$$;

/*
 * Why an order is where it is, as one paragraph: a sentence per step from
 * the templates of lang (then its language without the region, then the
 * shop's '*', then orderexp's 'default').  Built from what history() reads
 * (audit rows, policy versions, experiments), the order's reminders in the
 * outbox, its outcomes, its feedback and its timer, all read as the
 * extension owner; the orders table only through _orders_exec(), as the
 * caller.  Steps are told in the order of their time, then of their rank
 * in _explanation_steps(), then of their ids; times in UTC, intervals in
 * words: the same history gives the same text in every session.
 * explain_order() is the gate in front of this body.
 */
CREATE FUNCTION orderexp._explain_order(orders regclass, order_key anyelement, lang text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg orderexp.tables;
	k	text;
	ord jsonb;
	created timestamptz;
	tm	orderexp.timers;
	pid integer;
	pver integer;
	pvar integer;
	pv	orderexp.policy_versions;
	exp_variants interval[];
	timeout interval;
	a	orderexp.audit;
	o	record;
	f	orderexp.feedback;
	r	record;
	n_ext integer := 0;
	n_token integer := 0;
	max_ext integer;
	last_wave timestamptz;
	/* the steps: parallel arrays, sorted at the end */
	s_at timestamptz[] := '{}';
	s_sub bigint[] := '{}';
	s_step text[] := '{}';
	s_vals jsonb[] := '{}';
	result text;
BEGIN
	IF lang IS NOT NULL AND lang !~ '^[A-Za-z0-9_-]{1,35}$' THEN
		RAISE EXCEPTION 'invalid language %', quote_literal(lang)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A language is a tag such as ''de'' or ''de-AT'' (letters, digits, ''-'', ''_''), or NULL for the shop''s texts.';
	END IF;
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);

	/* the order itself, read as the caller: is it there, when was it placed, is it unpaid */
	SELECT r2 INTO ord
	  FROM orderexp._orders_exec(orders, false,
			format('SELECT %s, o.%I::text AS st FROM %s o WHERE o.%I = $1::%s',
				   orderexp._plain_cols(cfg),
				   cfg.status_column, orders, cfg.key_column, cfg.key_type),
			ARRAY[k]) r2;
	IF ord IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, orders
			USING ERRCODE = 'no_data_found';
	END IF;
	created := (ord ->> 'stored')::timestamptz;

	/* the policy the order started under: its first change, else its outcome, else its timer */
	SELECT * INTO tm FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	IF NOT FOUND THEN
		/* a plain deadline: the timer row it stands for */
		tm := orderexp._plain_timer(cfg, k, ord);
	END IF;
	SELECT x.policy_id, x.policy_version, x.variant INTO pid, pver, pvar
	  FROM orderexp.audit x
	 WHERE x.order_table = orders AND x.order_key = k AND x.policy_version IS NOT NULL
	 ORDER BY x.at, x.id LIMIT 1;
	IF pid IS NULL THEN
		SELECT x.policy_id, x.policy_version, x.variant INTO pid, pver, pvar
		  FROM orderexp.outcomes x
		 WHERE x.order_table = orders AND x.order_key = k AND x.policy_id IS NOT NULL
		 ORDER BY x.decided_at LIMIT 1;
	END IF;
	IF pid IS NULL THEN
		pid := tm.policy_id;
		pver := tm.policy_version;
		pvar := tm.variant;
	END IF;

	IF created IS NOT NULL THEN
		s_at := s_at || created;
		s_sub := s_sub || 0::bigint;
		s_step := s_step || 'placed'::text;
		s_vals := s_vals || jsonb_build_object('at', orderexp._explain_time(created));
	END IF;

	SELECT * INTO pv FROM orderexp.policy_versions v WHERE v.policy_id = pid AND v.version = pver;
	IF FOUND THEN
		SELECT e.variants INTO exp_variants FROM orderexp.experiments e WHERE e.id = pv.experiment_id;
		timeout := CASE WHEN pvar IS NOT NULL AND exp_variants IS NOT NULL
						THEN exp_variants[pvar] ELSE pv.close_after END;
		s_at := s_at || coalesce(created, '-infinity');
		s_sub := s_sub || 0::bigint;
		s_step := s_step || CASE WHEN pvar IS NOT NULL AND exp_variants IS NOT NULL
								 THEN 'policy_variant' ELSE 'policy' END;
		s_vals := s_vals || jsonb_build_object(
			'policy', pid, 'version', pver, 'category', coalesce(pv.category, 'default'),
			'timeout', orderexp._explain_interval(timeout),
			'timeout_iso', orderexp._iso_interval(timeout),
			'experiment', pv.experiment_id, 'variant', pvar);
	END IF;

	/*
	 * The reminders: one outbox row per channel, found by outbox_history
	 * (which has an order's reminders besides its records, for this reason
	 * alone: the outbox keeps the history); a reminder that offered an extension
	 * link is followed by one extension_offered step.  Sent reminders write
	 * no audit row: once their outbox rows are pruned
	 * (orderexp.event_retention after delivery), they are not told.  Those
	 * claim() withheld are told from their audit rows, below.
	 */
	FOR r IN SELECT x.id, x.channel, x.created_at, x.delivered_at, x.dead_at, x.attempts,
					x.last_error, x.payload
			   FROM orderexp.outbox_state x
			  WHERE x.kind = 'reminder' AND x.order_table = orders AND x.order_key = k
				AND x.obsolete_at IS NULL
			  ORDER BY x.created_at, x.id
	LOOP
		s_at := s_at || r.created_at;
		s_sub := s_sub || r.id;
		s_step := s_step || CASE WHEN r.delivered_at IS NOT NULL THEN 'reminder_delivered'
								 WHEN r.dead_at IS NOT NULL THEN 'reminder_dead'
								 ELSE 'reminder_pending' END;
		s_vals := s_vals || jsonb_build_object(
			'at', orderexp._explain_time(r.created_at), 'channel', r.channel,
			'delivered_at', orderexp._explain_time(r.delivered_at),
			'dead_at', orderexp._explain_time(r.dead_at),
			'attempts', r.attempts, 'error', r.last_error);
		/* offered by a reminder that reached, or may still reach, the customer */
		IF r.payload ->> 'extension_token' IS NOT NULL AND r.dead_at IS NULL
		   AND r.created_at IS DISTINCT FROM last_wave THEN
			last_wave := r.created_at;
			s_at := s_at || r.created_at;
			s_sub := s_sub || r.id;
			s_step := s_step || 'extension_offered'::text;
			s_vals := s_vals || jsonb_build_object(
				'at', orderexp._explain_time(r.created_at),
				'extend_by', orderexp._explain_interval((r.payload ->> 'extend_by')::interval),
				'extend_by_iso', r.payload ->> 'extend_by',
				'extensions_left', r.payload -> 'extensions_left');
		END IF;
	END LOOP;

	/* the changes orderexp made, oldest first */
	FOR a IN SELECT * FROM orderexp.audit x
			  WHERE x.order_table = orders AND x.order_key = k ORDER BY x.at, x.id
	LOOP
		s_at := s_at || a.at;
		s_sub := s_sub || a.id;
		IF a.action = 'extended' THEN
			n_ext := n_ext + 1;
			IF a.via = 'token' THEN
				n_token := n_token + 1;
			END IF;
			SELECT v.max_extensions INTO max_ext FROM orderexp.policy_versions v
			 WHERE v.policy_id = a.policy_id AND v.version = a.policy_version;
			s_step := s_step || CASE a.via WHEN 'token' THEN 'extended_token'
											ELSE 'extended_staff' END;
			s_vals := s_vals || jsonb_build_object(
				'at', orderexp._explain_time(a.at), 'deadline', orderexp._explain_time(a.deadline),
				'previous_deadline', orderexp._explain_time(a.previous_deadline),
				'by', orderexp._explain_interval(a.deadline - a.previous_deadline),
				'by_iso', orderexp._iso_interval(a.deadline - a.previous_deadline),
				'n', n_ext, 'extensions_left', greatest(max_ext - n_token, 0),
				'actor', a.actor);
		ELSIF a.action = 'reminder_withheld' THEN
			/* claim() settled a reminder that no longer mattered; the reason is its own */
			s_step := s_step || 'reminder_withheld'::text;
			s_vals := s_vals || jsonb_build_object(
				'at', orderexp._explain_time(a.at), 'deadline', orderexp._explain_time(a.deadline),
				'reason', regexp_replace(a.reason, '^reminder not sent: ', ''),
				'channel', (SELECT x.channel FROM orderexp.outbox x WHERE x.id = a.event_ids[1]));
		ELSE
			IF a.action = 'reopened' THEN
				/* a reopened order starts counting its customer's extensions afresh */
				n_token := 0;
			END IF;
			s_step := s_step || CASE WHEN a.action IN ('cancelled', 'reopened') AND a.reason IS NULL
									 THEN a.action || '_no_reason' ELSE a.action END;
			s_vals := s_vals || jsonb_build_object(
				'at', orderexp._explain_time(a.at), 'deadline', orderexp._explain_time(a.deadline),
				'actor', a.actor, 'reason', a.reason);
		END IF;
	END LOOP;

	/* payments, from the outcomes (a table without indexes: read whole) */
	FOR o IN SELECT x.decided_at FROM orderexp.outcomes x
			  WHERE x.order_table = orders AND x.order_key = k AND x.outcome = 'paid'
			  ORDER BY x.decided_at
	LOOP
		s_at := s_at || o.decided_at;
		s_sub := s_sub || 0::bigint;
		s_step := s_step || 'paid'::text;
		s_vals := s_vals || jsonb_build_object('at', orderexp._explain_time(o.decided_at));
	END LOOP;

	FOR f IN SELECT * FROM orderexp.feedback x
			  WHERE x.order_table = orders AND x.order_key = k ORDER BY x.id
	LOOP
		s_at := s_at || f.recorded_at;
		s_sub := s_sub || f.id;
		s_step := s_step || 'feedback'::text;
		s_vals := s_vals || jsonb_build_object(
			'at', orderexp._explain_time(f.recorded_at), 'actor', f.recorded_by,
			'topic', f.topic, 'body', f.body);
	END LOOP;

	/* still unpaid and tracked: its deadline now (a paid order's timer lingers) */
	IF tm.order_key IS NOT NULL AND ord ->> 'st' = cfg.unpaid_value THEN
		s_at := s_at || 'infinity'::timestamptz;
		s_sub := s_sub || 0::bigint;
		s_step := s_step || 'pending'::text;
		s_vals := s_vals || jsonb_build_object('deadline', orderexp._explain_time(tm.close_at));
	END IF;

	SELECT string_agg(orderexp._explain_fill(t.template, s.vals || jsonb_build_object('order', k)),
					  ' ' ORDER BY s.at, st.rank, s.sub, s.n)
	  INTO result
	  FROM unnest(s_at, s_sub, s_step, s_vals) WITH ORDINALITY AS s(at, sub, step, vals, n)
	  JOIN orderexp._explanation_steps() st ON st.step = s.step
	 CROSS JOIN LATERAL (
			SELECT x.template FROM orderexp.explanation_templates x
			 WHERE x.step = s.step
			   AND x.lang IN ($3, split_part($3, '-', 1), '*', 'default')
			 ORDER BY CASE x.lang WHEN $3 THEN 0 WHEN split_part($3, '-', 1) THEN 1
								  WHEN '*' THEN 2 ELSE 3 END
			 LIMIT 1) t;
	RETURN coalesce(result, '');
END;
$$;

CREATE FUNCTION orderexp.explain_order(orders regclass, order_key anyelement,
									   lang text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.explain_order(regclass, anyelement, text) IS
	'why an order is where it is, as one paragraph in the shop''s words (explanation_templates)';

/*
 * Feedback about one order, with the order's policy version and variant
 * (its timer's, else its last audit row's, else its last outcome's).
 * record_feedback() is the gate in front of this body.
 */
CREATE FUNCTION orderexp._record_feedback(orders regclass, order_key anyelement, topic text,
										  body text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actor name := orderexp._actor();
	cfg orderexp.tables;
	k	text;
	pid integer;
	pver integer;
	pvar integer;
	ord jsonb;
	tm	orderexp.timers;
	id	bigint;
BEGIN
	IF topic IS NULL OR body IS NULL THEN
		RAISE EXCEPTION 'topic and body must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF topic NOT IN ('complaint', 'closed too early', 'reminder not received', 'other') THEN
		RAISE EXCEPTION 'unknown feedback topic %', quote_literal(topic)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The topics are ''complaint'', ''closed too early'', ''reminder not received'' and ''other''.';
	END IF;
	IF btrim(body) = '' THEN
		RAISE EXCEPTION 'feedback body must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(body) > orderexp._max_reason_length() THEN
		RAISE EXCEPTION 'feedback body is too long'
			USING ERRCODE = 'string_data_right_truncation',
				  DETAIL = format('It has %s bytes; orderexp.max_reason_length is %s.',
								  octet_length(body), orderexp._max_reason_length()),
				  HINT = 'Feedback goes into the order''s history: keep it short.';
	END IF;
	cfg := orderexp._config(orders);
	k := orderexp._key_text(cfg, order_key::text);
	SELECT r INTO ord
	  FROM orderexp._orders_exec(orders, false,
			format('SELECT o.%I::text AS st, %s FROM %s o WHERE o.%I = $1::%s',
				   cfg.status_column, orderexp._plain_cols(cfg), orders, cfg.key_column,
				   cfg.key_type),
			ARRAY[k]) r;
	IF ord IS NULL THEN
		RAISE EXCEPTION 'order % not found in table %', k, orders
			USING ERRCODE = 'no_data_found';
	END IF;

	SELECT t.policy_id, t.policy_version, t.variant INTO pid, pver, pvar
	  FROM orderexp.timers t WHERE t.order_table = orders AND t.order_key = k;
	IF pid IS NULL THEN
		SELECT x.policy_id, x.policy_version, x.variant INTO pid, pver, pvar
		  FROM orderexp.audit x
		 WHERE x.order_table = orders AND x.order_key = k AND x.policy_version IS NOT NULL
		 ORDER BY x.at DESC, x.id DESC LIMIT 1;
	END IF;
	IF pid IS NULL THEN
		/* a paid order: its outcome (a table without indexes, read whole) */
		SELECT x.policy_id, x.policy_version, x.variant INTO pid, pver, pvar
		  FROM orderexp.outcomes x
		 WHERE x.order_table = orders AND x.order_key = k AND x.policy_id IS NOT NULL
		 ORDER BY x.decided_at DESC LIMIT 1;
	END IF;
	IF pid IS NULL THEN
		/* an unpaid order with a plain deadline */
		tm := orderexp._plain_timer(cfg, k, ord);
		pid := tm.policy_id;
		pver := tm.policy_version;
	END IF;

	INSERT INTO orderexp.feedback (order_table, order_key, topic, body, recorded_by,
								   policy_id, policy_version, variant)
	VALUES (orders, k, topic, body, actor, pid, pver, pvar)
	RETURNING feedback.id INTO id;
	RETURN id;
END;
$$;

CREATE FUNCTION orderexp.record_feedback(orders regclass, order_key anyelement, topic text,
										 body text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.record_feedback(regclass, anyelement, text, text) IS
	'record feedback about one order (topic: complaint, closed too early, reminder not received, other); returns its id';

/*
 * The shop's own template of a step, for one language (NULL: '*', every
 * language); a NULL template removes it, and orderexp's default applies
 * again.  Every {placeholder} must be one the step knows.
 * set_explanation_template() is the role gate in front of this body.
 */
CREATE FUNCTION orderexp._set_explanation_template(step text, template text, lang text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[];
	unknown text;
BEGIN
	IF step IS NULL THEN
		RAISE EXCEPTION 'step must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT s.placeholders INTO known FROM orderexp._explanation_steps() s WHERE s.step = $1;
	IF known IS NULL THEN
		RAISE EXCEPTION 'unknown explanation step %', quote_literal(step)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('The steps are %s.',
								(SELECT string_agg(s.step, ', ' ORDER BY s.rank, s.step)
								   FROM orderexp._explanation_steps() s));
	END IF;
	IF lang IS NOT NULL AND (lang !~ '^[A-Za-z0-9_-]{1,35}$' OR lang = 'default') THEN
		RAISE EXCEPTION 'invalid language %', quote_literal(lang)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A language is a tag such as ''de'' or ''de-AT'' (letters, digits, ''-'', ''_''; not ''default''), or NULL for every language.';
	END IF;
	IF template IS NULL THEN
		DELETE FROM orderexp.explanation_templates x
		 WHERE x.step = $1 AND x.lang = coalesce($3, '*');
		RETURN;
	END IF;
	IF btrim(template) = '' THEN
		RAISE EXCEPTION 'template must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(template) > orderexp._max_reason_length() THEN
		RAISE EXCEPTION 'template is too long'
			USING ERRCODE = 'string_data_right_truncation',
				  DETAIL = format('It has %s bytes; orderexp.max_reason_length is %s.',
								  octet_length(template), orderexp._max_reason_length());
	END IF;
	/* anything in braces must be a placeholder of the step */
	SELECT m.m[1] INTO unknown
	  FROM regexp_matches(template, '\{([^{}]*)\}', 'g') WITH ORDINALITY AS m(m, n)
	 WHERE m.m[1] <> ALL (known)
	 ORDER BY m.n LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown placeholder {%} in template of step %', unknown, quote_literal(step)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = format('Step %s knows {%s}.', step, array_to_string(known, '}, {'));
	END IF;
	INSERT INTO orderexp.explanation_templates AS x (step, lang, template)
	VALUES ($1, coalesce($3, '*'), $2)
	ON CONFLICT ON CONSTRAINT explanation_templates_pkey
	DO UPDATE SET template = EXCLUDED.template;
END;
$$;

CREATE FUNCTION orderexp.set_explanation_template(step text, template text, lang text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'orderexp_role_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.set_explanation_template(text, text, text) IS
	'the shop''s own template of an explain_order() step, for one language (NULL: every language); a NULL template removes it';

/* ------------------------------------------------------------------------
 * Views, and the function behind pending
 * ------------------------------------------------------------------------ */

/*
 * The tables a role answers for in orderexp: those it owns, directly or
 * through a role whose privileges it has (as ALTER TABLE counts ownership),
 * or NULL for every table: a superuser's, and, when relays is true, a
 * member of orderexp_relay's (a relay delivers every table's events).  The
 * views filter with it for current_user; the role-gated functions
 * (forget_before, requeue, pending_json) for orderexp._actor().
 */
CREATE FUNCTION orderexp._tables_visible(role name, relays boolean)
RETURNS regclass[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = role)
			 OR (relays AND pg_catalog.pg_has_role(role, 'orderexp_relay', 'USAGE'))
			THEN NULL
		ELSE (SELECT coalesce(pg_catalog.array_agg(c.oid::pg_catalog.regclass), '{}')
				FROM pg_catalog.pg_class c
			   WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[])
				 AND pg_catalog.pg_has_role(role, c.relowner, 'USAGE'))
	END
$$;
COMMENT ON FUNCTION orderexp._tables_visible(name, boolean) IS
	'the tables role owns (NULL: all, for a superuser, or for a relay when relays)';

/*
 * Tracked orders that are still unpaid in their table, with their deadlines,
 * of the tables the caller owns (every table's for a superuser), as a JSON
 * array.  pending_json() is the role gate in front of this body: it reads
 * the timers as the extension owner, the orders as each table's owner.
 */
CREATE FUNCTION orderexp._pending_json()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tables regclass[] := orderexp._tables_visible(orderexp._actor(), false);
	cfg orderexp.tables;
	part jsonb;
	result jsonb := '[]';
BEGIN
	FOR cfg IN SELECT t.* FROM orderexp.tables t
				 JOIN pg_class c ON c.oid = t.order_table
				WHERE tables IS NULL OR t.order_table = ANY (tables)
				ORDER BY t.order_table::text
	LOOP
	  BEGIN
		/*
		 * The unpaid rows among the tracked ones, read as the table's owner
		 * (the casts of its key and category may be the owner's code)
		 */
		SELECT coalesce(jsonb_agg(jsonb_build_object(
					'order_table', t.order_table::oid, 'order_key', t.order_key,
					'category', o.category, 'policy_id', t.policy_id, 'close_at', t.close_at,
					'remind_at', t.remind_at, 'extensions', t.extensions)
				ORDER BY t.close_at), '[]')
		  INTO part
		  FROM orderexp.timers t
		  JOIN (SELECT r ->> 'k' AS k, r ->> 'category' AS category
				  FROM orderexp._orders_exec(cfg.order_table, true,
						format('SELECT o.%I::text AS k, %s AS category FROM %s o WHERE o.%I = ANY ($1::%s[]) AND o.%I::text = $2',
							   cfg.key_column, orderexp._category_expr(cfg),
							   cfg.order_table, cfg.key_column, cfg.key_type, cfg.status_column),
						ARRAY[(SELECT coalesce(array_agg(x.order_key), '{}') FROM orderexp.timers x
								WHERE x.order_table = cfg.order_table)::text,
							  cfg.unpaid_value]) r) o ON o.k = t.order_key
		 WHERE t.order_table = cfg.order_table;
		/* and those with plain deadlines, which have no timer row */
		IF EXISTS (SELECT 1 FROM orderexp.policies p
					WHERE p.order_table = cfg.order_table AND p.plain_since IS NOT NULL) THEN
			SELECT jsonb_agg(e ORDER BY (e ->> 'close_at')::timestamptz, e ->> 'order_key')
			  INTO part
			  FROM (SELECT jsonb_array_elements(part) AS e
					UNION ALL
					SELECT jsonb_build_object(
							'order_table', cfg.order_table::oid, 'order_key', x.order_key,
							'category', x.category, 'policy_id', x.policy_id,
							'close_at', x.close_at, 'remind_at', NULL, 'extensions', 0)
					  FROM orderexp._plain_pending(cfg) x) u;
			part := coalesce(part, '[]');
		END IF;
		result := result || part;
	  EXCEPTION WHEN OTHERS THEN
		/* one table with a broken mapping does not hide the others */
		RAISE WARNING 'orderexp.pending skips table %: %', cfg.order_table, SQLERRM
			USING HINT = 'Register the table again with orderexp.set_close_policy().';
	  END;
	END LOOP;
	RETURN result;
END;
$$;

CREATE FUNCTION orderexp.pending_json()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orderexp_role_gate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION orderexp.pending_json() IS
	'pending as a JSON array: unpaid tracked orders of the tables the caller owns';

/* pending_json() as rows */
CREATE FUNCTION orderexp.pending_orders()
RETURNS TABLE (order_table regclass, order_key text, category text, policy_id integer,
			   close_at timestamptz, remind_at timestamptz, extensions integer,
			   time_left interval)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (p.r ->> 'order_table')::oid::regclass, p.r ->> 'order_key', p.r ->> 'category',
		   (p.r ->> 'policy_id')::integer, (p.r ->> 'close_at')::timestamptz,
		   (p.r ->> 'remind_at')::timestamptz, (p.r ->> 'extensions')::integer,
		   (p.r ->> 'close_at')::timestamptz - now()
	  FROM jsonb_array_elements(orderexp.pending_json()) WITH ORDINALITY AS p(r, n)
	 ORDER BY p.n
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
		   t.last_error, t.last_error_at, t.channels_column, t.contact_channels,
		   t.contact_columns, t.fallback_before
	  FROM orderexp.tables t JOIN orderexp.policies p USING (order_table)
	 CROSS JOIN (SELECT orderexp._tables_visible(current_user, false) AS tables) vis
	 WHERE vis.tables IS NULL OR t.order_table = ANY (vis.tables);
COMMENT ON VIEW orderexp.policy_config IS
	'every close policy of the tables the current user owns, with the column mapping of its table';

/*
 * Orders a reminder could not reach on a channel (channel NULL: on none of
 * the order's channels, and no reminder went out), of the tables the
 * current user owns
 */
CREATE VIEW orderexp.unreachable AS
	SELECT u.order_table, u.order_key, nullif(u.channel, '') AS channel, u.contact, u.why,
		   u.since
	  FROM orderexp.unreachable_contacts u
	 CROSS JOIN (SELECT orderexp._tables_visible(current_user, false) AS tables) vis
	 WHERE vis.tables IS NULL OR u.order_table = ANY (vis.tables);
COMMENT ON VIEW orderexp.unreachable IS
	'orders a reminder could not reach on a channel (missing, malformed or refused contact; channel NULL: no channel left), of the tables the current user owns';

/* rows that ran out of attempts */
CREATE VIEW orderexp.dead_letters AS
	SELECT o.id, o.kind, o.order_table, o.order_key, o.channel, o.payload,
		   o.created_at, o.attempts, o.last_error, o.dead_at
	  FROM orderexp.outbox o
	 CROSS JOIN (SELECT orderexp._tables_visible(current_user, true) AS tables) vis
	 WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL
	   AND (vis.tables IS NULL OR o.order_table = ANY (vis.tables));
COMMENT ON VIEW orderexp.dead_letters IS
	'outbox rows that ran out of attempts, with the last error; orderexp.requeue() sends them again';

/*
 * Whether notifications flow, per kind and channel.  Every undelivered row
 * that is not dead is exactly one of leased, pending and retrying.  Reads
 * the whole outbox (it is for an operator, not for a relay's loop).
 */
CREATE VIEW orderexp.delivery_stats AS
	SELECT o.kind, o.channel,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.obsolete_at IS NULL
							  AND NOT coalesce(o.leased_until > now(), false)
							  AND o.next_attempt_at <= now()) AS pending,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.obsolete_at IS NULL
							  AND o.leased_until > now()) AS leased,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.obsolete_at IS NULL
							  AND NOT coalesce(o.leased_until > now(), false)
							  AND o.next_attempt_at > now()) AS retrying,
		   count(*) FILTER (WHERE o.delivered_at IS NOT NULL) AS delivered,
		   count(*) FILTER (WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL) AS dead,
		   now() - min(o.created_at) FILTER (WHERE o.delivered_at IS NULL
											 AND o.dead_at IS NULL AND o.obsolete_at IS NULL) AS oldest_undelivered,
		   count(*) FILTER (WHERE o.obsolete_at IS NOT NULL) AS obsolete
	  FROM orderexp.outbox_state o
	 CROSS JOIN (SELECT orderexp._tables_visible(current_user, true) AS tables) vis
	 WHERE o.channel IS NOT NULL	/* records without an event are no deliveries */
	   AND (vis.tables IS NULL OR o.order_table = ANY (vis.tables))
	 GROUP BY o.kind, o.channel;
COMMENT ON VIEW orderexp.delivery_stats IS
	'per kind and channel: rows pending (claimable now), leased, retrying, delivered, dead, the age of the oldest undelivered live row, and reminders withheld as obsolete';

/*
 * Whether notifications reach customers in time, per period (the last hour,
 * the last day, by the events' creation), kind and channel: events made,
 * delivered, attempts that failed, dead, withheld as obsolete; seconds from
 * event to delivery (median, 95th percentile); and for reminders the share
 * delivered before the deadline they announce, of those delivered or past
 * their deadline (withheld ones left out: not sending them was right).
 * Reads the outbox of the last day; delivered rows are pruned after
 * orderexp.event_retention, so keep it at a day or more.
 */
CREATE VIEW orderexp.delivery_health AS
	SELECT w.period, o.kind, o.channel,
		   count(*) AS made,
		   count(*) FILTER (WHERE o.delivered_at IS NOT NULL) AS delivered,
		   coalesce(sum(o.attempts - CASE WHEN o.delivered_at IS NOT NULL
											   OR o.leased_until > now() THEN 1 ELSE 0 END)
						FILTER (WHERE o.attempts > 0), 0) AS failed_attempts,
		   count(*) FILTER (WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL) AS dead,
		   count(*) FILTER (WHERE o.obsolete_at IS NOT NULL) AS obsolete,
		   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM o.delivered_at - o.created_at))
				  FILTER (WHERE o.delivered_at IS NOT NULL))::numeric, 3) AS p50_seconds,
		   round((percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM o.delivered_at - o.created_at))
				  FILTER (WHERE o.delivered_at IS NOT NULL))::numeric, 3) AS p95_seconds,
		   round(count(*) FILTER (WHERE o.kind = 'reminder'
									AND o.delivered_at < (o.payload ->> 'close_at')::timestamptz)::numeric
				 / nullif(count(*) FILTER (WHERE o.kind = 'reminder' AND o.obsolete_at IS NULL
											 AND (o.delivered_at IS NOT NULL
												  OR (o.payload ->> 'close_at')::timestamptz <= now())), 0),
				 4) AS on_time_share
	  FROM orderexp.outbox_state o
	 CROSS JOIN (VALUES ('1 hour', interval '1 hour'), ('1 day', interval '1 day')) AS w(period, span)
	 CROSS JOIN (SELECT orderexp._tables_visible(current_user, true) AS tables) vis
	 WHERE o.created_at >= now() - w.span AND o.channel IS NOT NULL
	   /* the ids of the last day (outbox_marks) */
	   AND o.id > coalesce((SELECT m.last_id FROM orderexp.outbox_marks m
							 WHERE m.at <= now() - interval '1 day'
							 ORDER BY m.at DESC LIMIT 1), 0)
	   AND (vis.tables IS NULL OR o.order_table = ANY (vis.tables))
	 GROUP BY w.period, o.kind, o.channel;
COMMENT ON VIEW orderexp.delivery_health IS
	'per period (1 hour, 1 day), kind and channel: made, delivered, failed attempts, dead, obsolete, seconds to delivery (p50, p95), and the share of reminders delivered before their deadline';

/*
 * The orders are counted by summing outcomes.order_count (NULL: one
 * order), for the sweep's closes are one row per batch and group; the
 * figures of the paid orders only (reminders, extensions, time to pay)
 * read one order's rows, which is what every paid row is.
 */
CREATE VIEW orderexp.policy_stats AS
	SELECT v.order_table, v.category, o.policy_id, o.policy_version, v.close_after,
		   sum(coalesce(o.order_count, 1)) AS orders,
		   coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'paid'), 0) AS paid,
		   coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'closed'), 0) AS closed,
		   coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'cancelled'), 0) AS cancelled,
		   round(coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'paid'), 0)::numeric
				 / nullif(sum(coalesce(o.order_count, 1)), 0), 4) AS conversion_rate,
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
				 / nullif(count(*) FILTER (WHERE o.outcome = 'paid'), 0), 4) AS paid_in_last_tenth,
		   coalesce(fb.n, 0) AS feedback,
		   round(100.0 * coalesce(fb.n, 0)
				 / nullif(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'closed'), 0), 2)
			   AS feedback_per_100_closed
	  FROM orderexp.outcomes o
	  JOIN orderexp.policy_versions v ON v.policy_id = o.policy_id AND v.version = o.policy_version
	  LEFT JOIN (SELECT f.policy_id, f.policy_version, count(*) AS n
				   FROM orderexp.feedback f
				  GROUP BY f.policy_id, f.policy_version) fb
			 ON fb.policy_id = o.policy_id AND fb.policy_version = o.policy_version
	 CROSS JOIN (SELECT orderexp._tables_visible(current_user, false) AS tables) vis
	 WHERE NOT o.reopened AND (vis.tables IS NULL OR v.order_table = ANY (vis.tables))
	 GROUP BY v.order_table, v.category, o.policy_id, o.policy_version, v.close_after, fb.n;
COMMENT ON VIEW orderexp.policy_stats IS
	'outcomes per table, category and policy version: conversion, reminders, extensions, time to pay (reopened orders left out), feedback';

/* orders counted as in policy_stats: outcomes.order_count summed, NULL as 1 */
CREATE VIEW orderexp.experiment_stats AS
	WITH arms AS (
		SELECT e.id AS experiment_id, e.order_table, e.category, e.policy_id, e.started_at,
			   e.ended_at, e.winner, a.n::integer AS variant, a.close_after,
			   e.weights[a.n::integer] AS weight,
			   coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome IS NOT NULL), 0) AS orders,
			   coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'paid'), 0) AS paid,
			   e.policy_version,
			   coalesce(sum(coalesce(o.order_count, 1)) FILTER (WHERE o.outcome = 'closed'), 0) AS closed
		  FROM orderexp.experiments e
		 CROSS JOIN LATERAL unnest(e.variants) WITH ORDINALITY AS a(close_after, n)
		  LEFT JOIN orderexp.outcomes o
				 ON o.policy_id = e.policy_id AND o.policy_version = e.policy_version
				AND o.variant = a.n AND NOT o.reopened
		 CROSS JOIN (SELECT orderexp._tables_visible(current_user, false) AS tables) vis
		 WHERE vis.tables IS NULL OR e.order_table = ANY (vis.tables)
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
		   (r.paid >= 10 AND r.orders - r.paid >= 10) AS enough_data,
		   coalesce(fb.n, 0) AS feedback,
		   round(100.0 * coalesce(fb.n, 0) / nullif(r.closed, 0), 2) AS feedback_per_100_closed
	  FROM rated r
	  LEFT JOIN (SELECT f.policy_id, f.policy_version, f.variant, count(*) AS n
				   FROM orderexp.feedback f
				  GROUP BY f.policy_id, f.policy_version, f.variant) fb
			 ON fb.policy_id = r.policy_id AND fb.policy_version = r.policy_version
			AND fb.variant = r.variant
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
	'per experiment variant: conversion rate with its 95 % Wilson interval, z-test and two-sided p-value against variant 1, feedback';

/* ------------------------------------------------------------------------
 * Triggers on orderexp's own tables, and event triggers
 * ------------------------------------------------------------------------ */

CREATE TRIGGER policies_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orderexp.policies
	FOR EACH STATEMENT EXECUTE FUNCTION orderexp._policies_changed();

/* the row triggers read the registrations through a cache too (catalog.c) */
CREATE TRIGGER tables_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orderexp.tables
	FOR EACH STATEMENT EXECUTE FUNCTION orderexp._policies_changed();

CREATE TRIGGER policies_version BEFORE INSERT OR UPDATE ON orderexp.policies
	FOR EACH ROW EXECUTE FUNCTION orderexp._policy_version();

CREATE TRIGGER policy_versions_restored BEFORE INSERT ON orderexp.policy_versions
	FOR EACH ROW EXECUTE FUNCTION orderexp._policy_version_restored();

CREATE TRIGGER secret_single_row BEFORE INSERT ON orderexp.secret
	FOR EACH ROW EXECUTE FUNCTION orderexp._secret_single_row();

CREATE TRIGGER token_table_registered AFTER INSERT ON orderexp.tables
	FOR EACH ROW EXECUTE FUNCTION orderexp._token_table_registered();

CREATE TRIGGER token_table_restored BEFORE INSERT ON orderexp.token_tables
	FOR EACH ROW EXECUTE FUNCTION orderexp._token_table_restored();

CREATE EVENT TRIGGER orderexp_sql_drop ON sql_drop
	EXECUTE FUNCTION orderexp._on_sql_drop();

CREATE EVENT TRIGGER orderexp_alter_table ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION orderexp._on_alter_table();

/* ------------------------------------------------------------------------
 * The token secret of this database
 * ------------------------------------------------------------------------ */

INSERT INTO orderexp.secret (secret) VALUES (orderexp._new_secret());

/* ------------------------------------------------------------------------
 * Privileges
 *
 * The tables are the extension owner's, and nothing that changes orders or
 * reads orderexp's tables is left to PUBLIC:
 *
 *   orderexp_admin   set_close_policy, drop_close_policy, start_experiment,
 *                    end_experiment (gates that want the caller to own the
 *                    table), requeue, forget_before, pending_json (role
 *                    gates: the caller's tables only), and the views
 *                    (filtered to the tables the reader owns);
 *                    set_explanation_template (a role gate: the templates
 *                    are the database's, for every table)
 *   superusers       rotate_secret (one secret signs every table's links)
 *   orderexp_app     the order gates: cancel_order(s), extend_order,
 *                    reopen_order, history, extension_token,
 *                    extend_order_by_token, explain_order, record_feedback;
 *                    each still wants UPDATE on the orders table
 *   orderexp_relay   claim, ack, fail, and reading the outbox
 *   PUBLIC           _actor, and the invoker-rights helpers, which grant
 *                    nothing by themselves (run_due was PUBLIC's up to
 *                    1.2: now orderexp_admin's)
 *
 * The bodies of the gates, the trigger functions (which have no use outside
 * their triggers) and the functions that read the secret or act for a
 * customer are kept from PUBLIC: the extension owner only.
 * ------------------------------------------------------------------------ */

GRANT USAGE ON SCHEMA orderexp TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA orderexp FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA orderexp FROM PUBLIC;

/* trigger functions */
REVOKE ALL ON FUNCTION orderexp.timer_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.outcome_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.delete_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._truncate_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._on_alter_table() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._secret_single_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._policies_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._policy_version() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._policy_version_restored() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._token_table_registered() FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._token_table_restored() FROM PUBLIC;

/* these read the secret or act for a customer */
REVOKE ALL ON FUNCTION orderexp._token_make(regclass, text, timestamptz, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._token_open(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._extension_token(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._extend_order_by_token(text, name) FROM PUBLIC;

/* statements on the orders tables, as their callers or owners */
REVOKE ALL ON FUNCTION orderexp._orders_exec(regclass, boolean, text, text[]) FROM PUBLIC;

/* the generators of the sweep's statements */
REVOKE ALL ON FUNCTION orderexp._take_sql(text), orderexp._orders_sql(orderexp.tables, text),
	orderexp._locked_cols_sql(orderexp.tables), orderexp._closed_cols_sql(orderexp.tables, text),
	orderexp._busy_keys_sql(orderexp.tables), orderexp._busy_keys_sql(orderexp.tables, text),
	orderexp._category_expr(orderexp.tables),
	orderexp._orders_result_sql(), orderexp._record_close_sql(orderexp.tables),
	orderexp._record_remind_sql(orderexp.tables), orderexp._close_batch_sql(orderexp.tables),
	orderexp._remind_batch_sql(orderexp.tables) FROM PUBLIC;

/* a reminder's fallback writes events (claim() and fail() call it) */
REVOKE ALL ON FUNCTION orderexp._fallback(bigint, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp._record_change(orderexp.tables, text, text, jsonb, text, name,
											  text, orderexp.timers, timestamptz,
											  timestamptz) FROM PUBLIC;

/* the bodies of the gates */
REVOKE ALL ON FUNCTION
	orderexp._set_close_policy(regclass, interval, interval, interval, integer, text, name, name,
							   name, name, text, text, text, name[], text[], boolean, name, text[],
							   interval),
	orderexp._drop_close_policy(regclass, text),
	orderexp._cancel_order(regclass, anyelement, text),
	orderexp._cancel_orders(regclass, anyarray, text),
	orderexp._extend_order(regclass, anyelement, interval),
	orderexp._reopen_order(regclass, anyelement, interval, text),
	orderexp._history_json(regclass, anyelement),
	orderexp._start_experiment(regclass, interval[], integer[], text),
	orderexp._end_experiment(regclass, integer, text),
	orderexp._forget_before(timestamptz),
	orderexp._requeue(bigint[]),
	orderexp._pending_json()
	FROM PUBLIC;

/* the application: the order gates (the table's UPDATE privilege still counts) */
REVOKE ALL ON FUNCTION
	orderexp.cancel_order(regclass, anyelement, text),
	orderexp.cancel_orders(regclass, anyarray, text),
	orderexp.extend_order(regclass, anyelement, interval),
	orderexp.reopen_order(regclass, anyelement, interval, text),
	orderexp.history_json(regclass, anyelement),
	orderexp.history(regclass, anyelement),
	orderexp.extension_token(regclass, anyelement),
	orderexp.extend_order_by_token(text)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orderexp.cancel_order(regclass, anyelement, text),
	orderexp.cancel_orders(regclass, anyarray, text),
	orderexp.extend_order(regclass, anyelement, interval),
	orderexp.reopen_order(regclass, anyelement, interval, text),
	orderexp.history_json(regclass, anyelement),
	orderexp.history(regclass, anyelement),
	orderexp.extension_token(regclass, anyelement),
	orderexp.extend_order_by_token(text)
	TO orderexp_app;

/* relays deliver */
REVOKE ALL ON FUNCTION
	orderexp.claim(integer, interval, text[], text[]),
	orderexp.ack(bigint[]),
	orderexp.fail(bigint, text, boolean),
	orderexp.next_batch(integer, interval),
	orderexp.get_batch_events(bigint),
	orderexp.finish_batch(bigint)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orderexp.claim(integer, interval, text[], text[]),
	orderexp.ack(bigint[]),
	orderexp.fail(bigint, text, boolean),
	orderexp.next_batch(integer, interval),
	orderexp.get_batch_events(bigint),
	orderexp.finish_batch(bigint)
	TO orderexp_relay;
GRANT SELECT ON orderexp.outbox, orderexp.dead_letters, orderexp.delivery_stats,
	orderexp.delivery_health, orderexp.outbox_state TO orderexp_relay;
/* and its parts (1.3), as the outbox of 1.2, part 0 since, had it */
GRANT SELECT ON orderexp.outbox_0, orderexp.outbox_1, orderexp.outbox_2, orderexp.outbox_3,
	orderexp.outbox_parts TO orderexp_relay;
REVOKE ALL ON FUNCTION
	orderexp._snapshot_for_cut(),
	orderexp._in_batch(xid8, bigint, orderexp.batches),
	orderexp._batch_rows(orderexp.batches),
	orderexp._batch_ids(orderexp.batches),
	orderexp._batch_of(xid8, bigint),
	orderexp._stream_has_new(pg_snapshot),
	orderexp._stream_due(timestamptz),
	orderexp._cut_batch(integer, interval, timestamptz),
	orderexp._batch_exceptions(orderexp.batches, bigint[], timestamptz),
	orderexp._reoffer(integer, interval, timestamptz),
	orderexp._check_lease(integer, interval, timestamptz),
	orderexp._my_batch(bigint),
	orderexp._prune_batches(timestamptz, integer),
	orderexp._stream_settled(),
	orderexp._rotate_outbox(timestamptz, interval, interval),
	orderexp._stream_adopt(timestamptz)
	FROM PUBLIC;

/*
 * The administrator: policies, experiments, the secret, dead letters,
 * retention, and the views over all tables (views: no privilege on the
 * tables).
 */
REVOKE ALL ON FUNCTION
	orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name,
							  name, name, text, text, text, name[], text[], boolean, name, text[],
							  interval),
	orderexp.drop_close_policy(regclass, text),
	orderexp.start_experiment(regclass, interval[], integer[], text),
	orderexp.end_experiment(regclass, integer, text),
	orderexp.rotate_secret(),
	orderexp.requeue(bigint[]),
	orderexp.forget_before(timestamptz),
	orderexp.pending_json(),
	orderexp.pending_orders(),
	orderexp.run_due(integer)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orderexp.set_close_policy(regclass, interval, interval, interval, integer, text, name, name,
							  name, name, text, text, text, name[], text[], boolean, name, text[],
							  interval),
	orderexp.drop_close_policy(regclass, text),
	orderexp.start_experiment(regclass, interval[], integer[], text),
	orderexp.end_experiment(regclass, integer, text),
	orderexp.requeue(bigint[]),
	orderexp.forget_before(timestamptz),
	orderexp.pending_json(),
	orderexp.pending_orders(),
	orderexp.run_due(integer)
	TO orderexp_admin;
GRANT SELECT ON orderexp.pending, orderexp.policy_config, orderexp.dead_letters,
	orderexp.delivery_stats, orderexp.delivery_health, orderexp.policy_stats,
	orderexp.experiment_stats, orderexp.unreachable
	TO orderexp_admin;

/*
 * Explanations and feedback (1.3): the bodies are the extension owner's,
 * the two order gates the application's, the templates the administrator's
 */
REVOKE ALL ON FUNCTION
	orderexp._explain_order(regclass, anyelement, text),
	orderexp._record_feedback(regclass, anyelement, text, text),
	orderexp._set_explanation_template(text, text, text),
	orderexp.explain_order(regclass, anyelement, text),
	orderexp.record_feedback(regclass, anyelement, text, text),
	orderexp.set_explanation_template(text, text, text)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orderexp.explain_order(regclass, anyelement, text),
	orderexp.record_feedback(regclass, anyelement, text, text)
	TO orderexp_app;
GRANT EXECUTE ON FUNCTION orderexp.set_explanation_template(text, text, text) TO orderexp_admin;

/*
 * Plain deadlines (1.3): set_plain_deadlines is the administrator's, as
 * set_close_policy; the helpers are the extension owner's, but for the
 * counts monitor_backlog shows pg_monitor
 */
REVOKE ALL ON FUNCTION
	orderexp._plain_lock(regclass, boolean),
	orderexp._check_plain(orderexp.policies),
	orderexp._plain_policy(regclass),
	orderexp._needs_insert_trigger(orderexp.tables),
	orderexp._sync_triggers(orderexp.tables),
	orderexp._order_key_exists(regclass, text),
	orderexp._plain_cols(orderexp.tables),
	orderexp._plain_timer(orderexp.tables, text, jsonb),
	orderexp._materialize_plain(orderexp.tables),
	orderexp._plain_pending(orderexp.tables),
	orderexp._plain_backlog(regclass),
	orderexp._plain_index(orderexp.tables),
	orderexp._status_index_type(orderexp.tables),
	orderexp._set_plain_deadlines(regclass, boolean),
	orderexp._plain_batch_sql(orderexp.tables),
	orderexp._plain_orders_sql(orderexp.tables),
	orderexp._plain_payload_expr(orderexp.tables),
	orderexp._record_plain_close_sql(orderexp.tables, orderexp.policies),
	orderexp._close_event_ids_sql(orderexp.tables),
	orderexp._record_closes_sql(orderexp.tables, orderexp.policies),
	orderexp.set_plain_deadlines(regclass, boolean)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orderexp.set_plain_deadlines(regclass, boolean) TO orderexp_admin;
GRANT EXECUTE ON FUNCTION orderexp._plain_backlog(regclass) TO pg_monitor;

/* --- 13. keys bound as text or untyped, from any driver ---------------------- */

/*
 * Drivers send bound parameters untyped (node-postgres always; psycopg for
 * Python strings), and a parameter of unknown type cannot decide the
 * anyelement of the order functions (42804).  Each function that takes an
 * order key has an overload taking it as text, which an unknown parameter
 * resolves to; a typed key (an integer literal, a bigint, a uuid) still
 * picks the anyelement one.  The gates of the overloads call the existing
 * bodies with the key as text: every body converts the key with the key
 * column's type (orderexp._key_text: $1::<key type>), so a key that does not
 * parse is refused with 22P02 as before, and nothing needs a body of its own.
 * cancel_orders() takes an array literal as text.  extend_order() and
 * reopen_order() take an interval, to which an untyped string coerces.
 */
CREATE FUNCTION orderexp.cancel_order(orders regclass, order_key text, reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.cancel_order(regclass, text, text) IS
	'cancel one unpaid order, its key as text (bound parameters); false if it was already cancelled';

/*
 * The keys of cancel_orders() as one array literal ('{1,2,3}'): drivers send
 * an array untyped too, and an unknown parameter cannot choose between
 * anyarray and text[], so the overload takes text, which it wins.  A typed
 * array (text[] included) still goes to the anyarray body, which this body
 * calls with the literal read as text[].
 */
CREATE FUNCTION orderexp._cancel_orders(orders regclass, order_keys text, reason text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN orderexp._cancel_orders(orders, order_keys::text[], reason);
END;
$$;

CREATE FUNCTION orderexp.cancel_orders(orders regclass, order_keys text, reason text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.cancel_orders(regclass, text, text) IS
	'cancel the unpaid orders among these keys, given as one array literal (bound parameters); returns how many were cancelled';

CREATE FUNCTION orderexp.extend_order(orders regclass, order_key text, "by" interval DEFAULT NULL)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.extend_order(regclass, text, interval) IS
	'move the deadline of an unpaid order, its key as text (bound parameters); returns the new deadline';

CREATE FUNCTION orderexp.reopen_order(orders regclass, order_key text,
									  close_after interval DEFAULT NULL, reason text DEFAULT NULL)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.reopen_order(regclass, text, interval, text) IS
	'set an order orderexp closed or cancelled back to unpaid, its key as text (bound parameters); returns the new deadline';

CREATE FUNCTION orderexp.history_json(orders regclass, order_key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.history_json(regclass, text) IS
	'history() of one order as a JSON array, its key as text (bound parameters)';

CREATE FUNCTION orderexp.history(orders regclass, order_key text)
RETURNS TABLE (id bigint, at timestamptz, action text, via text, actor name, reason text,
			   policy_id integer, policy_version integer, variant integer,
			   deadline timestamptz, previous_deadline timestamptz,
			   event_ids bigint[], delivered boolean)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT h.*
	  FROM jsonb_array_elements(orderexp.history_json(orders, order_key)) WITH ORDINALITY AS e(j, n)
	 CROSS JOIN LATERAL jsonb_to_record(e.j)
		AS h(id bigint, at timestamptz, action text, via text, actor name, reason text,
			 policy_id integer, policy_version integer, variant integer,
			 deadline timestamptz, previous_deadline timestamptz,
			 event_ids bigint[], delivered boolean)
	 ORDER BY e.n
$$;
COMMENT ON FUNCTION orderexp.history(regclass, text) IS
	'every change orderexp made to one order, its key as text (bound parameters)';

CREATE FUNCTION orderexp.extension_token(orders regclass, order_key text)
RETURNS text
AS 'MODULE_PATHNAME', 'orderexp_extension_token'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.extension_token(regclass, text) IS
	'extension link token of one order, its key as text (bound parameters)';

CREATE FUNCTION orderexp.explain_order(orders regclass, order_key text, lang text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.explain_order(regclass, text, text) IS
	'why an order is where it is, its key as text (bound parameters)';

CREATE FUNCTION orderexp.record_feedback(orders regclass, order_key text, topic text, body text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'orderexp_gate'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION orderexp.record_feedback(regclass, text, text, text) IS
	'record feedback about one order, its key as text (bound parameters); returns its id';

REVOKE ALL ON FUNCTION
	orderexp._cancel_orders(regclass, text, text),
	orderexp.cancel_order(regclass, text, text),
	orderexp.cancel_orders(regclass, text, text),
	orderexp.extend_order(regclass, text, interval),
	orderexp.reopen_order(regclass, text, interval, text),
	orderexp.history_json(regclass, text),
	orderexp.history(regclass, text),
	orderexp.extension_token(regclass, text),
	orderexp.explain_order(regclass, text, text),
	orderexp.record_feedback(regclass, text, text, text)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orderexp.cancel_order(regclass, text, text),
	orderexp.cancel_orders(regclass, text, text),
	orderexp.extend_order(regclass, text, interval),
	orderexp.reopen_order(regclass, text, interval, text),
	orderexp.history_json(regclass, text),
	orderexp.history(regclass, text),
	orderexp.extension_token(regclass, text),
	orderexp.explain_order(regclass, text, text),
	orderexp.record_feedback(regclass, text, text, text)
	TO orderexp_app;

/* --- 14. monitoring through pg_monitor ---------------------------------------- */

/*
 * Counts and times for monitoring, granted to pg_monitor, PostgreSQL's role
 * for monitoring tools (contrib/postgres_exporter.yml reads them).  The
 * operator views filter their rows to the tables the reader owns
 * (orderexp._tables_visible), so a member of pg_monitor, which owns no
 * orders table, would see nothing there; these views instead count across
 * every registered table, as the extension owner reads them, and show
 * nothing of the orders themselves: no keys, no payloads, no contacts, no
 * errors' texts; only table names, event kinds and channels, counts and
 * times; a table is named schema-qualified, whatever the reader's
 * search_path.  They are granted to pg_monitor only, not to
 * orderexp_admin, whose members answer for their own tables.
 */

/* per registered table: orders waiting for their deadline, and how late the oldest is */
CREATE VIEW orderexp.monitor_backlog AS
	SELECT (SELECT format('%I.%I', n.nspname, c.relname)
			  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE c.oid = t.order_table) AS order_table,
		   b.pending, b.overdue, b.reminders_due, b.oldest_deadline,
		   coalesce(round(extract(epoch FROM b.oldest_deadline)::numeric, 3), 0) AS oldest_deadline_epoch,
		   coalesce(greatest(round(extract(epoch FROM now() - b.oldest_deadline)::numeric, 3), 0), 0)
			   AS oldest_overdue_seconds,
		   t.last_error_at IS NOT NULL AS failing
	  FROM orderexp.tables t
	 CROSS JOIN LATERAL (
			SELECT count(tm.order_key) AS pending,
				   count(tm.order_key) FILTER (WHERE tm.close_at <= now()) AS overdue,
				   count(tm.order_key) FILTER (WHERE tm.remind_at <= now()) AS reminders_due,
				   min(tm.close_at) AS oldest_deadline
			  FROM orderexp.timers tm
			 WHERE tm.order_table = t.order_table) tb
	 CROSS JOIN LATERAL (
			SELECT tb.pending + pb.pending AS pending, tb.overdue + pb.overdue AS overdue,
				   tb.reminders_due, least(tb.oldest_deadline, pb.oldest_deadline) AS oldest_deadline
			  FROM orderexp._plain_backlog(t.order_table) pb) b;
COMMENT ON VIEW orderexp.monitor_backlog IS
	'for monitoring (pg_monitor): per registered table, unpaid orders tracked, those past their deadline, reminders due, the oldest deadline, and whether the sweep fails on the table';

/*
 * Per registered table: orders closed at their deadline in the last hour
 * (from the outbox, whose closed events carry the deadline) and how long
 * after it the close came
 */
CREATE VIEW orderexp.monitor_closes AS
	SELECT (SELECT format('%I.%I', n.nspname, c.relname)
			  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE c.oid = t.order_table) AS order_table,
		   count(c.order_key) AS closed_last_hour,
		   coalesce(round(avg(c.late)::numeric, 3), 0) AS lateness_avg_seconds,
		   coalesce(round((percentile_cont(0.95) WITHIN GROUP (ORDER BY c.late))::numeric, 3), 0)
			   AS lateness_p95_seconds,
		   coalesce(round(max(c.late)::numeric, 3), 0) AS lateness_max_seconds
	  FROM orderexp.tables t
	  LEFT JOIN (SELECT DISTINCT ON (o.order_table, o.order_key) o.order_table, o.order_key,
						extract(epoch FROM o.created_at - (o.payload ->> 'close_at')::timestamptz) AS late
				   FROM orderexp.outbox o
				  WHERE o.kind = 'closed' AND o.created_at >= now() - interval '1 hour'
					/* the ids of the last hour (outbox_marks) */
					AND o.id > coalesce((SELECT m.last_id FROM orderexp.outbox_marks m
										  WHERE m.at <= now() - interval '1 hour'
										  ORDER BY m.at DESC LIMIT 1), 0)
				  ORDER BY o.order_table, o.order_key, o.created_at DESC) c
			 ON c.order_table = t.order_table
	 GROUP BY t.order_table;
COMMENT ON VIEW orderexp.monitor_closes IS
	'for monitoring (pg_monitor): per registered table, orders closed by timeout in the last hour and the seconds from deadline to close (average, 95th percentile, maximum)';

/*
 * Per kind and channel: the outbox now (delivery_stats' columns) and the
 * last hour (delivery_health's), of every table
 */
CREATE VIEW orderexp.monitor_delivery AS
	SELECT o.kind, o.channel,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.obsolete_at IS NULL
							  AND NOT coalesce(o.leased_until > now(), false)
							  AND o.next_attempt_at <= now()) AS pending,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.obsolete_at IS NULL
							  AND o.leased_until > now()) AS leased,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.obsolete_at IS NULL
							  AND NOT coalesce(o.leased_until > now(), false)
							  AND o.next_attempt_at > now()) AS retrying,
		   count(*) FILTER (WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL) AS dead,
		   coalesce(round(extract(epoch FROM now() - min(o.created_at)
								   FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
											 AND o.obsolete_at IS NULL))::numeric, 3), 0)
			   AS oldest_undelivered_seconds,
		   count(*) FILTER (WHERE o.created_at >= now() - interval '1 hour') AS made_last_hour,
		   count(*) FILTER (WHERE o.delivered_at >= now() - interval '1 hour') AS delivered_last_hour,
		   count(*) FILTER (WHERE o.dead_at >= now() - interval '1 hour') AS dead_last_hour,
		   count(*) FILTER (WHERE o.obsolete_at >= now() - interval '1 hour') AS obsolete_last_hour,
		   coalesce(round((percentile_cont(0.95) WITHIN GROUP
								(ORDER BY extract(epoch FROM o.delivered_at - o.created_at))
						   FILTER (WHERE o.delivered_at >= now() - interval '1 hour'))::numeric, 3), 0)
			   AS delivery_p95_seconds,
		   round(count(*) FILTER (WHERE o.kind = 'reminder' AND o.created_at >= now() - interval '1 hour'
									AND o.delivered_at < (o.payload ->> 'close_at')::timestamptz)::numeric
				 / nullif(count(*) FILTER (WHERE o.kind = 'reminder' AND o.obsolete_at IS NULL
											 AND o.created_at >= now() - interval '1 hour'
											 AND (o.delivered_at IS NOT NULL
												  OR (o.payload ->> 'close_at')::timestamptz <= now())), 0),
				 4) AS on_time_share
	  FROM orderexp.outbox_state o
	 WHERE o.channel IS NOT NULL
	   /* what is still to be delivered, and the last day: not the whole history */
	   AND ((o.row_delivered_at IS NULL AND o.txid IS NULL)
			OR (o.row_delivered_at IS NULL AND o.txid IS NOT NULL)
			OR (o.created_at >= now() - interval '1 day'
				/* the ids of the last day (outbox_marks) */
				AND o.id > coalesce((SELECT m.last_id FROM orderexp.outbox_marks m
									  WHERE m.at <= now() - interval '1 day'
									  ORDER BY m.at DESC LIMIT 1), 0)))
	 GROUP BY o.kind, o.channel;
COMMENT ON VIEW orderexp.monitor_delivery IS
	'for monitoring (pg_monitor): per kind and channel of every table, events pending, leased, retrying, dead, the oldest undelivered; in the last hour (of the events made in the last day) made, delivered, dead, withheld, p95 seconds to delivery, reminders delivered before their deadline (delivery_health''s on_time_share)';

/* the worker of this database, and the tables its sweep fails on */
CREATE VIEW orderexp.monitor_worker AS
	SELECT (SELECT count(*) FROM pg_stat_activity a
			 WHERE a.backend_type = 'orderexp worker' AND a.datname = current_database()) AS workers,
		   (SELECT count(*) FROM pg_stat_activity a
			 WHERE a.backend_type = 'orderexp launcher') AS launchers,
		   (SELECT count(*) FROM orderexp.tables t) AS tables,
		   (SELECT count(*) FROM orderexp.tables t WHERE t.last_error_at IS NOT NULL) AS tables_failing,
		   (SELECT count(*) FROM orderexp.outbox o
			 WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL) AS dead_letters;
COMMENT ON VIEW orderexp.monitor_worker IS
	'for monitoring (pg_monitor): orderexp workers connected to this database, launchers, registered tables, tables the sweep fails on, dead letters';

REVOKE ALL ON orderexp.monitor_backlog, orderexp.monitor_closes, orderexp.monitor_delivery,
	orderexp.monitor_worker FROM PUBLIC;
GRANT SELECT ON orderexp.monitor_backlog, orderexp.monitor_closes, orderexp.monitor_delivery,
	orderexp.monitor_worker TO pg_monitor;
