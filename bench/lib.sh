# shellcheck shell=bash
#
# bench/lib.sh - helpers of the benchmark scripts (bench/run.sh,
# bench/partitioned.sh), sourced after scripts/lib.sh.  The callers set
# OUT, SCRATCH (a temp dir) and PGBENCH before using the helpers that need
# them.


START_SECONDS=$SECONDS

# the index by which a pg_cron job finds due orders in bench.orders: the
# unregistered baselines of the drain ((a), (b)) and of the OLTP figures
# have it, as issue 21 defines them
# shellcheck disable=SC2034  # used by the scripts that source this file
UNPAID_DUE_INDEX="CREATE INDEX orders_unpaid_due ON bench.orders (created_at) WHERE status = 'unpaid'"

# BENCH_PLAIN: 1 (the default) registers bench.orders with plain deadlines
# (orderexp.set_plain_deadlines, 1.3): no timer rows, the sweep finds due
# orders through UNPAID_DUE_INDEX, which the registered table then has too;
# 0 registers it with timer rows, as before 1.3, without that index.  The
# benchmark scripts read it to measure either in the same script.
BENCH_PLAIN=${BENCH_PLAIN:-1}
[[ $BENCH_PLAIN == [01] ]] || ox_die "BENCH_PLAIN must be 0 or 1"
# shellcheck disable=SC2034  # used by the scripts that source this file
if ((BENCH_PLAIN)); then
	BENCH_MODE="plain deadlines (BENCH_PLAIN=1)"
else
	BENCH_MODE="timer rows (BENCH_PLAIN=0)"
fi

# reg_sql CLOSE_AFTER: the statements (separated by ";" and a new line)
# that register bench.orders with close_after CLOSE_AFTER, payload column
# customer_email, and, with BENCH_PLAIN=1, give it plain deadlines.
#
# With plain deadlines an unpaid order without a timer row is due at its
# created-at plus close_after, whenever it was created.  The registration
# writes the timer rows of the orders already there (the idle set, the OLTP
# test's base orders); they are deleted here, so that the table is in the
# state it would be in had it had plain deadlines when they were inserted.
# Orders inserted after this (the drain templates, the inserts of the
# OLTP, lateness and insert cost tests) get no timer row: bench.orders'
# created-at is NOT NULL, so the table has no timer trigger on INSERT.
reg_sql() {
	printf '%s' "SELECT orderexp.set_close_policy('bench.orders', '$1', payload_columns => '{customer_email}')"
	((BENCH_PLAIN)) || return 0
	printf ';\n%s' "$UNPAID_DUE_INDEX" \
		"SELECT orderexp.set_plain_deadlines('bench.orders')" \
		"DELETE FROM orderexp.timers WHERE order_table = 'bench.orders'::regclass"
}

log() { printf '==> [%4ds] %s\n' $((SECONDS - START_SECONDS)) "$*"; }

# bench_cluster_start [SETTING...]: the benchmarks' throwaway cluster:
# PostgreSQL's defaults but shared_buffers = 1GB and max_wal_size = 4GB,
# with fsync, synchronous_commit and full_page_writes on again (scripts/
# lib.sh turns them off for the tests), orderexp preloaded, its worker off;
# SETTINGs add to that
bench_cluster_start() {
	ox_cluster_start \
		"fsync = on" \
		"synchronous_commit = on" \
		"full_page_writes = on" \
		"shared_buffers = 1GB" \
		"max_wal_size = 4GB" \
		"shared_preload_libraries = 'orderexp'" \
		"orderexp.enabled = off" \
		"$@"
}

# q DB SQL...: each SQL a statement of its own (psql -c), unaligned output
q() {
	local db=$1 arg args=()
	shift
	for arg in "$@"; do args+=(-c "$arg"); done
	ox_psql -d "$db" -Atq "${args[@]}"
}

# stats: numbers on stdin, one per line -> "median min max"
stats() {
	sort -g | awk '{ v[NR] = $1 }
		END {
			if (NR == 0) { print "NaN NaN NaN"; exit }
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			print m, v[1], v[NR]
		}'
}

# col FILE N [FILTER-COLUMN VALUE]: column N of a TSV, optionally where
# column FILTER-COLUMN equals VALUE
col() {
	awk -F'\t' -v c="$2" -v fc="${3:-0}" -v fv="${4:-}" \
		'!/^#/ && (fc == 0 || $fc == fv) { print $c }' "$1"
}

