#!/usr/bin/env bash
#
# bench/relay.sh - orderexp-relay's throughput against a webhook receiver
#
# Usage:  bash bench/relay.sh            the full benchmark (about 5 minutes
#                                        with a serial relay, on 2 cores)
#         bash bench/relay.sh --smoke    tiny sizes, one run each (under a minute)
#
# As root on Debian bookworm.  Like bench/run.sh it installs what it needs,
# builds and installs orderexp and orderexp-relay from this tree, and runs a
# throwaway PostgreSQL 15 cluster (bench/lib.sh's settings: fsync on,
# shared_buffers 1GB) as postgres on a free port, its socket in a temporary
# directory.  The webhook receiver is bench/receiver.c (libmicrohttpd,
# built here; BENCH_RELAY_RECEIVER=py for bench/receiver.py) on 127.0.0.1.  The
# cluster, the receiver and every other process of ours are stopped, and the
# temporary directories removed, on any exit, Ctrl-C included.
#
# Measures (see bench/README.md, "bench/relay.sh"):
#   0. the receiver alone: curl --parallel against it, to show that it is
#      not what limits the relay
#   1. the baseline: orderexp.claim(100) + orderexp.ack() in one session
#      (pgbench, one client), events/s: the rate claim and ack allow
#   2. `orderexp-relay --once -q --webhook=URL` draining the outbox, with
#      receivers answering after 0, 10, 100 and 1000 ms, default settings
#   3. the same against the 100 ms receiver with --concurrency webhook=N,
#      N = 1, 16, 64, 256, when the relay under test has --concurrency
#      (its --help says so); skipped with a note otherwise
#   4. with BENCH_RELAY_OTHER, another relay build in the cases of 2, in the
#      same rounds (before/after a change, paired)
# Per case: events/s from the relay's wall time (median of the runs), the
# relay's CPU (user + sys) per event, the most deliveries the receiver saw
# in flight at once, duplicates.  The runs go round by round (every case
# once, then again; every other round in the reverse order), so that a
# change in the machine's load hits all alike; the report also gives, per
# round, the baseline's and the other relay's wall time over the relay's
# at 0 ms (paired ratios) and their median.
# Writes bench/out/relay/relay-<date>.md, relay.png and the raw data beside.
#
# It fails (exit 1) only on a broken run: a relay exit status other than
# 0, an outbox not drained, a receiver that did not get every event.
#
# Environment:
#   BENCH_RELAY              the orderexp-relay to measure (default: the one
#                            built from this tree, in pg_config --bindir)
#   BENCH_RELAY_OTHER        another orderexp-relay, measured in the same
#                            rounds against the receivers of
#                            BENCH_RELAY_LATENCIES (default: none)
#   BENCH_RELAY_OPTS         more options for every relay run (word-split)
#   BENCH_RELAY_EVENTS       events per case (10000)
#   BENCH_RELAY_RUNS         runs per case (3)
#   BENCH_RELAY_TARGET_S     a case gets fewer events when it would take
#                            longer than this at one delivery at a time (15);
#                            never the 0 ms case, which gets as many as the
#                            baseline
#   BENCH_RELAY_LATENCIES    receiver latencies in ms ("0 10 100 1000")
#   BENCH_RELAY_CONCURRENCY  --concurrency webhook=N values ("1 16 64 256")
#   BENCH_RELAY_CONC_LATENCY latency in ms of the concurrency cases (100)
#   BENCH_RELAY_RECEIVER     c (default): bench/receiver.c, one thread of C;
#                            py: bench/receiver.py, Python asyncio, which
#                            takes 25 to 30 us of CPU a request, as much as
#                            the relay itself against a 0 ms receiver

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
OUT=$BENCH_DIR/out/relay
MODE=full
BENCH_CMD="bash bench/relay.sh${1:+ $1}"
case ${1:-} in
	--smoke) MODE=smoke ;;
	"") ;;
	*) echo "usage: bash bench/relay.sh [--smoke]" >&2; exit 2 ;;
esac

