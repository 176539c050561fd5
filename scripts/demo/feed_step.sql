-- scripts/demo/feed_step.sql - one poll of the demo's live feed
--
-- Included over and over by the feed psql session of scripts/demo.sh, which
-- has run LISTEN orderexp and created the temp table feed_seen.  Prints, one
-- line each, the outbox rows this session has not printed yet, then sleeps a
-- little; psql prints the NOTIFYs that arrived after each statement.
--
-- Rows are remembered by id in feed_seen rather than by "id > last id": ids
-- are handed out before commit, so a lower id can become visible after a
-- higher one, and would be missed.
--
-- Sets :stop to true once the file named by :stopfile exists (demo.sh
-- creates it when everything has happened): the rows printed after that are
-- the final drain, and the caller quits.

\set stop `test -e :'stopfile' && echo true || echo false`

WITH fresh AS (
	SELECT o.id, o.kind, o.order_key, o.channel, o.payload, o.created_at,
		   c.customer
	  FROM orderexp.outbox o
	  LEFT JOIN public.orders c ON c.id::text = o.order_key
	 WHERE NOT EXISTS (SELECT 1 FROM pg_temp.feed_seen s WHERE s.id = o.id)),
mark AS (
	INSERT INTO pg_temp.feed_seen SELECT id FROM fresh)
SELECT format('%s  %-9s order %-2s %-6s %s',
			  to_char(f.created_at, 'HH24:MI:SS.MS'), f.kind, f.order_key,
			  coalesce(f.payload #>> '{order,customer}', f.customer, '?'),
			  CASE f.kind
				WHEN 'closed' THEN
					format('deadline %s, closed %s s after it, %s to %s',
						   to_char((f.payload ->> 'close_at')::timestamptz, 'HH24:MI:SS.MS'),
						   round(extract(epoch FROM f.created_at
											 - (f.payload ->> 'close_at')::timestamptz), 2),
						   f.channel, f.payload #>> '{order,email}')
				WHEN 'extended' THEN
					format('new deadline %s (was %s)',
						   to_char((f.payload ->> 'close_at')::timestamptz, 'HH24:MI:SS.MS'),
						   to_char((f.payload ->> 'previous_close_at')::timestamptz, 'HH24:MI:SS.MS'))
				WHEN 'cancelled' THEN
					format('reason: %s', f.payload ->> 'reason')
				ELSE f.payload::text
			  END)
  FROM fresh f
 ORDER BY f.id;

SELECT pg_sleep(0.3) \gset