# fmt NUMBER [DECIMALS]: thousands separators for big numbers
fmt() {
	LC_ALL=C awk -v x="$1" -v d="${2:-0}" 'BEGIN {
		if (x == "NaN" || x == "") { print "n/a"; exit }
		s = sprintf("%." d "f", x); neg = (s ~ /^-/); if (neg) s = substr(s, 2)
		split(s, p, "."); i = p[1]; o = ""
		while (length(i) > 3) { o = "," substr(i, length(i) - 2) o; i = substr(i, 1, length(i) - 3) }
		o = i o; if (d > 0) o = o "." p[2]; print (neg ? "-" : "") o }'
}

# calc EXPR: floating point arithmetic
calc() { awk "BEGIN { print $* }"; }

# callgrind_count DATA DB FILE TAG CALLGRIND-OUT: the instructions a
# single-user backend executes running FILE in DB, under valgrind's
# callgrind, on a fresh copy of the stopped cluster DATA (into $WORK/data);
# its log is $WORK/TAG.log (bench/instructions.sh, bench/trigger.sh)
callgrind_count() {
	local data=$1 db=$2 file=$3 tag=$4 cgout=$5 n
	rm -rf "$WORK/data"
	cp -a "$data" "$WORK/data"
	ox_as_postgres valgrind --tool=callgrind --callgrind-out-file="$cgout" \
		"$OX_PGBIN/postgres" --single -D "$WORK/data" -c jit=off \
		-c shared_preload_libraries=orderexp "$db" <"$file" >"$WORK/$tag.log" 2>&1 ||
		{ tail -n 20 "$WORK/$tag.log" >&2; ox_die "$tag failed"; }
	grep -qE 'ERROR|FATAL' "$WORK/$tag.log" && { grep -E 'ERROR|FATAL' "$WORK/$tag.log" >&2; ox_die "$tag failed"; }
	n=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/$tag.log")
	[[ -n $n ]] || ox_die "$tag: no instruction count"
	printf '%s\n' "$n"
}

# per TOTAL BASE N: (TOTAL - BASE) / N, rounded: instructions per unit
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f", (a - b) / n }'; }

load1() { cut -d' ' -f1 /proc/loadavg; }

# ns on CPU of a process (/proc/PID/schedstat), or 0 if it is gone
cpu_ns() { cut -d' ' -f1 "/proc/$1/schedstat" 2>/dev/null || echo 0; }

# status_kb PID FIELD: a field of /proc/PID/status in kB
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

set_guc() {
	q postgres "ALTER SYSTEM SET $1 = '$2'" "SELECT pg_reload_conf()" >/dev/null
}

# pid of the orderexp worker of database bench, waiting for it to start
worker_pid() {
	local pid end=$((SECONDS + 30))
	while ((SECONDS < end)); do
		pid=$(q postgres "SELECT pid FROM pg_stat_activity
			WHERE backend_type = 'orderexp worker' AND datname = 'bench'")
		if [[ -n $pid ]]; then
			printf '%s\n' "$pid"
			return 0
		fi
		sleep 0.2
	done
	ox_die "no orderexp worker in database bench after 30 s (see $OX_PGLOG)"
}

# restore TEMPLATE: database bench afresh from a template, vacuumed,
# analyzed, in shared buffers, checkpointed
restore() {
	q postgres "SET client_min_messages = warning" "DROP DATABASE IF EXISTS bench WITH (FORCE)" \
		"CREATE DATABASE bench TEMPLATE $1 STRATEGY FILE_COPY"
	q bench "VACUUM ANALYZE" "SELECT bench.prewarm()" "CHECKPOINT" >/dev/null
}

# timed DB SQL-FILE-TEXT: run psql script text between two clock readings;
# prints the elapsed seconds
timed() {
	local out
	out=$(ox_psql -d "$1" -Atq -f - <<-EOF
		SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
		$2
		SELECT extract(epoch FROM clock_timestamp()) - :t0 AS elapsed \gset
		\echo ELAPSED :elapsed
	EOF
	) || ox_die "timed statement failed: $2"
	sed -n 's/^ELAPSED //p' <<<"$out"
}

# pgbench as postgres's client, from the scratch dir (for its log files)
pgb() {
	(cd "$SCRATCH" && "$PGBENCH" -h "$OX_PGHOST" -p "$OX_PGPORT" -U postgres "$@")
}

# tps from pgbench output on stdin
tps_of() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p'; }