if [[ $MODE == full ]]; then
	EVENTS=${BENCH_RELAY_EVENTS:-10000}
	RUNS=${BENCH_RELAY_RUNS:-3}
	TARGET_S=${BENCH_RELAY_TARGET_S:-15}
	CHECK_N=20000				# requests of the receiver check at 0 ms
else
	EVENTS=${BENCH_RELAY_EVENTS:-400}
	RUNS=${BENCH_RELAY_RUNS:-1}
	TARGET_S=${BENCH_RELAY_TARGET_S:-2}
	CHECK_N=2000
fi
read -r -a LATENCIES <<<"${BENCH_RELAY_LATENCIES:-0 10 100 1000}"
read -r -a CONCURRENCY <<<"${BENCH_RELAY_CONCURRENCY:-1 16 64 256}"
CONC_LATENCY=${BENCH_RELAY_CONC_LATENCY:-100}
RECEIVER_KIND=${BENCH_RELAY_RECEIVER:-c}
[[ $RECEIVER_KIND == c || $RECEIVER_KIND == py ]] ||
	{ echo "bench/relay.sh: BENCH_RELAY_RECEIVER must be c or py" >&2; exit 2; }
read -r -a RELAY_OPTS <<<"${BENCH_RELAY_OPTS:-}"
MIN_EVENTS=10				# no case gets fewer
CLAIM_BATCH=100				# the baseline's claim size: the relay's default --batch-size
RELAY_TIMEOUT=900			# a relay run taking longer than this is a broken run

for v in "$EVENTS" "$RUNS" "$TARGET_S" "$CONC_LATENCY" "${LATENCIES[@]}" "${CONCURRENCY[@]}"; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "bench/relay.sh: not a whole number: '$v'" >&2; exit 2; }
done
((EVENTS >= MIN_EVENTS && RUNS >= 1 && TARGET_S >= 1)) ||
	{ echo "bench/relay.sh: BENCH_RELAY_EVENTS must be >= $MIN_EVENTS, RUNS and TARGET_S >= 1" >&2; exit 2; }

OX_PACKAGES+=(gnuplot-nox postgresql-contrib python3 curl)
PGBENCH=$OX_PGBIN/pgbench
BG_PIDS=()					# background processes of ours, ended at exit
CHILD_PID=					# the relay (or pgbench) of the run going on
# shellcheck disable=SC2016 # expanded at exit
ox_at_exit '[[ -n $CHILD_PID ]] && kill "$CHILD_PID"; for p in "${BG_PIDS[@]}"; do kill "$p"; done'

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------------------
# set-up: build, cluster, the events, the receiver
# ---------------------------------------------------------------------------

export OX_QUIET_BUILD=1
ox_setup
RELAY=${BENCH_RELAY:-$OX_PGBIN/orderexp-relay}
[[ -x $RELAY ]] || ox_die "no relay at $RELAY"
RELAY_OTHER=${BENCH_RELAY_OTHER:-}
[[ -z $RELAY_OTHER || -x $RELAY_OTHER ]] || ox_die "no relay at $RELAY_OTHER"
rm -rf "$OUT"
mkdir -p "$OUT/logs"
ox_mktemp relay-bench SCRATCH

RELAY_VERSION=$("$RELAY" --version 2>&1 | head -n 1)
HAS_CONCURRENCY=0
if "$RELAY" --help 2>&1 | grep -q -- '--concurrency'; then
	HAS_CONCURRENCY=1
fi

# shellcheck disable=SC2119 # no settings beyond bench/lib.sh's
bench_cluster_start
PG_VERSION=$(q postgres "SELECT version()")
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$OX_ROOT" status --porcelain -- . ':!bench' 2>/dev/null) ]]; then
	GIT_REV="$GIT_REV (with uncommitted changes)"
