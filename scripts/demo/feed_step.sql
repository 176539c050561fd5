-- scripts/demo/feed_step.sql - one poll of the demo's live feed
--
-- Included over and over by the feed psql session of scripts/demo.sh, which
-- has run LISTEN orderexp and created the temp table feed_seen.  Prints, one
-- line each, the outbox rows this session has not printed yet, then sleeps a
-- little; psql prints the NOTIFYs that arrived after each statement.
--
-- Each line is what a listener would do with the event: a reminder becomes
-- the e-mail (or, on the sms channel, the text message) with the customer's
-- extension link, an extension through such
-- a link the confirmation the customer gets.  The token is base64url, so it
-- goes into a URL as it is; it is shortened here to its first 12 and last 4
-- characters (the first ones are alike for orders with close deadlines).
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
		   c.customer, c.email, c.phone,
		   (o.payload ->> 'close_at')::timestamptz AS close_at,
		   (o.payload ->> 'previous_close_at')::timestamptz AS previous_close_at,
		   (o.payload ->> 'extended_by')::interval AS extended_by,
		   o.payload ->> 'extension_token' AS token,
		   CASE WHEN o.payload ->> 'extensions_left' = '1' THEN '1 extension'
				ELSE format('%s extensions', o.payload ->> 'extensions_left')
		   END AS ext_left
	  FROM orderexp.outbox o
	  LEFT JOIN public.orders c ON c.id::text = o.order_key
	 WHERE NOT EXISTS (SELECT 1 FROM pg_temp.feed_seen s WHERE s.id = o.id)),
mark AS (
	INSERT INTO pg_temp.feed_seen SELECT id FROM fresh)
SELECT format('%s  %-9s order %-2s %-6s %s',
			  to_char(f.created_at, 'HH24:MI:SS.MS'), f.kind, f.order_key,
			  coalesce(f.payload #>> '{order,customer}', f.customer, '?'),
			  CASE f.kind
				WHEN 'reminder' THEN
					format('%s to %s: "your order #%s closes at %s"%s',
						   f.channel,
						   CASE WHEN f.channel = 'sms' THEN coalesce(f.payload #>> '{order,phone}', f.phone)
								ELSE coalesce(f.payload #>> '{order,email}', f.email) END,
						   f.order_key, to_char(f.close_at, 'HH24:MI:SS'),
						   CASE WHEN f.token IS NOT NULL
								THEN format(', extend: https://shop.example/extend?token=%s…%s (%s left)',
											left(f.token, 12), right(f.token, 4), f.ext_left)
								ELSE format(', no extension link (%s left)', f.ext_left)
						   END)
				WHEN 'closed' THEN
					format('deadline %s, closed %s s after it, %s to %s',
						   to_char(f.close_at, 'HH24:MI:SS.MS'),
						   round(extract(epoch FROM f.created_at - f.close_at), 2),
						   f.channel,
						   CASE WHEN f.channel = 'sms' THEN f.payload #>> '{order,phone}'
								ELSE f.payload #>> '{order,email}' END)
				WHEN 'extended' THEN
					CASE WHEN f.payload ->> 'via' = 'token' THEN
						format('via the link, %s to %s: "your order #%s was extended by %s; it now closes at %s"',
							   f.channel, CASE WHEN f.channel = 'sms' THEN f.phone ELSE f.email END, f.order_key,
							   CASE WHEN f.extended_by < interval '1 minute'
									THEN format('%s seconds', trim_scale(extract(epoch FROM f.extended_by)))
									ELSE justify_interval(f.extended_by)::text
							   END,
							   to_char(f.close_at, 'HH24:MI:SS'))
					ELSE
						format('by the shop (%s): new deadline %s (was %s)',
							   f.payload ->> 'extended_by_role',
							   to_char(f.close_at, 'HH24:MI:SS.MS'),
							   to_char(f.previous_close_at, 'HH24:MI:SS.MS'))
					END
				WHEN 'cancelled' THEN
					format('reason: %s', f.payload ->> 'reason')
				ELSE f.payload::text
			  END)
  FROM fresh f
 ORDER BY f.id;

SELECT pg_sleep(0.3) \gset
