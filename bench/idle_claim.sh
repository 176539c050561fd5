#!/usr/bin/env bash
#
# bench/idle_claim.sh - what a relay's poll costs when nothing is due
#
# Usage:  bash bench/idle_claim.sh        100,000 delivered events kept, 3 rounds of 5 s
#
# As root on Debian bookworm, like bench/run.sh: builds and installs the
# extension from this tree into OX_PG_CONFIG's PostgreSQL, starts the
# benchmarks' throwaway cluster (bench/lib.sh), and stops it on any exit.
#
# A relay polls every --poll-interval (5 s by default) besides the
# notifications that wake it: orderexp.claim(100) with nothing due.  Its
# cost depends on what the outbox keeps, so the database first holds
# BENCH_IDLE_EVENTS delivered events (written 1,000 a transaction into the
# stream, delivered by next_batch + finish_batch, VACUUM ANALYZE).  Then
# pgbench -M prepared runs "SELECT count(*) FROM orderexp.claim(100)" for
# BENCH_IDLE_SECONDS, BENCH_IDLE_RUNS times, and prints each run's average
# latency and the median.  Compare two versions by running it in each
# tree with the same OX_PG_CONFIG, one after the other.
#
# Environment: BENCH_IDLE_EVENTS (a multiple of 1,000), BENCH_IDLE_SECONDS,
# BENCH_IDLE_RUNS.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
EVENTS=${BENCH_IDLE_EVENTS:-100000}
SECONDS_EACH=${BENCH_IDLE_SECONDS:-5}
RUNS=${BENCH_IDLE_RUNS:-3}
((EVENTS >= 0 && EVENTS % 1000 == 0)) || ox_die "BENCH_IDLE_EVENTS must be a multiple of 1000"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

export OX_QUIET_BUILD=1
ox_setup
ox_mktemp idle-claim-scratch SCRATCH
PGBENCH=$("$OX_PG_CONFIG" --bindir)/pgbench

bench_cluster_start
GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
log "orderexp $GIT_REV: $(fmt "$EVENTS") delivered events kept"
q postgres "CREATE EXTENSION orderexp" "CREATE TABLE shop_orders (id integer PRIMARY KEY)" \
	"ALTER DATABASE postgres SET orderexp.batch_delivery = on" >/dev/null
fill=()
for i in $(seq 1 $((EVENTS / 1000))); do
	fill+=("INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload)
			SELECT 'closed', 'shop_orders', g::text, 'email', '{}'
			  FROM generate_series($(((i - 1) * 1000 + 1)), $((i * 1000))) g")
done
((${#fill[@]} == 0)) || q postgres "${fill[@]}" >/dev/null
deliver=()
for _ in $(seq 0 $((EVENTS / 1000))); do
	deliver+=("SELECT orderexp.finish_batch(b) FROM orderexp.next_batch(1000) b WHERE b IS NOT NULL")
done
q postgres "${deliver[@]}" "VACUUM ANALYZE" >/dev/null
left=$(q postgres "SELECT count(*) FROM orderexp.claim(100)")
[[ $left == 0 ]] || ox_die "$left events still due after the delivery"

echo "SELECT count(*) FROM orderexp.claim(100, '30 s');" >"$SCRATCH/idle.sql"
lat=()
for r in $(seq 1 "$RUNS"); do
	l=$(pgb -n -M prepared -T "$SECONDS_EACH" -f "$SCRATCH/idle.sql" postgres 2>/dev/null |
		sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p')
	[[ -n $l ]] || ox_die "pgbench run $r failed"
	log "run $r: $l ms"
	lat+=("$l")
done
log "idle claim(100), orderexp $GIT_REV, $(fmt "$EVENTS") events kept, load $(cut -d' ' -f1-3 /proc/loadavg): median $(printf '%s\n' "${lat[@]}" | stats | cut -d' ' -f1) ms"