fi
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
FILE_DATE=$(date -u '+%Y%m%d-%H%M')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Real events: EVENTS expired orders of a registered table (bench.fill_drain
# of bench/sql/schema.sql; a payload column, the customer's e-mail), closed
# by one orderexp.run_due(), which writes one `closed` event each, as the
# worker would.  They are kept in bench.relay_events and copied into the
# outbox afresh before every run (load_events).
log "events: $(fmt "$EVENTS") expired orders closed by run_due()"
q postgres "CREATE DATABASE bench"
ox_psql -d bench -q -f "$BENCH_DIR/sql/schema.sql" >/dev/null
q bench "SELECT orderexp.set_close_policy('bench.orders', '1 hour', payload_columns => '{customer_email}')" \
	"SELECT bench.fill_drain($(((EVENTS + 1) / 2 * 2)))" >/dev/null
[[ $(q bench "SELECT closed FROM orderexp.run_due()") -ge $EVENTS ]] ||
	ox_die "run_due() closed fewer than $EVENTS orders"
q bench "CREATE TABLE bench.relay_events AS
		SELECT row_number() OVER (ORDER BY id) AS n, kind, order_table, order_key,
			   channel, payload, created_at
		  FROM orderexp.outbox" \
	"CREATE ROLE relay LOGIN IN ROLE orderexp_relay" "VACUUM ANALYZE" >/dev/null
q bench "SELECT row_to_json(e) FROM orderexp.outbox e ORDER BY id LIMIT 1" >"$OUT/sample_event.json"
RELAY_CONN="host=$OX_PGHOST port=$OX_PGPORT dbname=bench user=relay"

# load_events N: an outbox of exactly the first N events, all due, nothing
# delivered (in the stream of batches, as orderexp.batch_delivery puts
# them by default), written 1,000 a transaction as the worker writes them
# (the stream is cut by transactions: one transaction of 50,000 events
# makes every batch share one transaction id, a shape the worker never
# writes); vacuumed, analyzed, checkpointed
load_events() {
	local from
	q bench "TRUNCATE orderexp.outbox, orderexp.batches" >/dev/null
	for ((from = 0; from < $1; from += 1000)); do
		printf 'INSERT INTO orderexp.outbox (kind, order_table, order_key, channel, payload, created_at)
			SELECT kind, order_table, order_key, channel, payload, created_at
			  FROM bench.relay_events WHERE n > %d AND n <= %d ORDER BY n;\n' \
			"$from" "$((from + 1000 < $1 ? from + 1000 : $1))"
	done | ox_psql -d bench -q >/dev/null
	q bench "VACUUM ANALYZE orderexp.outbox" "CHECKPOINT" >/dev/null
}

# check_drained N WHAT: every one of the N events delivered, or die
check_drained() {
	local got
	got=$(q bench "SELECT count(*) || ' ' || count(*) FILTER (WHERE delivered_at IS NULL)
		FROM orderexp.outbox_state")
	[[ $got == "$1 0" ]] ||
		ox_die "$2: outbox has '$got' (events, undelivered), expected '$1 0'"
}

if [[ $RECEIVER_KIND == c ]]; then
	# shellcheck disable=SC2046 # pkg-config's words
	cc -O2 -Wall -Wextra -o "$SCRATCH/receiver" "$BENCH_DIR/receiver.c" \
		$(pkg-config --cflags --libs libmicrohttpd) || ox_die "could not build bench/receiver.c"
	RECEIVER_DESC="\`bench/receiver.c\` (C, libmicrohttpd, one thread, HTTP/1.1 keep-alive)"
	"$SCRATCH/receiver" "$SCRATCH/receiver.port" &
else
	RECEIVER_DESC="\`bench/receiver.py\` (Python asyncio, raw HTTP/1.1 keep-alive)"
	python3 "$BENCH_DIR/receiver.py" "$SCRATCH/receiver.port" &
fi
RECEIVER=$!
BG_PIDS+=("$RECEIVER")
for _ in $(seq 1 500); do
	[[ -s $SCRATCH/receiver.port ]] && break
	sleep 0.01
done
[[ -s $SCRATCH/receiver.port ]] || ox_die "the receiver did not start"
RPORT=$(cat "$SCRATCH/receiver.port")
RURL=http://127.0.0.1:$RPORT

# receiver stats|reset: its counters (JSON)
receiver() { curl -sS --max-time 10 "$RURL/$1" || ox_die "the receiver does not answer"; }

# jget JSON FIELD: a number from the receiver's flat JSON
jget() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" <<<"$1"; }

log "relay: $RELAY ($RELAY_VERSION); --concurrency: $( ((HAS_CONCURRENCY)) && echo yes || echo no)"
log "receiver on port $RPORT (pid $RECEIVER)"

# ---------------------------------------------------------------------------
# 0. the receiver alone
# ---------------------------------------------------------------------------

# receiver_check N LATENCY PARALLEL: N POSTs shaped like the relay's, at most
# PARALLEL at once over kept-alive connections (one curl process); appends
# requests/s, the receiver's CPU per request and its counters to
# receiver.tsv
receiver_check() {
	local n=$1 lat=$2 par=$3 t0 t1 c0 c1 st
	awk -v n="$n" -v url="$RURL/hook?latency_ms=$lat" 'BEGIN {
		for (i = 1; i <= n; i++) {
			printf "url = \"%s\"\noutput = \"/dev/null\"\nsilent\nshow-error\n", url
			printf "header = \"Content-Type: application/json\"\nheader = \"X-Orderexp-Id: %d\"\n", i
			printf "data = \"{\\\"id\\\":%d,\\\"kind\\\":\\\"closed\\\",\\\"payload\\\":{\\\"reason\\\":\\\"expired\\\"}}\"\n", i
			printf "write-out = \"%%{http_code}\\\\n\"\n"
			if (i < n) print "next"
		}
	}' >"$SCRATCH/curl.cfg"
	receiver reset >/dev/null
	c0=$(cpu_ns "$RECEIVER")
	t0=$EPOCHREALTIME
	curl -sS --parallel --parallel-max "$par" -K "$SCRATCH/curl.cfg" >"$SCRATCH/curl.out" 2>"$SCRATCH/curl.err" ||
		ox_die "curl against the receiver failed: $(head -n 5 "$SCRATCH/curl.err")"
	t1=$EPOCHREALTIME
	c1=$(cpu_ns "$RECEIVER")
	st=$(receiver stats)
	[[ $(grep -c '^200$' "$SCRATCH/curl.out") == "$n" && $(jget "$st" distinct_ids) == "$n" ]] ||
		ox_die "receiver check ($n at $lat ms, $par parallel): not every request answered 200 and counted: $st"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$lat" "$par" "$n" \
		"$(calc "$t1 - $t0")" "$(calc "($c1 - $c0) / 1e9")" \
		"$(jget "$st" max_in_flight)" "$(jget "$st" max_connections)" "$(load1)" >>"$OUT/receiver.tsv"
}

log "receiver alone: curl --parallel"
printf '#latency_ms\tparallel\trequests\twall_s\treceiver_cpu_s\tmax_in_flight\tmax_connections\tload1\n' >"$OUT/receiver.tsv"
receiver_check "$CHECK_N" 0 1
receiver_check "$CHECK_N" 0 64
receiver_check $((256 * 10)) 100 256
receiver_check 512 1000 256

# ---------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------

# events_for LATENCY CONCURRENCY: EVENTS, or fewer when a relay delivering
# CONCURRENCY at a time (1 for the default settings) would need more than
# TARGET_S seconds (a delivery taking the latency plus 1 ms), rounded down
# to two significant digits; at 0 ms always EVENTS, as many as the baseline
# (a delivery there takes far less than 1 ms)
events_for() {
	awk -v e="$EVENTS" -v t="$TARGET_S" -v lat="$1" -v c="$2" -v min="$MIN_EVENTS" 'BEGIN {
		n = lat == 0 ? e : int(t * c * 1000 / (lat + 1))
		if (n < e) { p = 1; while (n >= 100 * p) p *= 10; n = int(n / p) * p }
		if (n > e) n = e
		if (n < min) n = min
		print n
	}'
}

