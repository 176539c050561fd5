#!/usr/bin/env bash
#
# bench/run.sh - orderexp's benchmark suite: orderexp against the physical
# limit and the usual alternatives
#
# Usage:  bash bench/run.sh            the full suite (under 15 minutes on 2 cores)
#         bash bench/run.sh --smoke    tiny sizes, one run each (under a minute)
#
# As root on Debian bookworm.  Installs what it needs (scripts/lib.sh's
# packages plus gnuplot-nox and postgresql-contrib), builds and installs the
# extension from this tree, and starts a throwaway PostgreSQL 15 cluster with
# default settings except shared_buffers = 1GB, max_wal_size = 4GB, fsync on
# (lib.sh's fsync/synchronous_commit/full_page_writes = off are put back to
# their defaults), orderexp preloaded, orderexp.databases = 'bench'.  The
# cluster is stopped and removed on any exit.
#
# Measures (see bench/README.md for the method and why):
#   1. drain throughput of N expired unpaid orders among 3N rows: (a) one
#      UPDATE ... RETURNING feeding an INSERT, (b) a batched procedure as a
#      pg_cron job runs it, (c) one transaction per order (a sample), (d) the
#      orderexp worker, (e) orderexp.run_due(); each run from a fresh copy of
#      the same template database, counts verified after each run
#   2. idle cost with IDLE_N tracked orders, none due: run_due() latency with
#      nothing due, the overview query, the worker's CPU
#   3. OLTP overhead: pgbench insert + guarded payment, registered vs. not
#   4. lateness of the worker under a steady stream, naptime 1000 and 100 ms
#   5. the worker's memory over an N-order backlog vs. a 1,000-order one
# and writes bench/out/results.md, bench/out/*.png and the raw data beside.
#
# It reports, it does not judge: missed targets are reported as missed.  It
# fails (exit 1) only on a broken run: wrong counts, a time-out, an error.
#
# Environment: BENCH_DRAIN_N, BENCH_RUNS, BENCH_IDLE_N, BENCH_IDLE_CPU_S,
# BENCH_OLTP_S, BENCH_LATE_S, BENCH_LATE_RATE override the sizes below.
# BENCH_PLAIN=1 (the default) registers bench.orders with plain deadlines
# (no timer rows; the registered table has the partial index on created_at
# WHERE unpaid, which they need), BENCH_PLAIN=0 with timer rows, as before
# 1.3 (bench/lib.sh, reg_sql).

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
OUT=$BENCH_DIR/out
MODE=full
BENCH_CMD="bash bench/run.sh${1:+ $1}"
case ${1:-} in
	--smoke) MODE=smoke ;;
	"") ;;
	*) echo "usage: bash bench/run.sh [--smoke]" >&2; exit 2 ;;
esac

if [[ $MODE == full ]]; then
	# expired unpaid orders among 3 * DRAIN_N rows: half the 1,000,000 of
	# the plan, which takes about 15.5 minutes in all (see bench/README.md)
	DRAIN_N=${BENCH_DRAIN_N:-500000}
	RUNS=${BENCH_RUNS:-3}				# runs of each drain method, memory run
	QUEUE_SAMPLE=20000					# (c) is measured on a sample
	IDLE_N=${BENCH_IDLE_N:-10000000}	# tracked orders of the idle test
	IDLE_CPU_S=${BENCH_IDLE_CPU_S:-30}	# worker CPU is read over this long
	TICK_CALLS=2000						# run_due() calls timed
	OLTP_S=${BENCH_OLTP_S:-30}			# seconds per pgbench run
	OLTP_RUNS=3							# runs of each, alternating
	OLTP_BASE=100000					# orders in the table before each run
	LATE_S=${BENCH_LATE_S:-30}			# seconds of stream per naptime
	LATE_RATE=${BENCH_LATE_RATE:-2000}	# new orders per second
	TRIGGER_ROWS=200000					# rows of the insert cost test
else
	DRAIN_N=${BENCH_DRAIN_N:-2000}
	RUNS=${BENCH_RUNS:-1}
	QUEUE_SAMPLE=200
	IDLE_N=${BENCH_IDLE_N:-20000}
	IDLE_CPU_S=${BENCH_IDLE_CPU_S:-3}
	TICK_CALLS=200
	OLTP_S=${BENCH_OLTP_S:-3}
	OLTP_RUNS=1
	OLTP_BASE=2000
	LATE_S=${BENCH_LATE_S:-4}
	LATE_RATE=${BENCH_LATE_RATE:-200}
	TRIGGER_ROWS=2000
