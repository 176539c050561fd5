/*
 * Delivery: the consumer side of the outbox.
 *
 * A relay (a program that sends the mails, SMS or webhooks) LISTENs on
 * orderexp, then:
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
 *   dead       dead_at IS NOT NULL, next_attempt_at = 'infinity': never tried
 *              again until requeue(); never pruned
 *
 * Because a lease and a retry both live in next_attempt_at, and a dead row
 * moves to 'infinity', the rows claim() wants are exactly a range scan of the
 * 1.0 index outbox_undelivered (next_attempt_at) WHERE delivered_at IS NULL
 * from its start to now: no index is added for claiming, and dead rows do
 * not slow claims down.  The attempt is counted at claim time, so a row that
 * crashes every relay that takes it (no fail() ever comes) still dies: a
 * claim that finds a due row whose attempts are used up marks it dead
 * instead of handing it out.
 *
 * One index is added, for pruning: outbox_delivered (delivered_at) WHERE
 * delivered_at IS NOT NULL.  It has no entry for a new row, so the sweep's
 * bulk inserts do not maintain it; ack() adds one entry per row (ack already
 * is a non-HOT update).  With it the worker finds the oldest delivered rows
 * with one index probe, whatever else (dead or long-undelivered rows) sits
 * at the low end of the primary key.
 *
 * The GUCs orderexp.max_attempts and orderexp.event_retention are defined
 * by the library.  The SQL here reads them through C functions, so that the
 * library is loaded (and the GUCs defined, with any postgresql.conf value
 * applied) even where it is not in shared_preload_libraries.
 */

ALTER TABLE orderexp.outbox ADD COLUMN dead_at timestamptz;
COMMENT ON COLUMN orderexp.outbox.attempts IS
	'deliveries attempted: counted when the row is claimed';
COMMENT ON COLUMN orderexp.outbox.next_attempt_at IS
	'when the row may be claimed: now for new rows, the lease end while leased, the back-off after a failure, infinity when dead';
COMMENT ON COLUMN orderexp.outbox.leased_until IS
	'end of the lease of the relay that claimed the row; NULL when not leased';
COMMENT ON COLUMN orderexp.outbox.delivered_at IS
	'when a relay acknowledged the row (orderexp.ack); delivered rows are pruned after orderexp.event_retention';
COMMENT ON COLUMN orderexp.outbox.last_error IS
	'what the last failed attempt reported (orderexp.fail)';
COMMENT ON COLUMN orderexp.outbox.dead_at IS
	'when the row ran out of attempts (orderexp.max_attempts); dead rows wait for orderexp.requeue and are never pruned';

CREATE INDEX outbox_delivered ON orderexp.outbox (delivered_at)
	WHERE delivered_at IS NOT NULL;

/* the GUCs, read in C so that reading them loads the library */
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