# a case: "name<TAB>latency<TAB>concurrency<TAB>events"; concurrency "-" for
# the relay's default settings, latency "-" for the baseline
CASES=()
CASES+=("$(printf 'claim+ack\t-\t-\t%s' "$EVENTS")")
for lat in "${LATENCIES[@]}"; do
	CASES+=("$(printf 'default@%s\t%s\t-\t%s' "$lat" "$lat" "$(events_for "$lat" 1)")")
	if [[ -n $RELAY_OTHER ]]; then
		CASES+=("$(printf 'other@%s\t%s\t-\t%s' "$lat" "$lat" "$(events_for "$lat" 1)")")
	fi
done
if ((HAS_CONCURRENCY)); then
	for c in "${CONCURRENCY[@]}"; do
		CASES+=("$(printf 'conc%s@%s\t%s\t%s\t%s' "$c" "$CONC_LATENCY" "$CONC_LATENCY" "$c" \
			"$(events_for "$CONC_LATENCY" "$c")")")
	done
fi

# the baseline's pgbench script: one claim of CLAIM_BATCH (every column to the
# client, as one json value) and one ack of their ids, each a transaction of
# its own like the relay's
cat >"$SCRATCH/claim_ack.sql" <<EOF
SELECT array_agg(c.id) AS ids, json_agg(c)::text AS events FROM orderexp.claim($CLAIM_BATCH, '30 s') c \gset
SELECT orderexp.ack(':ids'::bigint[]);
EOF