fi
MEM_SMALL=1000				# the small backlog of the memory test
QUEUE_CLIENTS=4				# clients of (c), like a queue with 4 workers
PGBENCH_CLIENTS=4			# clients of the OLTP and lateness load
LATE_CLOSE_AFTER=3			# seconds from order to deadline in the lateness test
NAPTIMES=(1000 100)
METHODS=(a b c d e)
DRAIN_TIMEOUT=900			# a drain taking longer than this is a broken run

((DRAIN_N % 2 == 0)) || ox_die "BENCH_DRAIN_N must be even"
# pay each even order when the order placed a quarter second later arrives
LATE_LAG=$(((LATE_RATE / 4) / 2 * 2))
((LATE_LAG >= 2)) || LATE_LAG=2

OX_PACKAGES+=(gnuplot-nox postgresql-contrib python3)
PGBENCH=$OX_PGBIN/pgbench
BG_PIDS=()					# background jobs of ours, killed at exit
# shellcheck disable=SC2016 # expanded at exit
ox_at_exit 'for p in "${BG_PIDS[@]}"; do kill "$p"; done'

# helpers shared with bench/partitioned.sh
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------------------
# set-up
# ---------------------------------------------------------------------------

export OX_QUIET_BUILD=1
ox_setup
rm -rf "$OUT"
mkdir -p "$OUT"
ox_mktemp bench-scratch SCRATCH

bench_cluster_start "orderexp.databases = 'bench'"

PG_VERSION=$(q postgres "SELECT version()")
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$OX_ROOT" status --porcelain -- . ':!bench' 2>/dev/null) ]]; then
	GIT_REV="$GIT_REV (with uncommitted changes)"
fi
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# the base template: the bench schema and orderexp, nothing loaded
q postgres "CREATE DATABASE tpl_base"
ox_psql -d tpl_base -q -f "$BENCH_DIR/sql/schema.sql" >/dev/null

# The templates are built side by side (2 cores), nothing is measured yet:
#   tpl_plain  the drain set, not registered, with the partial index that a
#              cron job or a queue needs to find due orders: (a), (b), (c)
#   tpl_reg    the drain set in a table registered before it was loaded,
#              so that the timer trigger made the timers: (d), (e)
#   tpl_small  MEM_SMALL expired orders the same way: the memory baseline
#   bench_idle IDLE_N unpaid orders due in 2 h 50 min to 3 h (a policy of
#              IDLE_CLOSE_AFTER), loaded into the bare table and registered
#              afterwards (one INSERT ... SELECT of the timers: far faster
#              than the trigger for every row).  Their deadlines are far
#              enough off that none comes within 45 minutes while the
#              drains run first (ten minutes and more in the full suite;
#              with a one-hour policy the idle check failed after them)
for db in tpl_plain tpl_reg tpl_small bench_idle; do
	q postgres "CREATE DATABASE $db TEMPLATE tpl_base"
done
log "loading: drain set of $(fmt "$DRAIN_N") expired orders among $(fmt $((3 * DRAIN_N))) rows (two templates), idle set of $(fmt "$IDLE_N") orders"
REG=$(reg_sql '1 hour')
IDLE_CLOSE_AFTER='3 hours'
# timer rows of the registered drain template: due, all (none with plain deadlines)
REG_TIMERS="$DRAIN_N $((2 * DRAIN_N))"
((BENCH_PLAIN)) && REG_TIMERS="0 0"
( q tpl_plain "SELECT bench.fill_drain($DRAIN_N)" \
	"$UNPAID_DUE_INDEX" \
	"VACUUM ANALYZE" >"$SCRATCH/tpl_plain.out" ) &
P_PLAIN=$!
( t=$(timed tpl_reg "$REG;"$'\n'"SELECT bench.fill_drain($DRAIN_N);")
  q tpl_reg "VACUUM ANALYZE"
  q tpl_small "$REG" "SELECT bench.fill_drain($MEM_SMALL)" "VACUUM ANALYZE" >/dev/null
  echo "$t" >"$SCRATCH/tpl_reg.secs" ) &
P_REG=$!
( q bench_idle "ALTER TABLE bench.orders DROP CONSTRAINT orders_pkey"
  t1=$(timed bench_idle "SELECT bench.fill_idle($IDLE_N);"$'\n'"ALTER TABLE bench.orders ADD PRIMARY KEY (id);")
  t2=$(timed bench_idle "$(reg_sql "$IDLE_CLOSE_AFTER");")
  q bench_idle "VACUUM ANALYZE"
  printf '%s\t%s\n' "$t1" "$t2" >"$SCRATCH/idle_load.secs" ) &
