#!/usr/bin/env bash
#
# bench/retention.sh - what it costs to forget delivered events
#
# Usage:  bash bench/retention.sh         100,000 events, 3 rounds
#
# As root on Debian bookworm, like bench/run.sh: builds and installs the
# extension from this tree into OX_PG_CONFIG's PostgreSQL, starts the
# benchmarks' throwaway cluster (bench/lib.sh) and stops it on any exit.
#
# Each round, in a fresh database: BENCH_RETENTION_N events that are not
# records of changes ("closed" events with via NULL, as a change writes on
# its further channels; what a rotating part holds, with the reminders;
# records are the orders' history, kept until forget_before(), and not
# retention's business; reminders of an unregistered table would be
# withheld by the cut) are written into the stream, 1,000 a transaction,
# and delivered by next_batch + finish_batch.
# Their batches are then set as finished two days ago, and with
# orderexp.event_retention = 1 day the pruning runs (SELECT
# orderexp.run_due(), as pg_cron would, again and again) until none of
# them is left.  Measured: the seconds of those calls and the WAL they
# wrote (pg_current_wal_lsn before and after), per event forgotten.
#
# Before the outbox was partitioned (1.3 up to 77762af) the pruning deleted
# the events of the batches row by row, about 10,000 a run_due() call.
# From the parts on it empties the events' rotating part with TRUNCATE; the
# script makes that part due (outbox_parts: the part that holds the
# events stopped being current two days ago, the current one has been
# current for three).  Compare two versions by running it in each tree with
# the same OX_PG_CONFIG, one after the other.
#
# Environment: BENCH_RETENTION_N (a multiple of 1,000),
# BENCH_RETENTION_RUNS.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
N=${BENCH_RETENTION_N:-100000}
RUNS=${BENCH_RETENTION_RUNS:-3}
((N > 0 && N % 1000 == 0)) || ox_die "BENCH_RETENTION_N must be a positive multiple of 1000"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

export OX_QUIET_BUILD=1
ox_setup
bench_cluster_start
GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
log "orderexp $GIT_REV: $(fmt "$N") delivered events forgotten, $RUNS round(s)"

secs=()
wal=()
for r in $(seq 1 "$RUNS"); do
	db=retention_$r
	q postgres "CREATE DATABASE $db" >/dev/null
	q "$db" "CREATE EXTENSION orderexp" "CREATE TABLE shop_orders (id integer PRIMARY KEY)" \
		"ALTER DATABASE $db SET orderexp.batch_delivery = on" >/dev/null
	fill=()
	for i in $(seq 1 $((N / 1000))); do
		fill+=("INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
				SELECT 'closed', 'shop_orders', g::text, 'sms', jsonb_build_object('order_key', g::text)
				  FROM generate_series($(((i - 1) * 1000 + 1)), $((i * 1000))) g")
	done
	q "$db" "${fill[@]}" >/dev/null
	deliver=()
	for _ in $(seq 0 $((N / 1000))); do
		deliver+=("SELECT orderexp.finish_batch(b) FROM orderexp.next_batch(1000) b WHERE b IS NOT NULL")
	done
	q "$db" "${deliver[@]}" >/dev/null
	q "$db" "UPDATE orderexp.batches SET finished_at = now() - interval '2 days'" >/dev/null
	if [[ -n $(q "$db" "SELECT to_regclass('orderexp.outbox_parts')") ]]; then
		# the events are in part 1: make part 3 the current one, part 1 the next
		q "$db" "UPDATE orderexp.outbox_parts
				    SET opened_at = now() - interval '3 days',
					    closed_at = CASE WHEN part = 3 THEN NULL ELSE now() - interval '2 days' END" >/dev/null
	fi
	q "$db" "VACUUM ANALYZE" "CHECKPOINT" >/dev/null
	left=$(q "$db" "SELECT count(*) FROM orderexp.outbox WHERE via IS NULL")
	[[ $left == "$N" ]] || ox_die "round $r: $left events instead of $N"

	lsn0=$(q "$db" "SELECT pg_current_wal_lsn()")
	t0=$(date +%s.%N)
	calls=0
	while :; do
		calls=$((calls + 1))
		q "$db" "SET orderexp.event_retention = '1d'" "SELECT orderexp.run_due()" >/dev/null
		left=$(q "$db" "SELECT count(*) FROM orderexp.outbox WHERE via IS NULL")
		[[ $left == 0 ]] && break
		((calls < 1000)) || ox_die "round $r: $left events left after $calls calls"
	done
	t1=$(date +%s.%N)
	lsn1=$(q "$db" "SELECT pg_current_wal_lsn()")
	s=$(calc "$t1 - $t0")
	w=$(q "$db" "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
	secs+=("$s")
	wal+=("$w")
	log "round $r: $calls run_due() call(s), $(fmt "$s" 3) s, $(fmt "$w") WAL bytes, $(fmt "$(calc "$w / $N")" 1) bytes/event"
	q postgres "DROP DATABASE $db" >/dev/null
done
ms=$(printf '%s\n' "${secs[@]}" | stats | cut -d' ' -f1)
mw=$(printf '%s\n' "${wal[@]}" | stats | cut -d' ' -f1)
log "orderexp $GIT_REV, $(fmt "$N") events, load $(cut -d' ' -f1-3 /proc/loadavg): median $(fmt "$ms" 3) s, $(fmt "$(calc "$mw / $N")" 1) WAL bytes/event"