# run_baseline N RUN: claim + ack until the N events are acknowledged, one
# session; sets R_WALL (R_USER, R_SYS: NaN, pgbench is not the relay)
run_baseline() {
	local n=$1 t0 t1 rc=0 tx
	tx=$(((n + CLAIM_BATCH - 1) / CLAIM_BATCH))
	t0=$EPOCHREALTIME
	(cd "$SCRATCH" && exec "$PGBENCH" -n -c 1 -t "$tx" -f claim_ack.sql \
		-h "$OX_PGHOST" -p "$OX_PGPORT" -U relay bench) >"$OUT/logs/claim_ack_$2.log" 2>&1 &
	CHILD_PID=$!
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=
	t1=$EPOCHREALTIME
	((rc == 0)) || ox_die "pgbench claim+ack failed (see $OUT/logs/claim_ack_$2.log)"
	R_WALL=$(calc "$t1 - $t0")
	R_USER=NaN
	R_SYS=NaN
}

# run_relay LATENCY CONCURRENCY LOG [RELAY]: orderexp-relay (RELAY, default
# the one under test) --once until the outbox is empty; sets R_WALL, R_USER,
# R_SYS.  The relay runs in the background
# and is waited for, so that a signal reaches the trap at once (and the
# trap ends it); its CPU is the difference of the shell's children's times
# (bash's `times`, no subshell in between: only the relay ends meanwhile)
run_relay() {
	local lat=$1 conc=$2 logf=$3 relay=${4:-$RELAY} args t0 t1 rc=0
	args=(-d "$RELAY_CONN" --once -q "--webhook=$RURL/hook?latency_ms=$lat" "${RELAY_OPTS[@]}")
	[[ $conc == - ]] || args+=(--concurrency "webhook=$conc")
	printf '%s\n' "$relay ${args[*]}" >"$logf.cmd"
	times >"$SCRATCH/times0"
	t0=$EPOCHREALTIME
	timeout -s TERM "$RELAY_TIMEOUT" "$relay" "${args[@]}" >"$logf" 2>&1 &
	CHILD_PID=$!
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=
	t1=$EPOCHREALTIME
	times >"$SCRATCH/times1"
	((rc == 0)) || ox_die "relay exit status $rc (124: timed out after $RELAY_TIMEOUT s): $relay ${args[*]}; log: $logf"
	R_WALL=$(calc "$t1 - $t0")
	read -r R_USER R_SYS < <(awk '
		function sec(s,  p) { split(s, p, /[ms]/); return p[1] * 60 + p[2] }
		FNR == 2 { u[FILENAME] = sec($1); s[FILENAME] = sec($2) }
		END { printf "%.3f %.3f\n", u[ARGV[2]] - u[ARGV[1]], s[ARGV[2]] - s[ARGV[1]] }' \
		"$SCRATCH/times0" "$SCRATCH/times1")
}

# run_case CASE RUN: one run of one case; appends a line to relay.tsv
run_case() {
	local name lat conc n run=$2 wall user sys st l0 c0 c1 logf
	IFS=$'\t' read -r name lat conc n <<<"$1"
	load_events "$n"
	receiver reset >/dev/null
	l0=$(load1)
	c0=$(cpu_ns "$RECEIVER")
	logf=$OUT/logs/${name//@/_at_}_$run.log
	if [[ $name == claim+ack ]]; then
		run_baseline "$n" "$run"
	elif [[ $name == other@* ]]; then
		run_relay "$lat" "$conc" "$logf" "$RELAY_OTHER"
	else
		run_relay "$lat" "$conc" "$logf"
	fi
	c1=$(cpu_ns "$RECEIVER")
	wall=$R_WALL user=$R_USER sys=$R_SYS
	check_drained "$n" "$name run $run"
	st=$(receiver stats)
	if [[ $name != claim+ack ]]; then
		[[ $(jget "$st" distinct_ids) == "$n" && $(jget "$st" bad) == 0 ]] ||
			ox_die "$name run $run: the receiver did not get each of the $n events once: $st"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$name" "$lat" "$conc" "$n" "$run" "$wall" "$user" "$sys" \
		"$(calc "($c1 - $c0) / 1e9")" \
		"$(jget "$st" requests)" "$(jget "$st" duplicates)" \
		"$(jget "$st" max_in_flight)" "$(jget "$st" max_connections)" "$l0" >>"$OUT/relay.tsv"
	log "$name run $run: $(fmt "$n") events in $(fmt "$wall" 2) s, $(fmt "$(calc "$n / $wall")") events/s"
}

# one unrecorded round of the fast cases first: the first claim + ack run
# after the set-up was up to twice as slow as the next ones (autovacuum of
# the set-up's tables, cold caches)
log "warm-up (not recorded): claim+ack, relay against the 0 ms receiver"
load_events "$EVENTS"
run_baseline "$EVENTS" warmup
load_events "$EVENTS"
run_relay 0 - "$OUT/logs/warmup.log"
check_drained "$EVENTS" warm-up

printf '#case\tlatency_ms\tconcurrency\tevents\trun\twall_s\tuser_s\tsys_s\treceiver_cpu_s\trequests\tduplicates\tmax_in_flight\tmax_connections\tload1\n' >"$OUT/relay.tsv"
for ((run = 1; run <= RUNS; run++)); do
	if ((run % 2)); then
		for c in "${CASES[@]}"; do
			run_case "$c" "$run"
		done
	else
		for ((i = ${#CASES[@]} - 1; i >= 0; i--)); do
			run_case "${CASES[i]}" "$run"
		done
	fi
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL_S=$((SECONDS - START_SECONDS))

# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

# per case: "median min max" of events/s
eps_stats() {
	awk -F'\t' -v c="$1" '!/^#/ && $1 == c { print $4 / $6 }' "$OUT/relay.tsv" | stats
}
# per case: median relay CPU per event in µs
cpu_per_event() {
	awk -F'\t' -v c="$1" '!/^#/ && $1 == c && $7 != "NaN" { print ($7 + $8) / $4 * 1e6 }' "$OUT/relay.tsv" |
		stats | cut -d' ' -f1
}
# per case: the receiver's median CPU over the relay's wall time, in %
recv_share() {
	awk -F'\t' -v c="$1" '!/^#/ && $1 == c { print $9 / $6 * 100 }' "$OUT/relay.tsv" | stats | cut -d' ' -f1
}
# per case: max of column N over the runs; sum of column N
col_max() { awk -F'\t' -v c="$1" -v k="$2" '!/^#/ && $1 == c { if ($k > m) m = $k } END { print m + 0 }' "$OUT/relay.tsv"; }
col_sum() { awk -F'\t' -v c="$1" -v k="$2" '!/^#/ && $1 == c { s += $k } END { print s + 0 }' "$OUT/relay.tsv"; }

read -r BASE_MED _ <<<"$(eps_stats claim+ack)"
: >"$OUT/latency.dat"
: >"$OUT/concurrency.dat"
ROWS=""
for c in "${CASES[@]}"; do
	IFS=$'\t' read -r name lat conc n <<<"$c"
	read -r med mn mx <<<"$(eps_stats "$name")"
	cpu=$(cpu_per_event "$name")
	if [[ $name == claim+ack ]]; then
		label="\`claim($CLAIM_BATCH)\` + \`ack\`, one session (pgbench), no delivery"
		cpu_txt="–"; inflight="–"; conns="–"; dups="–"; rshare="–"
	else
		if [[ $name == other@* ]]; then
			label="$lat ms receiver, default settings, the other relay (\`BENCH_RELAY_OTHER\`)"
		elif [[ $conc == - ]]; then
			label="$lat ms receiver, default settings"
			printf '%s\t%s\t%s\t%s\n' "$lat" "$med" "$mn" "$mx" >>"$OUT/latency.dat"
		else
			label="$lat ms receiver, \`--concurrency webhook=$conc\`"
			printf '%s\t%s\t%s\t%s\n' "$conc" "$med" "$mn" "$mx" >>"$OUT/concurrency.dat"
		fi
		cpu_txt=$(fmt "$cpu")
		rshare=$(fmt "$(recv_share "$name")" 1)
		inflight=$(col_max "$name" 12)
		conns=$(col_max "$name" 13)
		dups=$(col_sum "$name" 11)
	fi
	if [[ $lat == - || $lat == 0 ]]; then
		ideal="–"
	elif [[ $conc == - ]]; then
		ideal=$(fmt "$(calc "1000 / $lat")" 1)
	else
		ideal=$(fmt "$(calc "1000 / $lat * $conc")" 1)
	fi
	ROWS+="| $label | $(fmt "$n") | $(fmt "$med" 1) | $(fmt "$mn" 1)–$(fmt "$mx" 1) | $(awk -v a="$med" -v b="$BASE_MED" 'BEGIN { printf "%.3g", a / b }') | $ideal | $cpu_txt | $rshare | $inflight | $conns | $dups |"$'\n'
done

# receiver check rows
RECV_ROWS=$(awk -F'\t' '!/^#/ {
	printf "| %s ms | %d | %d | %.2f | %.0f | %.0f | %.0f | %d | %d |\n", $1, $2, $3, $4, $3 / $4, $5 / $3 * 1e6, ($5 > 0 ? $3 / $5 : 0), $6, $7 }' \
	"$OUT/receiver.tsv")

# paired_ratios CASE: per round, CASE's wall time over default@0's (the
# same round's runs), in round order, then their median
paired_ratios() {
	awk -F'\t' -v c="$1" '!/^#/ && $1 == c { w[$5] = $6 } !/^#/ && $1 == "default@0" { r[$5] = $6 }
		END { for (k = 1; k in r; k++) if (k in w) printf "%.2f\n", w[k] / r[k] }' "$OUT/relay.tsv"
}
PAIRED=""
if [[ " ${LATENCIES[*]} " == *" 0 "* ]]; then
	for c in claim+ack other@0; do
		[[ $c == other@0 && -z $RELAY_OTHER ]] && continue
		ratios=$(paired_ratios "$c")
		[[ -n $ratios ]] || continue
		PAIRED+="* $c wall time / the relay's wall time, 0 ms receiver, round by round: $(tr '\n' ' ' <<<"$ratios")(median **$(stats <<<"$ratios" | cut -d' ' -f1)**)"$'\n'
	done
fi

if ((HAS_CONCURRENCY)); then
	CONC_NOTE="The relay has \`--concurrency\`: cases against the $CONC_LATENCY ms receiver with \`--concurrency webhook=N\`, N = ${CONCURRENCY[*]}."
else
	CONC_NOTE="The relay under test has no \`--concurrency\` (not in its \`--help\`): the concurrency cases (\`--concurrency webhook=N\`, N = ${CONCURRENCY[*]}, against the $CONC_LATENCY ms receiver) were skipped."
fi

REPORT=$OUT/relay-$FILE_DATE.md
cat >"$REPORT" <<EOF
# orderexp-relay throughput (bench/relay.sh)

* **Command:** \`$BENCH_CMD\`$( [[ -n ${BENCH_RELAY:-} ]] && echo " with \`BENCH_RELAY=$BENCH_RELAY\`")$( ((${#RELAY_OPTS[@]})) && echo " and \`BENCH_RELAY_OPTS='${RELAY_OPTS[*]}'\`")
* **Date:** $RUN_DATE; total runtime $TOTAL_S s
* **Machine:** $(nproc) CPUs ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM;
  load average $LOAD_START at the start, $LOAD_END at the end, 1-minute load
  $(col "$OUT/relay.tsv" 14 | stats | awk '{ print $2 "–" $3 }') before the runs (shared machine; relay.tsv has it per run)
* **PostgreSQL:** $PG_VERSION; throwaway cluster, default settings except
  \`shared_buffers = 1GB\`, \`max_wal_size = 4GB\`; fsync and synchronous_commit on
* **orderexp:** commit $GIT_REV; **relay:** \`$RELAY\`, $RELAY_VERSION$([[ -n $RELAY_OTHER ]] && echo "; **other relay:** \`$RELAY_OTHER\`")
* **Events:** real \`closed\` events written by \`orderexp.run_due()\` for expired orders
  of a registered table with one payload column (one is in \`sample_event.json\`),
  copied into an emptied outbox before each run. Runs per case: $RUNS, round by round,
  every other round in the reverse order.
* **Relay:** \`orderexp-relay -d '...' --once -q --webhook=http://127.0.0.1:PORT/hook?latency_ms=L\`,
  as a role with \`orderexp_relay\`, over the cluster's unix socket; otherwise default
  settings (\`--batch-size 100\`, \`--lease 30\`, \`--timeout 10\`). $CONC_NOTE

Events per case: $(fmt "$EVENTS"), or fewer where one delivery at a time would take
more than $TARGET_S s (\`BENCH_RELAY_TARGET_S\`; a delivery counted as the latency plus
1 ms), so that the serial relay's slow cases finish in minutes.

## Throughput

events/s = events / the relay's wall time (start to exit, connection included),
median of $RUNS runs, and the min–max. "× claim+ack": the median over the
baseline's median. "one at a time" is 1000 / latency × concurrency: what deliveries
that each wait the receiver's latency allow without any other cost. CPU: the
relay's user + sys time per event (bash \`times\` of the relay's process), median;
in the capped cases it includes the relay's start (libpq, libcurl, the connection)
spread over few events. Receiver CPU: the receiver's CPU time over the relay's wall
time (median), how busy the receiver was.
In flight: the most deliveries the receiver held at once (read, not yet answered),
the most over the runs; connections likewise. Duplicates: deliveries of an event
id the receiver had already seen, summed over the runs.

| case | events | events/s | min–max | × claim+ack | one at a time | relay CPU µs/event | receiver CPU % | in flight | connections | duplicates |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$ROWS
Paired (the runs of one round follow each other; above 1: the relay was faster):

${PAIRED:-"(no 0 ms case)"}

![events/s against receiver latency and concurrency](relay.png)

## The receiver alone

$RECEIVER_DESC against
\`curl --parallel\` (one process, at most "parallel" transfers at once over kept-alive
connections), POSTs shaped like the relay's, before the cases. Both share the
machine's $(nproc) cores, and curl takes more CPU per request than the receiver, so
requests/s is a lower bound of what the receiver sustains; the receiver's own CPU per
request gives what one core would answer (requests per second of its CPU time).

| latency | parallel | requests | s | requests/s | receiver CPU µs/request | requests/s per core of receiver CPU | in flight | connections |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
$RECV_ROWS

At 0 ms the receiver answers while it reads, so it never holds more than one
delivery: in flight is 1 there by construction.

Raw data: \`relay.tsv\` (every run), \`receiver.tsv\`, \`logs/\` (the relay's stderr
and pgbench's output per run).
EOF

if ((HAS_CONCURRENCY)) && [[ -s $OUT/concurrency.dat ]]; then
	HAVE_CONC=1
else
	HAVE_CONC=0
fi
(cd "$OUT" && gnuplot -e "baseline=$BASE_MED; have_conc=$HAVE_CONC; conc_latency=$CONC_LATENCY" \
	"$BENCH_DIR/plot/relay.gp") || ox_die "gnuplot failed"

log "done in $TOTAL_S s: $REPORT, $OUT/relay.png"
cat "$REPORT"