P_IDLE=$!
BG_PIDS+=("$P_PLAIN" "$P_REG" "$P_IDLE")
wait "$P_PLAIN" || ox_die "building tpl_plain failed"
wait "$P_REG" || ox_die "building tpl_reg failed"
wait "$P_IDLE" || ox_die "loading bench_idle failed"
BG_PIDS=()
REG_LOAD_SECS=$(cat "$SCRATCH/tpl_reg.secs")
IFS=$'\t' read -r IDLE_FILL_SECS IDLE_REG_SECS <"$SCRATCH/idle_load.secs"

# the data sets are what they should be
[[ $(q tpl_plain "SELECT count(*) FILTER (WHERE status = 'unpaid' AND created_at < now() - interval '1 hour')
		|| ' ' || count(*) FILTER (WHERE status = 'paid') || ' ' || count(*) FROM bench.orders") == \
	"$DRAIN_N $DRAIN_N $((3 * DRAIN_N))" ]] || ox_die "tpl_plain has the wrong rows"
[[ $(q tpl_reg "SELECT (SELECT count(*) FROM orderexp.timers WHERE close_at <= now()) || ' ' ||
		(SELECT count(*) FROM orderexp.timers)") == "$REG_TIMERS" ]] ||
	ox_die "tpl_reg has the wrong timers"
[[ $(q tpl_reg "SELECT count(*) FROM bench.orders WHERE status = 'unpaid' AND created_at < now() - interval '1 hour'") == "$DRAIN_N" ]] ||
	ox_die "tpl_reg has the wrong orders"
# idle_check DB: the idle set's tracked orders and those of them due within 45
# minutes, "IDLE_N 0": its timers, or with plain deadlines its unpaid
# orders, which then have no timer row
idle_check() {
	if ((BENCH_PLAIN)); then
		q "$1" "SELECT count(*) || ' ' || count(*) FILTER (WHERE created_at + interval '$IDLE_CLOSE_AFTER' <= now() + interval '45 minutes')
			FROM bench.orders WHERE status = 'unpaid' AND NOT EXISTS (SELECT 1 FROM orderexp.timers)"
	else
		q "$1" "SELECT count(*) || ' ' || count(*) FILTER (WHERE close_at <= now() + interval '45 minutes')
			FROM orderexp.timers"
	fi
}
[[ $(idle_check bench_idle) == "$IDLE_N 0" ]] || ox_die "bench_idle has the wrong timers"
log "loaded (tpl_reg through the trigger: ${REG_LOAD_SECS%.*} s; idle set: fill ${IDLE_FILL_SECS%.*} s, registration ${IDLE_REG_SECS%.*} s)"

# ---------------------------------------------------------------------------
# 1. drain throughput, and 5. the worker's memory over the big backlog
# ---------------------------------------------------------------------------

# verify METHOD EXPECTED-CLOSED: the counts after a drain run, or die
verify_drain() {
	local method=$1 closed=$2 events got want
	if [[ $method == [abc] ]]; then
		events="(SELECT count(*) FROM bench.outbox WHERE kind = 'closed')
			|| ' ' || (SELECT count(DISTINCT order_key) FROM bench.outbox)"
		want="$closed $DRAIN_N $((DRAIN_N - closed)) $closed $closed"
	else
		events="(SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed')
			|| ' ' || (SELECT count(DISTINCT order_key) FROM orderexp.outbox)
			|| ' ' || (SELECT count(*) FROM orderexp.timers WHERE close_at <= now())
			|| ' ' || (SELECT count(*) FROM orderexp.timers)"
		want="$closed $DRAIN_N 0 $closed $closed 0 $DRAIN_N"
		((BENCH_PLAIN)) && want="$closed $DRAIN_N 0 $closed $closed 0 0"
	fi
	got=$(q bench "SELECT count(*) FILTER (WHERE status = 'closed') || ' ' ||
		count(*) FILTER (WHERE status = 'paid') || ' ' ||
		count(*) FILTER (WHERE status = 'unpaid' AND created_at < now() - interval '1 hour')
		|| ' ' || $events FROM bench.orders")
	[[ $got == "$want" ]] ||
		ox_die "drain ($method): counts are '$got', expected '$want' (closed paid due-unpaid events distinct-orders [due-timers timers])"
}

# worker_drain N TIMEOUT: enable the worker (reload) and wait until the
# outbox has N events; prints the seconds from the ALTER SYSTEM on
worker_drain() {
	timed bench "ALTER SYSTEM SET orderexp.enabled = on;
		SELECT pg_reload_conf() \\gset
		CALL bench.wait_outbox('orderexp.outbox', 0, $1, $2);"
}

# start_sampler PID FILE: VmRSS, RssAnon, RssShmem of PID (kB) into FILE
# every 2 ms (bench/rss_sampler.py), in the background, until stop_sampler;
# returns once the first sample is in FILE (python takes some 30 ms to
# start, as long as a whole small drain: a drain begun before would go
# unseen)
SAMPLER=
start_sampler() {
	local i
	rm -f "$2"
	python3 "$BENCH_DIR/rss_sampler.py" "$1" "$2" 0.002 &
	SAMPLER=$!
	BG_PIDS+=("$SAMPLER")
	for i in $(seq 1 500); do
		[[ -s $2 ]] && return 0
		sleep 0.01
	done
	ox_die "the memory sampler did not start"
}

stop_sampler() {
	kill "$SAMPLER" 2>/dev/null || true
	wait "$SAMPLER" 2>/dev/null || true
}

# run_method METHOD RUN: one timed drain from a fresh copy; appends to drain.tsv
run_method() {
	local m=$1 run=$2 secs rows rps wpid cpu0 cpu1 wcpu="" l0
	rows=$DRAIN_N
	case $m in
		a|b|c) restore tpl_plain ;;
		d|e) restore tpl_reg ;;
	esac
	l0=$(load1)
	case $m in
		a) secs=$(timed bench "SELECT bench.close_all();") ;;
		b) secs=$(timed bench "CALL bench.close_batched(1000);") ;;
		c)
			rows=$QUEUE_SAMPLE
			rps=$(pgb -n -c "$QUEUE_CLIENTS" -j 2 -t $((QUEUE_SAMPLE / QUEUE_CLIENTS)) \
				-f "$BENCH_DIR/pgbench/close_one.sql" bench 2>&1 | tps_of)
			[[ -n $rps ]] || ox_die "pgbench of (c) failed"
			secs=$(calc "$rows / $rps")
			;;
		d)
			# timed without the memory sampler, whose reads every 2 ms take
			# a share of one of the machine's two cores while the worker
			# drains: the big backlog's memory has drains of its own (5.)
			wpid=$(worker_pid)
			cpu0=$(cpu_ns "$wpid")
			secs=$(worker_drain "$DRAIN_N" "$DRAIN_TIMEOUT")
			cpu1=$(cpu_ns "$wpid")
			set_guc orderexp.enabled off
			wcpu=$(calc "($cpu1 - $cpu0) / 1e9")
			;;
		e) secs=$(timed bench "SELECT * FROM orderexp.run_due();") ;;
	esac
	[[ -n $secs ]] || ox_die "drain ($m) gave no time"
	[[ $m == c ]] || rps=$(calc "$rows / $secs")
	verify_drain "$m" "$rows"
	printf '%s\t%s\t%s\t%.3f\t%.0f\t%s\t%s\n' "$m" "$run" "$rows" "$secs" "$rps" "$l0" "$wcpu" >>"$OUT/drain.tsv"
	log "drain ($m) run $run: $(fmt "$rows") rows in $(fmt "$secs" 2) s = $(fmt "$rps") rows/s${wcpu:+ (worker CPU $(fmt "$wcpu" 1) s)}"
}

