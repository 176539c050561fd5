#!/usr/bin/env bash
#
# bench/partitioned.sh - drain and idle cost of orderexp on a partitioned
# orders table against the same rows in one table
#
# Usage:  bash bench/partitioned.sh [--smoke]      (as root, Debian bookworm)
#
# On a throwaway cluster (the settings of bench/run.sh) it builds two
# template databases with the same N orders over the last 12 months
# (bench/sql/partitioned.sql): "flat", one table with PRIMARY KEY (id), and
# "partitioned", 14 monthly range partitions of created_at with PRIMARY KEY
# (id, created_at), registered with key_column => 'id'.  Of the orders, DUE
# are unpaid and past their deadline and IDLE unpaid and tracked but not due.
# Then, the layouts taking turns, RUNS times each:
#
#   drain   a fresh copy of the template; one orderexp.run_due() closes the
#           DUE orders with their events: orders/s
#   idle    on the drained copy, TICKS calls of run_due() with nothing due:
#           milliseconds per call, beside a SELECT 1 round trip
#
# and writes bench/out/partitioned.md (medians, min-max, ratios
# partitioned / flat).  A benchmark, not a test: it fails only on a broken
# run.  Environment: BENCH_PART_N, BENCH_PART_DUE, BENCH_PART_IDLE,
# BENCH_RUNS override the sizes.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
OUT=$BENCH_DIR/out
BENCH_CMD="bash bench/partitioned.sh${1:+ $1}"
case ${1:-} in
	--smoke)
		N=${BENCH_PART_N:-200000} DUE=${BENCH_PART_DUE:-5000} IDLE=${BENCH_PART_IDLE:-10000}
		RUNS=${BENCH_RUNS:-1} TICKS=50 ;;
	"")
		N=${BENCH_PART_N:-10000000} DUE=${BENCH_PART_DUE:-200000} IDLE=${BENCH_PART_IDLE:-1000000}
		RUNS=${BENCH_RUNS:-3} TICKS=500 ;;
	*) echo "usage: bash bench/partitioned.sh [--smoke]" >&2; exit 2 ;;
esac
LAYOUTS=(flat partitioned)
PGBENCH=$OX_PGBIN/pgbench
BG=()						# background loads, killed at exit
# shellcheck disable=SC2016 # expanded at exit
ox_at_exit 'for p in "${BG[@]}"; do kill "$p"; done'

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

export OX_QUIET_BUILD=1
ox_setup
mkdir -p "$OUT"
ox_mktemp bench-part SCRATCH
bench_cluster_start "orderexp.databases = 'bench'"

log "loading $(fmt "$N") orders twice (flat, partitioned): $(fmt "$DUE") due, $(fmt "$IDLE") tracked and not due"
for layout in "${LAYOUTS[@]}"; do
	q postgres "CREATE DATABASE tpl_$layout"
	( ox_psql -d "tpl_$layout" -q -v layout="$layout" -v n="$N" -v due="$DUE" -v idle="$IDLE" \
		-f "$BENCH_DIR/sql/partitioned.sql" >"$SCRATCH/load_$layout.out" 2>&1 ) &
	BG+=($!)
done
for pid in "${BG[@]}"; do
	wait "$pid" || { cat "$SCRATCH"/load_*.out >&2; ox_die "loading failed"; }
done
for layout in "${LAYOUTS[@]}"; do
	[[ $(q "tpl_$layout" "SELECT count(*) || ' ' || count(*) FILTER (WHERE close_at <= now()) FROM orderexp.timers") == "$((DUE + IDLE)) $DUE" ]] ||
		ox_die "$layout: the timers are not what the data set makes"
done
PARTS=$(q tpl_partitioned "SELECT count(*) FROM pg_inherits WHERE inhparent = 'bench.orders'::regclass")
PCOL=$(q tpl_partitioned "SELECT partition_column FROM orderexp.tables")
log "loaded: $PARTS partitions, partition_column = ${PCOL:-none}"

