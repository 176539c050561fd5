#!/usr/bin/env bash
#
# bench/trigger.sh - what the timer trigger costs the application per new
# unpaid order in a bulk insert (issue 21's target: at most 5 us)
#
# Usage:  bash bench/trigger.sh [ROWS [ROUNDS]]   (defaults 200000 and 5)
#         BENCH_PLAIN=0 bash bench/trigger.sh ...   the table with timer rows
#
# As root on Debian bookworm, like bench/run.sh: installs what it needs,
# builds and installs the extension from this tree, and runs a throwaway
# cluster with bench/run.sh's settings (fsync on).  Each round inserts ROWS
# orders in one statement into a bare copy of bench.orders, into a copy
# with the partial index on created_at WHERE unpaid (UNPAID_DUE_INDEX, the
# index a pg_cron job needs) and into the registered table, in an order
# that rotates from round to round, each emptied and checkpointed first.
# The registered table has plain deadlines (BENCH_PLAIN=1, the default: no
# timer rows, and the partial index, which they need) or timer rows
# (BENCH_PLAIN=0, no partial index).  A table with plain deadlines whose
# created-at is NOT NULL has no timer trigger on INSERT at all (1.3): with
# BENCH_PLAIN=1 the three tables' created_at is made nullable, so that the
# trigger is there to be measured.  The trigger's cost per order is the
# registered insert minus the insert into the copy with the same indexes
# (with the partial index for plain deadlines, the bare one for timer
# rows), divided by ROWS; what registering costs in all, against the bare
# table, is reported beside it.  Reported: the median of the rounds'
# differences, with the smallest and largest, and the instructions of the
# same inserts (callgrind, one single-user backend each, ROWS / 10 rows),
# which do not wobble with the machine's load.
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
	"CREATE TABLE bench.orders_idx (LIKE bench.orders INCLUDING ALL)" \
	"CREATE INDEX ON bench.orders_idx (created_at) WHERE status = 'unpaid'" \
	"$(reg_sql '1 hour')" >/dev/null
if ((BENCH_PLAIN)); then
	for t in orders orders_bare orders_idx; do
		q bench "ALTER TABLE bench.$t ALTER COLUMN created_at DROP NOT NULL" >/dev/null
	done
fi
[[ $(q bench "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bench.orders'::regclass
		AND tgname = 'orderexp_timer_insert'") == 1 ]] ||
	ox_die "bench.orders has no timer trigger on INSERT"
# the copy that has the registered table's indexes
SAME=bare
((BENCH_PLAIN)) && SAME=idx
TIMERS=$ROWS
((BENCH_PLAIN)) && TIMERS=0

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
: >"$WORK/diffs_all"
TABLES=(bare idx reg)
declare -A SECS
for ((r = 1; r <= ROUNDS; r++)); do
	# rotate: bare idx reg, idx reg bare, reg bare idx, ...
	for ((i = 0; i < 3; i++)); do
		t=${TABLES[(r - 1 + i) % 3]}
		case $t in
			bare) SECS[$t]=$(insert_timed bench.orders_bare) ;;
			idx) SECS[$t]=$(insert_timed bench.orders_idx) ;;
			reg) SECS[$t]=$(insert_timed bench.orders) ;;
		esac
	done
	[[ $(q bench "SELECT count(*) FROM orderexp.timers") == "$TIMERS" ]] ||
		ox_die "the registered insert made $(q bench "SELECT count(*) FROM orderexp.timers") timers, expected $TIMERS"
	us=$(calc "(${SECS[reg]} - ${SECS[$SAME]}) * 1e6 / $ROWS")
	printf '%s\n' "$us" >>"$WORK/diffs"
	calc "(${SECS[reg]} - ${SECS[bare]}) * 1e6 / $ROWS" >>"$WORK/diffs_all"
	log "round $r: bare $(fmt "${SECS[bare]}" 3) s, with the partial index $(fmt "${SECS[idx]}" 3) s, registered $(fmt "${SECS[reg]}" 3) s: the trigger $(fmt "$us" 2) us per order"
done
read -r MED MIN MAX < <(stats <"$WORK/diffs")
read -r AMED AMIN AMAX < <(stats <"$WORK/diffs_all")

# the same inserts in instructions, ROWS / 10 rows, on a copy of the cluster
IROWS=$((ROWS / 10))
q bench "TRUNCATE bench.orders, bench.orders_bare, bench.orders_idx" "VACUUM ANALYZE" "CHECKPOINT" >/dev/null
ox_cluster_stop
echo "SELECT 1;" >"$WORK/select1.sql"
insert_sql bench.orders_bare "$IROWS" >"$WORK/bare.sql"
insert_sql bench.orders_idx "$IROWS" >"$WORK/idx.sql"
insert_sql bench.orders "$IROWS" >"$WORK/reg.sql"
chown postgres "$WORK" "$WORK"/*.sql
declare -A IC
for what in select1 bare idx reg; do
	IC[$what]=$(callgrind_count "$OX_PGDATA" bench "$WORK/$what.sql" "$what" /dev/null)
done
PER_BARE=$(per "${IC[bare]}" "${IC[select1]}" "$IROWS")
PER_IDX=$(per "${IC[idx]}" "${IC[select1]}" "$IROWS")
PER_REG=$(per "${IC[reg]}" "${IC[select1]}" "$IROWS")
PER_SAME=$PER_BARE
((BENCH_PLAIN)) && PER_SAME=$PER_IDX

GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat >"$OUT/trigger.md" <<EOF
# orderexp: the timer trigger's cost per new unpaid order

* **Command:** \`BENCH_PLAIN=$BENCH_PLAIN bash bench/trigger.sh $ROWS $ROUNDS\`, $(date -u '+%Y-%m-%d %H:%M UTC'), orderexp commit $GIT_REV;
  load average $(cut -d' ' -f1-3 /proc/loadavg) at the end
* **Registered table:** $BENCH_MODE
* **How:** $ROUNDS rounds of one \`INSERT ... SELECT\` of $(fmt "$ROWS") orders into a bare copy of
  \`bench.orders\`, into a copy with the partial index \`(created_at) WHERE status = 'unpaid'\`
  and into the registered table, rotating which goes first, each table emptied and
  checkpointed before; fsync on. The trigger's share is the registered table minus the
  copy with the same indexes ($SAME).

| per new order | median | min | max |
|---|---:|---:|---:|
| registered minus $SAME: the trigger (us) | $(fmt "$MED" 2) | $(fmt "$MIN" 2) | $(fmt "$MAX" 2) |
| registered minus bare: all that registering costs (us) | $(fmt "$AMED" 2) | $(fmt "$AMIN" 2) | $(fmt "$AMAX" 2) |

| instructions per new order ($(fmt "$IROWS") rows, callgrind) | |
|---|---:|
| bare table | $(fmt "$PER_BARE") |
| bare table with the partial index | $(fmt "$PER_IDX") |
| registered table | $(fmt "$PER_REG") |
| the trigger's share (registered minus $SAME) | $(fmt $((PER_REG - PER_SAME))) |
| all that registering costs (registered minus bare) | $(fmt $((PER_REG - PER_BARE))) |
EOF
cat "$OUT/trigger.md"
