#!/usr/bin/env bash
#
# bench/trigger.sh - what the timer trigger costs the application per new
# unpaid order in a bulk insert (issue 21's target: at most 5 us)
#
# Usage:  bash bench/trigger.sh [ROWS [ROUNDS]]   (defaults 200000 and 5)
#
# As root on Debian bookworm, like bench/run.sh: installs what it needs,
# builds and installs the extension from this tree, and runs a throwaway
# cluster with bench/run.sh's settings (fsync on).  Each round inserts ROWS
# orders in one statement into a bare copy of bench.orders and into the
# registered table, in alternating order, each emptied and checkpointed
# first; the trigger's cost per order is the difference of the pair divided
# by ROWS.  Reported: the median of the rounds' differences, with the
# smallest and largest, and the instructions of the same two inserts
# (callgrind, one single-user backend each, ROWS / 10 rows), which do not
# wobble with the machine's load.
#
# Writes bench/out/trigger.md.
#
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
OUT=$BENCH_DIR/out
ROWS=${1:-200000}
ROUNDS=${2:-5}
[[ $ROWS =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ ]] && ((ROWS >= 1000 && ROUNDS >= 1)) ||
	ox_die "usage: bash bench/trigger.sh [ROWS (at least 1000) [ROUNDS]]"

OX_PACKAGES+=(valgrind)
export OX_QUIET_BUILD=1
ox_setup
mkdir -p "$OUT"
ox_mktemp trigger WORK
bench_cluster_start

q postgres "CREATE DATABASE bench"
ox_psql -d bench -q -f "$BENCH_DIR/sql/schema.sql" >/dev/null
q bench "CREATE TABLE bench.orders_bare (LIKE bench.orders INCLUDING ALL)" \
	"SELECT orderexp.set_close_policy('bench.orders', '1 hour', payload_columns => '{customer_email}')" \
	>/dev/null

insert_sql() {
	printf "INSERT INTO %s (id, customer_email) SELECT i, 'x' || i FROM generate_series(1, %d) i;" "$1" "$2"
}

# one timed insert into an emptied table (its TRUNCATE trigger drops the
# timers of the registered one)
insert_timed() {
	q bench "TRUNCATE $1" "CHECKPOINT" >/dev/null
	timed bench "$(insert_sql "$1" "$ROWS")"
}

: >"$WORK/diffs"
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then
		bare=$(insert_timed bench.orders_bare)
		reg=$(insert_timed bench.orders)
	else
		reg=$(insert_timed bench.orders)
		bare=$(insert_timed bench.orders_bare)
	fi
	[[ $(q bench "SELECT count(*) FROM orderexp.timers") == "$ROWS" ]] ||
		ox_die "the registered insert made no timer for every order"
	us=$(calc "($reg - $bare) * 1e6 / $ROWS")
	printf '%s\n' "$us" >>"$WORK/diffs"
	log "round $r: bare $(fmt "$bare" 3) s, registered $(fmt "$reg" 3) s: $(fmt "$us" 2) us per order"
done
read -r MED MIN MAX < <(stats <"$WORK/diffs")

# the same inserts in instructions, ROWS / 10 rows, on a copy of the cluster
IROWS=$((ROWS / 10))
q bench "TRUNCATE bench.orders, bench.orders_bare" "VACUUM ANALYZE" "CHECKPOINT" >/dev/null
ox_cluster_stop
echo "SELECT 1;" >"$WORK/select1.sql"
insert_sql bench.orders_bare "$IROWS" >"$WORK/bare.sql"
insert_sql bench.orders "$IROWS" >"$WORK/reg.sql"
chown postgres "$WORK" "$WORK"/*.sql
declare -A IC
for what in select1 bare reg; do
	IC[$what]=$(callgrind_count "$OX_PGDATA" bench "$WORK/$what.sql" "$what" /dev/null)
done
PER_BARE=$(per "${IC[bare]}" "${IC[select1]}" "$IROWS")
PER_REG=$(per "${IC[reg]}" "${IC[select1]}" "$IROWS")

GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat >"$OUT/trigger.md" <<EOF
# orderexp: the timer trigger's cost per new unpaid order

* **Command:** \`bash bench/trigger.sh $ROWS $ROUNDS\`, $(date -u '+%Y-%m-%d %H:%M UTC'), orderexp commit $GIT_REV
* **How:** $ROUNDS rounds of one \`INSERT ... SELECT\` of $(fmt "$ROWS") orders into a bare copy of
  \`bench.orders\` and into the registered table, alternating which goes first, each
  table emptied and checkpointed before; fsync on.

| per new order | median | min | max |
|---|---:|---:|---:|
| registered minus bare (us) | $(fmt "$MED" 2) | $(fmt "$MIN" 2) | $(fmt "$MAX" 2) |

| instructions per new order ($(fmt "$IROWS") rows, callgrind) | |
|---|---:|
| bare table | $(fmt "$PER_BARE") |
| registered table | $(fmt "$PER_REG") |
| the trigger's share | $(fmt $((PER_REG - PER_BARE))) |
EOF
cat "$OUT/trigger.md"
