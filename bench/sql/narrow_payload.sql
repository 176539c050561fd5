/*
 * bench/sql/narrow_payload.sql - a variant for bench/drain_cpu.sh, a design
 * study: a close's event without the payload's copies of the record's own
 * columns (order_table, order_key, close_at = deadline, policy_id, category
 * and reason = via), only the order's columns, as if the payload a relay
 * reads were composed where events are read.  The close's payload is 228
 * bytes of a 346-byte row in bench/run.sh's set.  What this variant
 * measures is the write path alone: the narrower row and its cheaper
 * payload (the composition would cost the readers instead).
 */
CREATE OR REPLACE FUNCTION orderexp._closed_payload(order_table text, order_key text,
													close_at timestamptz, policy_id integer,
													category text, cols jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT jsonb_build_object('order', cols) $$;
