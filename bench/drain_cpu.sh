#!/usr/bin/env bash
#
# bench/drain_cpu.sh - the drain's CPU time: (a) the single statement
# against (e) orderexp.run_due(), paired, with design variants beside them
#
# Usage:  bash bench/drain_cpu.sh [N [ROUNDS]]      N expired orders (default
#                                                   200000), ROUNDS (default 7)
#         VARIANTS="name:bench/sql/FILE.sql ..."    (e) again on a copy of the
#                                                   registered set that FILE
#                                                   changed first
#         PERF=1                                    and a perf profile of (e)
#
# As root on Debian bookworm, like bench/run.sh, whose cluster, data set and
# statements it uses (N expired among 3N rows, plain deadlines unless
# BENCH_PLAIN=0).  Each round restores every set from its template
# (vacuumed, analyzed, in shared buffers, checkpointed) and runs its drain
# in a new session: (a), (e), then each variant, in turn, each round
# starting one further along.  It reads the backend's own CPU time
# (/proc/PID/schedstat) around the statement, as well as the wall clock.
# CPU time leaves out what bench/run.sh's drains also time (the commits'
# WAL flushes, the worker's start and the poll), so it resolves smaller
# differences; unlike bench/instructions.sh it counts what instructions do
# not show: system calls, page faults and cache misses (a hash index's
# random buckets, say), which is where the two part (a close of 0.72 ×
# (a)'s instructions ran at 0.48-0.65 × its CPU time,
# bench/instructions.md).  The machine is shared: the per-round ratios and
# their medians are what to read.
#
# With PERF=1 (perf must be installed) the last round's (e) runs under
# `perf record -e cpu-clock -g` and the report's top symbols, inclusive,
# go to bench/out/drain_cpu.perf.txt.
#
# Writes bench/out/drain_cpu.md and bench/out/drain_cpu.tsv.
#
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
OUT=$BENCH_DIR/out
N=${1:-200000}
ROUNDS=${2:-7}
PERF=${PERF:-0}
[[ $N =~ ^[0-9]+$ ]] && ((N >= 100 && N % 2 == 0)) ||
	ox_die "usage: bash bench/drain_cpu.sh [N, even, at least 100 [ROUNDS]]"
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1)) || ox_die "ROUNDS must be a positive number"
read -r -a VARS <<<"${VARIANTS:-}"
for v in "${VARS[@]}"; do
	[[ $v =~ ^[a-z][a-z0-9_]*:.+$ && -f $OX_ROOT/${v#*:} ]] ||
		ox_die "VARIANTS: each one name:file (a lower-case name, a file under the tree), not $v"
done
((PERF)) && { command -v perf >/dev/null || ox_die "PERF=1 needs perf"; }

export OX_QUIET_BUILD=1
ox_setup
mkdir -p "$OUT"
ox_mktemp drain_cpu SCRATCH
chmod 755 "$SCRATCH"
bench_cluster_start

log "templates: $N expired orders among $((3 * N)) rows, $BENCH_MODE"
q postgres "CREATE DATABASE tpl_a" "CREATE DATABASE tpl_e" >/dev/null
for db in tpl_a tpl_e; do
	ox_psql -d $db -q -f "$BENCH_DIR/sql/schema.sql" >/dev/null
done
q tpl_a "$UNPAID_DUE_INDEX" "SELECT bench.fill_drain($N)" >/dev/null
q tpl_e "$(reg_sql '1 hour')" >/dev/null
q tpl_e "SELECT bench.fill_drain($N)" >/dev/null
METHODS=(a e)
for v in "${VARS[@]}"; do
	name=${v%%:*}
	q postgres "CREATE DATABASE tpl_$name TEMPLATE tpl_e" >/dev/null
	ox_psql -d "tpl_$name" -q -v ON_ERROR_STOP=1 -f "$OX_ROOT/${v#*:}" >/dev/null ||
		ox_die "variant $name: ${v#*:} failed"
	METHODS+=("$name")
done

# drain METHOD ROUND: one drain in a new session of a fresh copy; appends
# "method round cpu_ms wall_ms load" to the TSV.  The session prints its
# backend's pid and waits (a shell loop, \!) for a file, so that the CPU
# time is read before the statement starts and, waiting again, before the
# backend ends.
drain() {
	local m=$1 r=$2 sql pid c0 c1 t0 t1 closed perf_pid=
	restore "tpl_$m"
	sql="SELECT closed FROM orderexp.run_due()"
	[[ $m == a ]] && sql="SELECT bench.close_all()"
	rm -f "$SCRATCH/go" "$SCRATCH/done"
	coproc DRAIN { ox_psql -d bench -Atq -f - 2>&1; }
	printf '%s\n' "SELECT pg_backend_pid();" \
		"\\! while [ ! -e $SCRATCH/go ]; do sleep 0.01; done" "$sql;" \
		"\\! while [ ! -e $SCRATCH/done ]; do sleep 0.01; done" >&"${DRAIN[1]}"
	exec {DRAIN[1]}>&-
	read -r pid <&"${DRAIN[0]}"
	[[ $pid =~ ^[0-9]+$ ]] || ox_die "drain $m: no backend ($pid)"
	if ((PERF)) && [[ $m == e && $r == "$ROUNDS" ]]; then
		perf record -e cpu-clock -F 2000 -g -p "$pid" -o "$SCRATCH/perf.data" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	c0=$(cpu_ns "$pid")
	t0=$(date +%s%N)
	touch "$SCRATCH/go"
	read -r closed <&"${DRAIN[0]}"
	t1=$(date +%s%N)
	c1=$(cpu_ns "$pid")
	[[ -z $perf_pid ]] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
	touch "$SCRATCH/done"
	wait "$DRAIN_PID" || true
	[[ $closed == "$N" ]] || ox_die "drain $m closed ${closed:-nothing}, not $N"
	printf '%s\t%s\t%s\t%s\t%s\n' "$m" "$r" "$(((c1 - c0) / 1000000))" \
		"$(((t1 - t0) / 1000000))" "$(load1)" >>"$OUT/drain_cpu.tsv"
	log "round $r ($m): $(((c1 - c0) / 1000000)) ms CPU, $(((t1 - t0) / 1000000)) ms"
}

printf '# method\tround\tcpu_ms\twall_ms\tload\n' >"$OUT/drain_cpu.tsv"
# each round in another order (the methods rotated by one), so that no
# method always follows the same one
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < ${#METHODS[@]}; i++)); do
		drain "${METHODS[(i + r - 1) % ${#METHODS[@]}]}" "$r"
	done
done

if ((PERF)); then
	# (the whole report first: head would cut the pipe under pipefail)
	perf report -i "$SCRATCH/perf.data" --children --sort sym --stdio -g none \
		>"$SCRATCH/perf.txt" 2>/dev/null
	grep '%' "$SCRATCH/perf.txt" | grep -v '^#' | sed -n '1,80p' >"$OUT/drain_cpu.perf.txt"
fi

# the report: medians, and each round's ratio to its own (a)
read -r a_cpu _ _ <<<"$(col "$OUT/drain_cpu.tsv" 3 1 a | stats)"
{
	printf '# Drain CPU time: (a) against (e) run_due()\n\n'
	printf '* **Command:** `%s`, %s, orderexp commit %s\n' \
		"$( ((PERF)) && printf 'PERF=1 ')$([[ -n ${VARIANTS:-} ]] && printf 'VARIANTS="%s" ' "$VARIANTS")bash bench/drain_cpu.sh $N $ROUNDS" \
		"$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	printf '* **Set:** %s expired orders among %s rows, %s; each drain in a new session on a fresh copy, the methods in turn\n\n' \
		"$(fmt "$N")" "$(fmt $((3 * N)))" "$BENCH_MODE"
	printf '| method | median CPU ms | min-max | median wall ms | CPU ratio to (a) | per-round ratios |\n'
	printf '|---|---:|---:|---:|---:|---|\n'
	for m in "${METHODS[@]}"; do
		read -r c cmin cmax <<<"$(col "$OUT/drain_cpu.tsv" 3 1 "$m" | stats)"
		read -r w _ _ <<<"$(col "$OUT/drain_cpu.tsv" 4 1 "$m" | stats)"
		ratios=$(awk -F'\t' -v m="$m" '!/^#/ { t[$1, $2] = $3; if ($2 > n) n = $2 }
			END { for (r = 1; r <= n; r++) if (t[m, r] > 0) printf "%s%.3f", (r > 1 ? " " : ""), t["a", r] / t[m, r] }' \
			"$OUT/drain_cpu.tsv")
		printf '| %s | %s | %s-%s | %s | %.3f | %s |\n' "$m" "$(fmt "$c")" "$(fmt "$cmin")" \
			"$(fmt "$cmax")" "$(fmt "$w")" "$(calc "$a_cpu / $c")" "$ratios"
	done
	for v in "${VARS[@]}"; do
		printf '\n%s: (e) on the registered set after `%s`.' "${v%%:*}" "${v#*:}"
	done
	printf '\n'
} >"$OUT/drain_cpu.md"
cat "$OUT/drain_cpu.md"
ox_cluster_stop