printf '# layout\trun\tdue\tseconds\torders_per_s\tidle_ms\tselect1_ms\n' >"$OUT/partitioned.tsv"
for run in $(seq 1 "$RUNS"); do
	for layout in "${LAYOUTS[@]}"; do
		q postgres "SET client_min_messages = warning" "DROP DATABASE IF EXISTS bench WITH (FORCE)" \
			"CREATE DATABASE bench TEMPLATE tpl_$layout STRATEGY FILE_COPY"
		q bench "VACUUM ANALYZE" "CHECKPOINT" >/dev/null
		secs=$(timed bench "SELECT * FROM orderexp.run_due();")
		[[ $(q bench "SELECT count(*) FILTER (WHERE status = 'closed') || ' ' ||
				(SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed') FROM bench.orders") == "$DUE $DUE" ]] ||
			ox_die "$layout run $run: the due orders were not all closed once"
		# idle: nothing due; run_due() calls timed by pgbench, beside SELECT 1
		printf 'SELECT * FROM orderexp.run_due();\n' >"$SCRATCH/tick.sql"
		printf 'SELECT 1;\n' >"$SCRATCH/one.sql"
		idle=$(pgb -n -t "$TICKS" -f "$SCRATCH/tick.sql" bench 2>&1 |
			sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p')
		one=$(pgb -n -t "$TICKS" -f "$SCRATCH/one.sql" bench 2>&1 |
			sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p')
		[[ -n $idle && -n $one ]] || ox_die "pgbench of the idle tick failed"
		printf '%s\t%s\t%s\t%.3f\t%.0f\t%s\t%s\n' "$layout" "$run" "$DUE" "$secs" \
			"$(calc "$DUE / $secs")" "$idle" "$one" >>"$OUT/partitioned.tsv"
		log "$layout run $run: $(fmt "$DUE") closed in $(fmt "$secs" 2) s = $(fmt "$(calc "$DUE / $secs")") orders/s; idle run_due() $idle ms (SELECT 1 $one ms)"
	done
done

# the report
{
	read -r f_rate f_min f_max < <(col "$OUT/partitioned.tsv" 5 1 flat | stats)
	read -r p_rate p_min p_max < <(col "$OUT/partitioned.tsv" 5 1 partitioned | stats)
	read -r f_idle f_imin f_imax < <(col "$OUT/partitioned.tsv" 6 1 flat | stats)
	read -r p_idle p_imin p_imax < <(col "$OUT/partitioned.tsv" 6 1 partitioned | stats)
	read -r one _ _ < <(col "$OUT/partitioned.tsv" 7 | stats)
	cat <<-MD
	# orderexp on a partitioned orders table

	* **Command:** \`$BENCH_CMD\`$([[ $N -lt 10000000 ]] && echo " (small sizes: figures not meaningful)")
	* **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end
	* **orderexp:** commit $(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	* **Data:** $(fmt "$N") orders over the last 12 months, $(fmt "$DUE") of them unpaid and due,
	  $(fmt "$IDLE") unpaid and tracked but not due; flat: one table, \`PRIMARY KEY (id)\`;
	  partitioned: $PARTS monthly range partitions of \`created_at\`, \`PRIMARY KEY (id, created_at)\`,
	  registered with \`key_column => 'id'\` (\`partition_column\` = ${PCOL:-none}).
	  $RUNS runs each, layouts taking turns, each drain on a fresh copy of its template.

	| | flat | partitioned | partitioned / flat |
	|---|---:|---:|---:|
	| drain, one \`run_due()\`: orders/s, median (min–max) | $(fmt "$f_rate") ($(fmt "$f_min")–$(fmt "$f_max")) | $(fmt "$p_rate") ($(fmt "$p_min")–$(fmt "$p_max")) | $(fmt "$(calc "$p_rate / $f_rate")" 2) |
	| idle tick, \`run_due()\` with nothing due: ms, median (min–max) | $(fmt "$f_idle" 3) ($(fmt "$f_imin" 3)–$(fmt "$f_imax" 3)) | $(fmt "$p_idle" 3) ($(fmt "$p_imin" 3)–$(fmt "$p_imax" 3)) | $(fmt "$(calc "$p_idle / $f_idle")" 2) |

	A \`SELECT 1\` round trip took $(fmt "$one" 3) ms (median) over the same connection path.
	Raw figures: \`partitioned.tsv\`.
	MD
} >"$OUT/partitioned.md"
log "done: $OUT/partitioned.md"
cat "$OUT/partitioned.md"