# record_mem KIND RUN HWM-BEFORE HWM-AFTER SAMPLES: one line of mem.tsv
record_mem() {
	local peak_rss peak_anon peak_shmem
	local early_anon last_anon late_peak_anon
	read -r peak_rss peak_anon peak_shmem early_anon last_anon late_peak_anon < <(awk -F'\t' '
		{ if ($1 > r) r = $1; if ($2 > a) a = $2; if ($3 > s) s = $3; v[NR] = $2 }
		END {
			for (i = int(NR / 10) + 1; i <= NR; i++) if (v[i] > p) p = v[i]
			print r + 0, a + 0, s + 0, v[int(NR / 10) + 1] + 0, v[NR] + 0, p + 0
		}' "$5")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$peak_rss" "$peak_anon" \
		"$peak_shmem" "$early_anon" "$last_anon" "$late_peak_anon" >>"$OUT/mem.tsv"
}

# sampled_drain KIND RUN WPID EVENTS TIMEOUT: enable the worker WPID until
# the outbox holds EVENTS events, its memory sampled all along (untimed),
# then turn it off again and add the drain to mem.tsv as KIND
sampled_drain() {
	local kind=$1 run=$2 wpid=$3 hwm0 hwm1
	hwm0=$(status_kb "$wpid" VmHWM)
	start_sampler "$wpid" "$OUT/mem_samples_${kind}_$run.tsv"
	worker_drain "$4" "$5" >/dev/null
	sleep 0.3		# at least a couple of samples
	hwm1=$(status_kb "$wpid" VmHWM)
	stop_sampler
	set_guc orderexp.enabled off
	record_mem "$kind" "$run" "$hwm0" "$hwm1" "$OUT/mem_samples_${kind}_$run.tsv"
}

printf '# method\trun\trows\tseconds\trows_per_s\tload1_before\tworker_cpu_s\n' >"$OUT/drain.tsv"
printf '# backlog\trun\tvmhwm_before_kb\tvmhwm_after_kb\tpeak_vmrss_kb\tpeak_rssanon_kb\tpeak_rssshmem_kb\trssanon_at_10pct_kb\trssanon_last_kb\tpeak_rssanon_after_10pct_kb\n' >"$OUT/mem.tsv"

# round-robin, so that a change in the machine's load hits every method alike
for run in $(seq 1 "$RUNS"); do
	for m in "${METHODS[@]}"; do
		run_method "$m" "$run"
	done
done

# 5. the big backlog: the (d) drain again, sampled (untimed)
for run in $(seq 1 "$RUNS"); do
	restore tpl_reg
	sampled_drain big "$run" "$(worker_pid)" "$DRAIN_N" "$DRAIN_TIMEOUT"
	verify_drain d "$DRAIN_N"
done
log "memory: big backlog runs done"

# 5. the small backlog: the same worker path over MEM_SMALL orders
for run in $(seq 1 "$RUNS"); do
	restore tpl_small
	wpid=$(worker_pid)
	sampled_drain small "$run" "$wpid" "$MEM_SMALL" 60
	[[ $(q bench "SELECT count(*) FROM bench.orders WHERE status = 'closed'") == "$MEM_SMALL" ]] ||
		ox_die "memory run: the small backlog was not closed"

	# The same worker over another MEM_SMALL orders.  Its first batch builds
	# caches and plans and leaves glibc's heap warmed up (freed blocks it
	# keeps; its mmap threshold raised): a worker that has closed one batch
	# before is the fair baseline for a backlog that takes many batches.
	q bench "INSERT INTO bench.orders (id, status, created_at, customer_email, amount)
		SELECT $((3 * MEM_SMALL)) + i, 'unpaid', now() - interval '2 hours',
			   'warm' || i || '@example.com', 1
		  FROM generate_series(1, $MEM_SMALL) AS i" >/dev/null
	sampled_drain small_warm "$run" "$wpid" $((2 * MEM_SMALL)) 60
	[[ $(q bench "SELECT count(*) FROM bench.orders WHERE status = 'closed'") == "$((2 * MEM_SMALL))" ]] ||
		ox_die "memory run: the second small backlog was not closed"
	[[ $(worker_pid) == "$wpid" ]] || ox_die "memory run: the worker was replaced"
done
log "memory: small backlog runs done"

# Where a batch's time goes: EXPLAIN (ANALYZE, BUFFERS, WAL) of every
# statement the sweep runs, by auto_explain with nested statements, while
# run_due() takes five batches of 1000 on a fresh copy of tpl_reg.  The
# plans come back to psql as LOG messages.  From 1.3 on a batch is three
# statements (take, orders, record); before, one.
restore tpl_reg
{
	echo "LOAD 'auto_explain';"
	echo "SET auto_explain.log_min_duration = 0;"
	echo "SET auto_explain.log_analyze = on;"
	echo "SET auto_explain.log_buffers = on;"
	echo "SET auto_explain.log_wal = on;"
	echo "SET auto_explain.log_nested_statements = on;"
	echo "SET client_min_messages = log;"
	echo "SELECT * FROM orderexp.run_due(5000);"
} >"$SCRATCH/explain_batch.sql"
ox_psql -d bench -f "$SCRATCH/explain_batch.sql" >"$OUT/explain_sweep_batch.txt" 2>&1 ||
	ox_warn "EXPLAIN of the sweep batch failed (see $OUT/explain_sweep_batch.txt)"
log "drain done"

# ---------------------------------------------------------------------------
# 2. idle cost
# ---------------------------------------------------------------------------

q postgres "DROP DATABASE bench WITH (FORCE)" "ALTER DATABASE bench_idle RENAME TO bench"
q bench "SELECT bench.prewarm()" "CHECKPOINT" >/dev/null
set_guc orderexp.naptime 1000
set_guc orderexp.enabled on
wpid=$(worker_pid)
sleep 2
c0=$(cpu_ns "$wpid"); t0=$(date +%s.%N)
sleep "$IDLE_CPU_S"
c1=$(cpu_ns "$wpid"); t1=$(date +%s.%N)
[[ -d /proc/$wpid ]] || ox_die "the worker went away during the idle test"
IDLE_ELAPSED=$(calc "$t1 - $t0")
IDLE_CPU_MS=$(calc "($c1 - $c0) / 1e6")
IDLE_CPU_SHARE=$(calc "100 * ($c1 - $c0) / 1e9 / $IDLE_ELAPSED")
IDLE_CPU_PER_TICK=$(calc "$IDLE_CPU_MS / ($IDLE_ELAPSED / 1.0)")	# naptime 1 s: one tick a second
set_guc orderexp.enabled off

# run_due() with nothing due, and SELECT 1 for the client round trip
pgb -n -c 1 -j 1 -t "$TICK_CALLS" -l --log-prefix=rundue -f "$BENCH_DIR/pgbench/run_due.sql" bench >/dev/null 2>&1 ||
	ox_die "pgbench of run_due() failed"
pgb -n -c 1 -j 1 -t "$TICK_CALLS" -l --log-prefix=select1 -f "$BENCH_DIR/pgbench/select1.sql" bench >/dev/null 2>&1 ||
	ox_die "pgbench of SELECT 1 failed"
awk '{ print $3 / 1000 }' "$SCRATCH"/rundue.* >"$OUT/idle_run_due_ms.txt"
awk '{ print $3 / 1000 }' "$SCRATCH"/select1.* >"$OUT/idle_select1_ms.txt"
read -r RUNDUE_MED RUNDUE_MIN RUNDUE_MAX < <(stats <"$OUT/idle_run_due_ms.txt")
RUNDUE_P99=$(sort -g "$OUT/idle_run_due_ms.txt" | awk '{ v[NR] = $1 } END { print v[int(NR * 0.99)] }')
read -r SELECT1_MED _ _ < <(stats <"$OUT/idle_select1_ms.txt")
RUNDUE_DB=$(calc "$RUNDUE_MED - $SELECT1_MED")

# the worker's overview query (the C string overview_sql of src/sweep.c)
OVERVIEW_SQL=$(sed -n '/^static const char \*overview_sql =/,/;$/p' "$OX_ROOT/src/sweep.c" |
	grep -o '"[^"]*"' | sed 's/^"//; s/"$//' | tr -d '\n')
OVERVIEW_MED=NaN
if [[ -n $OVERVIEW_SQL ]]; then
	for _ in 1 2 3 4 5 6 7; do
		echo "EXPLAIN (ANALYZE, BUFFERS) $OVERVIEW_SQL;"
	done >"$SCRATCH/overview.sql"
	if ox_psql -d bench -f "$SCRATCH/overview.sql" >"$SCRATCH/overview.out" 2>&1; then
		read -r OVERVIEW_MED _ _ < <(sed -n 's/^ *Execution Time: \([0-9.]*\) ms/\1/p' "$SCRATCH/overview.out" | stats)
		awk '/QUERY PLAN/ { n++ } n == 7' "$SCRATCH/overview.out" >"$OUT/idle_overview_explain.txt"
	else
		ox_warn "EXPLAIN of the overview query failed"
		cp "$SCRATCH/overview.out" "$OUT/idle_overview_explain.txt"
	fi
else
	ox_warn "overview_sql not found in src/sweep.c: no EXPLAIN of it"
fi
[[ $(idle_check bench) == "$IDLE_N 0" ]] || ox_die "idle test: the timers changed"
log "idle: run_due() $(fmt "$RUNDUE_MED" 3) ms (SELECT 1 $(fmt "$SELECT1_MED" 3) ms), overview $(fmt "$OVERVIEW_MED" 3) ms, worker CPU $(fmt "$IDLE_CPU_SHARE" 3) %"
q postgres "DROP DATABASE bench WITH (FORCE)"

# ---------------------------------------------------------------------------
# 3. OLTP overhead, and the insert cost per order
# ---------------------------------------------------------------------------

q postgres "CREATE DATABASE bench TEMPLATE tpl_base"
set_guc orderexp.enabled on

# oltp_prepare MODE: the table with OLTP_BASE recent orders, registered or
# kept as a pg_cron user would keep it (plain: not registered, with the
# partial index by which the job finds due orders, as (b) has it)
oltp_prepare() {
	q bench "SELECT orderexp.drop_close_policy('bench.orders')
				FROM orderexp.tables WHERE order_table = 'bench.orders'::regclass" \
		"DROP INDEX IF EXISTS bench.orders_unpaid_due" \
		"TRUNCATE bench.orders RESTART IDENTITY" \
		"INSERT INTO bench.orders (status, customer_email)
			SELECT CASE WHEN i % 3 = 0 THEN 'paid' ELSE 'unpaid' END, 'base' || i || '@example.com'
			  FROM generate_series(1, $OLTP_BASE) i" >/dev/null
	if [[ $1 == plain ]]; then
		q bench "$UNPAID_DUE_INDEX" >/dev/null
	else
		q bench "$REG" >/dev/null
	fi
	q bench "VACUUM ANALYZE bench.orders" "VACUUM orderexp.timers" "CHECKPOINT"
}

# oltp_check MODE: every order inserted unpaid has its timer, or none at all
oltp_check() {
	local got want
	got=$(q bench "SELECT count(*) FROM orderexp.timers")
	if [[ $1 == plain ]] || ((BENCH_PLAIN)); then
		want=0
	else
		want=$(q bench "SELECT count(*) - $OLTP_BASE + $((OLTP_BASE - OLTP_BASE / 3)) FROM bench.orders")
	fi
	[[ $got == "$want" ]] || ox_die "OLTP ($1): $got timers, expected $want"
}

printf '# mode\trun\ttps\tload1_before\n' >"$OUT/oltp.tsv"
for run in $(seq 1 "$OLTP_RUNS"); do
	if ((run % 2)); then order=(plain registered); else order=(registered plain); fi
	for mode in "${order[@]}"; do
		oltp_prepare "$mode"
		l0=$(load1)
		tps=$(pgb -n -c "$PGBENCH_CLIENTS" -j 2 -T "$OLTP_S" -f "$BENCH_DIR/pgbench/oltp.sql" bench 2>&1 | tps_of)
		[[ -n $tps ]] || ox_die "pgbench of the OLTP test failed"
		oltp_check "$mode"
		printf '%s\t%s\t%s\t%s\n' "$mode" "$run" "$tps" "$l0" >>"$OUT/oltp.tsv"
		log "OLTP $mode run $run: $(fmt "$tps") TPS"
	done
done

# the timer trigger's cost per inserted unpaid order: TRIGGER_ROWS in one
# statement into the registered table (emptied: its TRUNCATE trigger drops
# the timers too) and into a bare copy of it
oltp_prepare registered
q bench "CREATE TABLE bench.orders_bare (LIKE bench.orders INCLUDING ALL)" \
	"TRUNCATE bench.orders" "CHECKPOINT" >/dev/null
INS_BARE=$(timed bench "INSERT INTO bench.orders_bare (id, customer_email)
	SELECT i, 'x' || i FROM generate_series(1, $TRIGGER_ROWS) i;")
INS_REG=$(timed bench "INSERT INTO bench.orders (id, customer_email)
	SELECT i, 'x' || i FROM generate_series(1, $TRIGGER_ROWS) i;")
[[ $(q bench "SELECT count(*) FROM orderexp.timers") == "$((BENCH_PLAIN ? 0 : TRIGGER_ROWS))" ]] ||
	ox_die "insert cost test: wrong number of timers"
US_BARE=$(calc "$INS_BARE * 1e6 / $TRIGGER_ROWS")
US_REG=$(calc "$INS_REG * 1e6 / $TRIGGER_ROWS")
log "insert cost: $(fmt "$US_BARE" 1) us per order bare, $(fmt "$US_REG" 1) us registered"
q postgres "DROP DATABASE bench WITH (FORCE)"

# ---------------------------------------------------------------------------
# 4. lateness
# ---------------------------------------------------------------------------

printf '# naptime_ms\torders\tpaid\tclosed\trate\tp50_ms\tp99_ms\tmax_ms\tmin_ms\tearly\tob_p50_ms\tob_p99_ms\tob_max_ms\tob_early\tload1_before\n' >"$OUT/lateness.tsv"
for nap in "${NAPTIMES[@]}"; do
	q postgres "CREATE DATABASE bench TEMPLATE tpl_base"
	# the time of each close: clock_timestamp() at the end of the closing
	# statement, from a statement trigger with a transition table
	q bench "CREATE TABLE bench.closes (id bigint, closed_at timestamptz)" \
		"CREATE FUNCTION bench.note_closes() RETURNS trigger LANGUAGE plpgsql AS \$\$
		 BEGIN
			INSERT INTO bench.closes SELECT n.id, clock_timestamp() FROM new_rows n WHERE n.status = 'closed';
			RETURN NULL;
		 END \$\$" \
		"CREATE TRIGGER note_closes AFTER UPDATE ON bench.orders REFERENCING NEW TABLE AS new_rows
		 FOR EACH STATEMENT EXECUTE FUNCTION bench.note_closes()" \
		"$(reg_sql "$LATE_CLOSE_AFTER seconds")" \
		"CHECKPOINT" >/dev/null
	set_guc orderexp.naptime "$nap"
	set_guc orderexp.enabled on
	wpid=$(worker_pid)
	l0=$(load1)
	pgb -n -c "$PGBENCH_CLIENTS" -j 2 -R "$LATE_RATE" -T "$LATE_S" -D lag="$LATE_LAG" \
		-f "$BENCH_DIR/pgbench/stream.sql" bench >"$OUT/lateness_pgbench_$nap.txt" 2>&1 ||
		ox_die "pgbench of the lateness stream failed (see $OUT/lateness_pgbench_$nap.txt)"
	# every deadline passed and the worker caught up
	end=$((SECONDS + 60))
	until [[ $(q bench "SELECT now() > max(created_at) + interval '$((LATE_CLOSE_AFTER + 1)) seconds'
			AND NOT EXISTS (SELECT 1 FROM orderexp.timers WHERE close_at <= now() - interval '1 second')
			AND NOT EXISTS (SELECT 1 FROM bench.orders WHERE status = 'unpaid'
							 AND created_at + interval '$LATE_CLOSE_AFTER seconds' <= now() - interval '1 second')
			FROM bench.orders") == t ]]; do
		((SECONDS < end)) || ox_die "lateness ($nap ms): the worker did not catch up within a minute"
		sleep 0.5
	done
	set_guc orderexp.enabled off
	[[ $(q bench "SELECT count(*) FROM bench.orders WHERE status = 'unpaid'
			AND created_at + interval '$LATE_CLOSE_AFTER seconds' < now() - interval '1 second'") == 0 ]] ||
		ox_die "lateness ($nap ms): due orders left unpaid"
	[[ $(q bench "SELECT (SELECT count(*) FROM bench.orders WHERE status = 'closed') =
			(SELECT count(*) FROM orderexp.outbox WHERE kind = 'closed') AND
			(SELECT count(*) FROM bench.orders WHERE status = 'closed') =
			(SELECT count(DISTINCT id) FROM bench.closes)") == t ]] ||
		ox_die "lateness ($nap ms): closes, events and close times do not match"
	q bench "SELECT ms, cume_dist() OVER (ORDER BY ms)
			   FROM (SELECT extract(epoch FROM c.closed_at - o.created_at
									- interval '$LATE_CLOSE_AFTER seconds') * 1000 AS ms
					   FROM bench.closes c JOIN bench.orders o USING (id)) s
			  ORDER BY ms" | tr '|' '\t' >"$OUT/lateness_cdf_$nap.tsv"
	row=$(q bench "WITH l AS (
			SELECT extract(epoch FROM c.closed_at - o.created_at
						   - interval '$LATE_CLOSE_AFTER seconds') * 1000 AS ms
			  FROM bench.closes c JOIN bench.orders o USING (id)),
		b AS (
			SELECT extract(epoch FROM x.created_at - (x.payload->>'close_at')::timestamptz) * 1000 AS ms
			  FROM orderexp.outbox x WHERE x.kind = 'closed')
		SELECT concat_ws(E'\t', $nap,
			(SELECT count(*) FROM bench.orders),
			(SELECT count(*) FROM bench.orders WHERE status = 'paid'),
			(SELECT count(*) FROM bench.orders WHERE status = 'closed'),
			(SELECT round(count(*) / extract(epoch FROM max(created_at) - min(created_at))::numeric) FROM bench.orders),
			(SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM l),
			(SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM l),
			(SELECT round(max(ms)::numeric, 1) FROM l),
			(SELECT round(min(ms)::numeric, 1) FROM l),
			(SELECT count(*) FROM l WHERE ms < 0),
			(SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM b),
			(SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM b),
			(SELECT round(max(ms)::numeric, 1) FROM b),
			(SELECT count(*) FROM b WHERE ms < 0),
			'$l0')")
	printf '%s\n' "$row" >>"$OUT/lateness.tsv"
	log "lateness at naptime $nap ms: $(cut -f2 <<<"$row") orders ($(cut -f5 <<<"$row")/s), p50 $(cut -f6 <<<"$row") ms, p99 $(cut -f7 <<<"$row") ms, max $(cut -f8 <<<"$row") ms, early $(cut -f10 <<<"$row")"
	q postgres "DROP DATABASE bench WITH (FORCE)"
done
set_guc orderexp.naptime 1000
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

# shellcheck source=bench/report.sh
source "$BENCH_DIR/report.sh"
write_report >"$OUT/results.md"
draw_plots
ox_cluster_stop
log "done in $((SECONDS - START_SECONDS)) s: $OUT/results.md"