/*
 * Lease up to max_rows due rows, oldest due first.  Rows locked by another
 * claim in flight are skipped, not waited for; a row another claim took
 * while this one looked is re-checked on its new version (READ COMMITTED)
 * and dropped, because its next_attempt_at moved to the lease end.
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
	max_attempts integer := orderexp._max_attempts();
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
	IF lease <= interval '0' OR t + lease = t THEN
		RAISE EXCEPTION 'lease must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('lease is %s.', lease),
				  HINT = 'Lease a row for longer than a delivery takes, e.g. ''30 s''.';
	END IF;

	RETURN QUERY
	WITH picked AS MATERIALIZED (
		SELECT o.id
		  FROM orderexp.outbox o
		 WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
		   AND o.next_attempt_at <= t
		   AND (o.leased_until IS NULL OR o.leased_until <= t)
		   AND (kinds IS NULL OR o.kind = ANY (kinds))
		   AND (channels IS NULL OR o.channel = ANY (channels))
		 ORDER BY o.next_attempt_at
		 LIMIT max_rows
		   FOR UPDATE SKIP LOCKED),
	taken AS (
		UPDATE orderexp.outbox o
		   SET attempts = CASE WHEN o.attempts < max_attempts THEN o.attempts + 1
							   ELSE o.attempts END,
			   leased_until = CASE WHEN o.attempts < max_attempts THEN t + lease END,
			   next_attempt_at = CASE WHEN o.attempts < max_attempts THEN t + lease
									  ELSE 'infinity' END,
			   dead_at = CASE WHEN o.attempts < max_attempts THEN NULL ELSE t END,
			   last_error = CASE WHEN o.attempts < max_attempts THEN o.last_error
								 ELSE concat_ws('; ', 'lease of the last attempt expired without ack or fail',
												o.last_error) END
		  FROM picked p
		 WHERE o.id = p.id
		RETURNING o.*)
	SELECT * FROM taken WHERE taken.dead_at IS NULL ORDER BY taken.id;
END;
$$;
COMMENT ON FUNCTION orderexp.claim(integer, interval, text[], text[]) IS
	'lease up to max_rows due outbox rows (SKIP LOCKED), counting the attempt; an expired lease makes a row claimable again';

/* delivered: counts only rows that were not delivered before */
CREATE FUNCTION orderexp.ack(ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
BEGIN
	IF ids IS NULL THEN
		RAISE EXCEPTION 'ids must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	UPDATE orderexp.outbox o
	   SET delivered_at = clock_timestamp(), leased_until = NULL, dead_at = NULL
	 WHERE o.id = ANY (ids) AND o.delivered_at IS NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION orderexp.ack(bigint[]) IS
	'mark outbox rows delivered; returns how many were not delivered before (unknown and delivered ids are no error)';

/*
 * A failed attempt.  Back-off after attempt n (n = attempts, counted by
 * claim): 10 s * 2^(n-1), at most 1 hour, times a random factor in
 * [0.8, 1.2) so that rows that failed together do not come back together.
 */
CREATE FUNCTION orderexp.fail(id bigint, error text)
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
BEGIN
	IF fail.id IS NULL OR fail.error IS NULL THEN
		RAISE EXCEPTION 'id and error must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Say what went wrong: it is kept in last_error.';
	END IF;
	SELECT * INTO r FROM orderexp.outbox o WHERE o.id = fail.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'outbox row % does not exist', fail.id
			USING ERRCODE = 'no_data_found';
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

	IF r.attempts >= max_attempts THEN
		UPDATE orderexp.outbox o
		   SET last_error = fail.error, leased_until = NULL,
			   next_attempt_at = 'infinity', dead_at = t
		 WHERE o.id = fail.id;
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
COMMENT ON FUNCTION orderexp.fail(bigint, text) IS
	'record a failed delivery: retry with exponential back-off (returns when), or NULL when the row is now dead';

/* rows that ran out of attempts */
CREATE VIEW orderexp.dead_letters AS
	SELECT o.id, o.kind, o.order_table, o.order_key, o.channel, o.payload,
		   o.created_at, o.attempts, o.last_error, o.dead_at
	  FROM orderexp.outbox o
	 WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL;
COMMENT ON VIEW orderexp.dead_letters IS
	'outbox rows that ran out of attempts, with the last error; orderexp.requeue() sends them again';

/* dead rows (all of them, or those named) get a fresh set of attempts */
CREATE FUNCTION orderexp.requeue(ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
BEGIN
	UPDATE orderexp.outbox o
	   SET dead_at = NULL, attempts = 0, leased_until = NULL,
		   next_attempt_at = clock_timestamp()
	 WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL
	   AND (ids IS NULL OR o.id = ANY (ids));
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM pg_notify('orderexp', json_build_object('kind', 'requeued', 'table', NULL,
														'count', n)::text);
	END IF;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION orderexp.requeue(bigint[]) IS
	'make dead outbox rows (NULL: all of them) claimable again with attempts reset; returns how many';

/*
 * Whether notifications flow, per kind and channel.  Every undelivered row
 * that is not dead is exactly one of leased, pending and retrying.  Reads
 * the whole outbox (it is for an operator, not for a relay's loop).
 */
CREATE VIEW orderexp.delivery_stats AS
	SELECT o.kind, o.channel,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
							  AND NOT coalesce(o.leased_until > now(), false)
							  AND o.next_attempt_at <= now()) AS pending,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
							  AND o.leased_until > now()) AS leased,
		   count(*) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
							  AND NOT coalesce(o.leased_until > now(), false)
							  AND o.next_attempt_at > now()) AS retrying,
		   count(*) FILTER (WHERE o.delivered_at IS NOT NULL) AS delivered,
		   count(*) FILTER (WHERE o.dead_at IS NOT NULL AND o.delivered_at IS NULL) AS dead,
		   now() - min(o.created_at) FILTER (WHERE o.delivered_at IS NULL
											 AND o.dead_at IS NULL) AS oldest_undelivered
	  FROM orderexp.outbox o
	 GROUP BY o.kind, o.channel;
COMMENT ON VIEW orderexp.delivery_stats IS
	'per kind and channel: rows pending (claimable now), leased, retrying, delivered, dead, and the age of the oldest undelivered live row';

/* privileges: relays deliver, admins look after dead letters */
REVOKE ALL ON FUNCTION orderexp.claim(integer, interval, text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.ack(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.fail(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION orderexp.requeue(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orderexp.claim(integer, interval, text[], text[]) TO orderexp_relay;
GRANT EXECUTE ON FUNCTION orderexp.ack(bigint[]) TO orderexp_relay;
GRANT EXECUTE ON FUNCTION orderexp.fail(bigint, text) TO orderexp_relay;
GRANT EXECUTE ON FUNCTION orderexp.requeue(bigint[]) TO orderexp_admin;
REVOKE ALL ON orderexp.dead_letters, orderexp.delivery_stats FROM PUBLIC;
GRANT SELECT ON orderexp.outbox, orderexp.dead_letters, orderexp.delivery_stats TO orderexp_relay;
GRANT SELECT ON orderexp.dead_letters, orderexp.delivery_stats TO orderexp_admin;
