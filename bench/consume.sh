#!/usr/bin/env bash
#
# bench/consume.sh - events leaving the outbox: orderexp against PgQ
#
# Usage:  bash bench/consume.sh            100,000 events, 3 rounds
#         bash bench/consume.sh --smoke    5,000 events, 1 round
#
# As root on Debian bookworm.  Installs what it needs (scripts/lib.sh's
# packages, PgQ's postgresql-15-pgq3 among them), builds and installs the
# extension from this tree, and starts a throwaway PostgreSQL 15 cluster as
# bench/run.sh does (shared_buffers = 1GB, max_wal_size = 4GB, fsync,
# synchronous_commit and full_page_writes on, orderexp preloaded, its
# worker off), stopped and removed on any exit.
#
# One template database holds both queues' events, the same N of them:
#   orderexp  N/2 orders of a registered table with two channels (e-mail and
#             SMS) closed by orderexp.run_due(500), a transaction per 500
#             orders (1,000 events), as the worker closes them: N "closed"
#             events in the outbox, two an order.  The first event of a
#             close is also its record (via set: the order's history, kept
#             until forget_before(), never dropped by the retention, from
#             before the outbox had parts on); the SMS event is a plain one
#             (via NULL), what the retention drops.  Before the retention
#             was measured here the table had one channel, so every event
#             was a record and there would be nothing to drop; half and
#             half is what a shop with two channels writes, and it keeps in
#             view what is kept by design.  BENCH_CONSUME_CHANNELS=1 gives
#             the old template (N orders, N records, nothing to drop).
#   PgQ       the same N events (kind, order key, channel, payload) put
#             into queue "bench" with pgq.insert_event, 1,000 a transaction,
#             each transaction followed by a tick (pgq.ticker, called here,
#             not by pgqd, so that every batch holds exactly 1,000 events);
#             consumer "bench" registered before the first event
# Each round consumes them from a fresh copy of the template (VACUUM
# ANALYZE, the tables of all three schemas in shared buffers, CHECKPOINT)
# with bench/consumer.c, one session, batches of 1,000, a commit per
# statement, every value of every event read by the client:
#   claim     orderexp.claim(1000) + orderexp.ack(ids)
#   batch     orderexp.next_batch(1000) + get_batch_events + finish_batch
#             (when the installed orderexp has it)
#   pgq       pgq.next_batch + pgq.get_batch_events + pgq.finish_batch
# The methods take turns, in another order each round.  Per run: events/s
# and the WAL written from the first batch to the last (pg_current_wal_lsn
# before and after), per event.
#
# Then, in the same database, the retention: what it costs to get rid of
# the consumed events once they are past it.  Time is simulated, as
# test/sql/rotation.sql does, by setting timestamps back before the
# measurement; then VACUUM ANALYZE and CHECKPOINT (a day later many
# checkpoints have passed: the first change of a page writes its image):
#   orderexp  every batch finished two days ago (batches.finished_at; with
#             BENCH_CONSUME_ROWS=1 the rows' delivered_at); with the outbox
#             in parts (orderexp.outbox_parts exists) the rotating part that
#             holds the events is made the next one, closed two days ago,
#             and the part before it current for three days.  Then
#             SET orderexp.event_retention = '1 day' and SELECT
#             orderexp.run_due() (as pg_cron would call it), again and
#             again until the pruning is through: batch_pruning.pruned_to
#             past every batch, no delivered row left, and the events' part
#             emptied (current again).  Before the parts (77762af) that is
#             a DELETE of the events row by row, about 10,000 a call; from
#             560684b on one TRUNCATE of the part.  Afterwards no event
#             with via NULL may be left and every record must be (or the
#             run stops).
#   PgQ       its table rotation as pgqd runs it: queue_rotation_period 0,
#             and pgq.maint_rotate_tables_step1('bench') then
#             pgq.maint_rotate_tables_step2(), each its own transaction.
#             Step 1 truncates the table after the current one only when
#             the slowest consumer has passed a tick taken after the last
#             step 2, so the two rotations that make the events' table the
#             next one (emptying the empty tables 1 and 2) are set-up, each
#             followed by a tick and the consumer's empty batch, as pgqd
#             and a polling consumer would do in between; measured is the
#             rotation that truncates the events' table (steps 1 and 2).
#             Afterwards the events' table must be empty.
# Measured: the wall seconds of those calls (with the cheap checks between
# them) and their WAL (pg_current_wal_lsn before and after), per event
# removed; then, as a figure of its own, a VACUUM of the tables of the
# queue's schema (what autovacuum does after it: the dead rows of a DELETE
# and their index entries; next to nothing after a TRUNCATE).
#
# Writes bench/out/consume.md and bench/out/consume.tsv; exits 1 on a
# broken run (a wrong count).  Compare two versions by running the same
# script in each tree (e.g. a worktree of 77762af with this script copied
# in) with the same OX_PG_CONFIG, one after the other.
#
# Environment: BENCH_CONSUME_N (events, a multiple of 1,000),
# BENCH_CONSUME_RUNS (rounds), BENCH_CONSUME_METHODS (e.g. "claim pgq"),
# BENCH_CONSUME_CHANNELS (2, the default, or 1), BENCH_CONSUME_ROWS=1
# (orderexp.batch_delivery off: events claimed as rows, as before 1.3).

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
OUT=$BENCH_DIR/out
BENCH_CMD="bash bench/consume.sh${1:+ $1}"
case ${1:-} in
	--smoke) N=${BENCH_CONSUME_N:-5000}; RUNS=${BENCH_CONSUME_RUNS:-1} ;;
	"") N=${BENCH_CONSUME_N:-100000}; RUNS=${BENCH_CONSUME_RUNS:-3} ;;
	*) echo "usage: bash bench/consume.sh [--smoke]" >&2; exit 2 ;;
esac
BATCH=1000
((N > 0 && N % BATCH == 0)) || ox_die "BENCH_CONSUME_N must be a positive multiple of $BATCH"
CHANNELS=${BENCH_CONSUME_CHANNELS:-2}
[[ $CHANNELS == [12] ]] || ox_die "BENCH_CONSUME_CHANNELS must be 1 or 2"
ORDERS=$((N / CHANNELS))

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

export OX_QUIET_BUILD=1
ox_setup
mkdir -p "$OUT"
ox_mktemp consume-scratch SCRATCH

cc -O2 -Wall -Wextra -o "$SCRATCH/consumer" "$BENCH_DIR/consumer.c" \
	-I"$("$OX_PG_CONFIG" --includedir)" -L"$("$OX_PG_CONFIG" --libdir)" -lpq ||
	ox_die "could not build bench/consumer.c"

bench_cluster_start
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$OX_ROOT" status --porcelain -- . ':!bench' 2>/dev/null) ]]; then
	GIT_REV="$GIT_REV (with uncommitted changes)"
fi

# ---------------------------------------------------------------------------
# the template: N orderexp events and the same N PgQ events
# ---------------------------------------------------------------------------

log "loading $(fmt "$N") events into each queue ($(fmt "$ORDERS") orders, $CHANNELS channel(s))"
q postgres "CREATE DATABASE tpl_consume"
ox_psql -d tpl_consume -q -f "$BENCH_DIR/sql/schema.sql" >/dev/null
# events into the stream of batches (1.3, the default) where this orderexp
# has one; BENCH_CONSUME_ROWS=1 keeps them rows claimed one by one, as
# before 1.3
if [[ $(q tpl_consume "SELECT count(*) FROM pg_settings WHERE name = 'orderexp.batch_delivery'") == 1 ]]; then
	if [[ ${BENCH_CONSUME_ROWS:-0} == 1 ]]; then
		q tpl_consume "ALTER DATABASE tpl_consume SET orderexp.batch_delivery = off"
	else
		q tpl_consume "ALTER DATABASE tpl_consume SET orderexp.batch_delivery = on"
	fi
fi
if ((CHANNELS == 2)); then
	channels="channels => '{email,sms}'"
else
	channels="channels => NULL"
fi
q tpl_consume "CREATE EXTENSION pgq" \
	"SELECT orderexp.set_close_policy('bench.orders', '1 hour', payload_columns => '{customer_email}', $channels)" \
	"SELECT bench.fill_drain($ORDERS)" >/dev/null
# the closes, a transaction per 1,000 events, as the worker makes them
closes=()
for _ in $(seq 1 $((N / BATCH))); do
	closes+=("SELECT * FROM orderexp.run_due($((BATCH / CHANNELS)))")
done
q tpl_consume "${closes[@]}" >/dev/null
# the orders still unpaid come due 40 to 60 minutes after the template was
# made: without their timers a run_due() of the retention, however late,
# closes none of them (it checks)
q tpl_consume "DELETE FROM orderexp.timers WHERE order_table = 'bench.orders'::regclass" >/dev/null
# PgQ: the queue ticks after every 1,000 events, here by the calls below
# (force_tick() + ticker(), as PgQ's own tests make a tick at a given
# point); the consumer is registered at the queue's first tick
q tpl_consume "SELECT pgq.create_queue('bench')" \
	"SELECT pgq.set_queue_config('bench', 'ticker_max_count', '$BATCH')" \
	"SELECT pgq.set_queue_config('bench', 'ticker_max_lag', '1 day')" \
	"SELECT pgq.set_queue_config('bench', 'ticker_idle_period', '1 day')" \
	"SELECT pgq.register_consumer('bench', 'bench')" >/dev/null
q tpl_consume "DO \$\$
	DECLARE
		i integer;
	BEGIN
		FOR i IN 0 .. $N / $BATCH - 1 LOOP
			PERFORM pgq.insert_event('bench', o.kind, o.payload::text, o.order_key, o.channel,
									 NULL, NULL)
			   FROM (SELECT o.kind, o.payload, o.order_key, o.channel
					   FROM orderexp.outbox o
					  WHERE o.channel IS NOT NULL
					  ORDER BY o.id OFFSET i * $BATCH LIMIT $BATCH) o;
			COMMIT;
			PERFORM pgq.force_tick('bench');
			IF pgq.ticker('bench') IS NULL THEN
				RAISE EXCEPTION 'no tick after % events', (i + 1) * $BATCH;
			END IF;
			COMMIT;
		END LOOP;
	END
\$\$" >/dev/null
got=$(q tpl_consume "SELECT (SELECT count(*) FROM orderexp.outbox WHERE channel IS NOT NULL)
	|| ' ' || (SELECT count(*) FROM orderexp.outbox WHERE via IS NOT NULL)
	|| ' ' || (SELECT count(*) FROM pgq.event_template)
	|| ' ' || (SELECT count(*) FROM pgq.tick)")
want="$N $ORDERS $N $((N / BATCH + 1))"
[[ $got == "$want" ]] ||
	ox_die "template: outbox events, records, PgQ events, ticks are '$got', expected '$want'"
RECORDS=$ORDERS
PLAIN=$((N - ORDERS))
# the PgQ table that holds the events (the current one when they came)
PGQ_TABLE=$(q tpl_consume "SELECT queue_data_pfx || '_' || queue_cur_table || ' ' || queue_cur_table
							 FROM pgq.queue WHERE queue_name = 'bench'")
read -r PGQ_TABLE PGQ_TABLE_NR <<<"$PGQ_TABLE"
[[ $(q tpl_consume "SELECT count(*) FROM ONLY $PGQ_TABLE") == "$N" ]] ||
	ox_die "template: the PgQ events are not all in $PGQ_TABLE"
q tpl_consume "CREATE FUNCTION bench.prewarm_all() RETURNS bigint LANGUAGE sql AS \$\$
	SELECT coalesce(sum(pg_prewarm(c.oid)), 0)
	  FROM pg_class c
	  JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname IN ('bench', 'orderexp', 'pgq') AND c.relkind IN ('r', 'i', 'm', 't')
	\$\$" "VACUUM ANALYZE" >/dev/null

METHODS=(${BENCH_CONSUME_METHODS:-claim batch pgq})
if [[ $(q tpl_consume "SELECT to_regproc('orderexp.next_batch') IS NOT NULL") != t ]]; then
	METHODS=("${METHODS[@]/batch/}")
	read -r -a METHODS <<<"${METHODS[*]}"
fi
log "methods: ${METHODS[*]}; $RUNS round(s)"

# ---------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------

CONNINFO="host=$OX_PGHOST port=$OX_PGPORT user=postgres dbname=bench"
printf '# method\tround\tevents\tbatches\tseconds\tevents_per_s\twal_bytes\tload1\tret_removed\tret_kept\tret_calls\tret_seconds\tret_wal_bytes\tvac_seconds\tvac_wal_bytes\tret_load1\n' >"$OUT/consume.tsv"

# qt DB SQL...: like q, but each statement is timed by psql's \timing:
# sets QT_MS to the sum of their times (round trips, no connection) and
# QT_OUT to their output
qt() {
	local db=$1 arg args=(-c '\timing on')
	shift
	for arg in "$@"; do args+=(-c "$arg"); done
	ox_psql -d "$db" -Atq "${args[@]}" >"$SCRATCH/qt.out" || ox_die "failed: $*"
	QT_MS=$(awk '/^Time: / { s += $2 } END { printf "%.3f", s + 0 }' "$SCRATCH/qt.out")
	QT_OUT=$(grep -v -e '^Time: ' -e '^Timing is ' "$SCRATCH/qt.out" || true)
}

# vacuum_after SCHEMA: what autovacuum does after a retention: VACUUM of
# every table of the queue's schema (orderexp or pgq), timed; sets VAC_S
# and VAC_WAL
vacuum_after() {
	local lsn0 lsn1 tables
	tables=$(q bench "SELECT string_agg(c.oid::regclass::text, ', ')
						FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
					   WHERE n.nspname = '$1' AND c.relkind = 'r'")
	lsn0=$(q bench "SELECT pg_current_wal_lsn()")
	qt bench "VACUUM $tables"
	lsn1=$(q bench "SELECT pg_current_wal_lsn()")
	VAC_S=$(calc "$QT_MS / 1000")
	VAC_WAL=$(q bench "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
}

# retain_orderexp ROUND METHOD: the consumed events past the retention,
# then run_due() until the pruning is through (see the header); sets
# RET_REMOVED, RET_KEPT, RET_CALLS, RET_S, RET_WAL
retain_orderexp() {
	local round=$1 m=$2 parts p="" cur got lsn0 lsn1 ms=0 done_sql
	parts=$(q bench "SELECT to_regclass('orderexp.outbox_parts') IS NOT NULL")
	q bench "UPDATE orderexp.batches SET finished_at = now() - interval '2 days'
			  WHERE finished_at IS NOT NULL" \
		"UPDATE orderexp.outbox SET delivered_at = now() - interval '2 days'
		  WHERE delivered_at IS NOT NULL" >/dev/null
	done_sql="SELECT NOT EXISTS (SELECT 1 FROM orderexp.batches b, orderexp.batch_pruning p
								  WHERE b.id >= p.pruned_to)
				 AND NOT EXISTS (SELECT 1 FROM orderexp.outbox o
								  WHERE o.delivered_at IS NOT NULL AND o.via IS NULL)"
	if [[ $parts == t ]]; then
		# the rotating part that holds the plain events becomes the next one
		# to empty: closed two days ago, the one before it current for three
		p=$(q bench "SELECT string_agg(DISTINCT part::text, ' ') FROM orderexp.outbox WHERE via IS NULL")
		if [[ -n $p ]]; then
			[[ $p == [123] ]] ||
				ox_die "round $round $m: the plain events are in parts '$p', not in one rotating part"
			cur=$(((p + 1) % 3 + 1))
			q bench "UPDATE orderexp.outbox_parts
						SET opened_at = now() - interval '3 days',
							closed_at = now() - interval '2 days';
					 UPDATE orderexp.outbox_parts SET closed_at = NULL WHERE part = $cur" >/dev/null
			done_sql+=" AND (SELECT x.closed_at IS NULL FROM orderexp.outbox_parts x WHERE x.part = $p)"
		fi
	fi
	q bench "VACUUM ANALYZE" "CHECKPOINT" >/dev/null
	got=$(q bench "SELECT count(*) FILTER (WHERE via IS NULL) || ' ' || count(*) FILTER (WHERE via IS NOT NULL)
					 FROM orderexp.outbox")
	[[ $got == "$PLAIN $RECORDS" ]] ||
		ox_die "round $round $m: before the retention $got plain events and records, expected $PLAIN $RECORDS"
	RET_CALLS=0
	lsn0=$(q bench "SELECT pg_current_wal_lsn()")
	while :; do
		RET_CALLS=$((RET_CALLS + 1))
		qt bench "SET orderexp.event_retention = '1d'" "SELECT * FROM orderexp.run_due()"
		ms=$(calc "$ms + $QT_MS")
		[[ $QT_OUT == "0|0" ]] || ox_die "round $round $m: run_due() did more than prune: '$QT_OUT'"
		[[ $(q bench "$done_sql") == t ]] && break
		((RET_CALLS < 1000)) || ox_die "round $round $m: the pruning is not through after $RET_CALLS run_due() calls"
	done
	lsn1=$(q bench "SELECT pg_current_wal_lsn()")
	got=$(q bench "SELECT count(*) FILTER (WHERE via IS NULL) || ' ' || count(*) FILTER (WHERE via IS NOT NULL)
					 FROM orderexp.outbox")
	[[ $got == "0 $RECORDS" ]] ||
		ox_die "round $round $m: after the retention $got plain events and records, expected 0 $RECORDS"
	RET_REMOVED=$PLAIN
	RET_KEPT=$RECORDS
	RET_S=$(calc "$ms / 1000")
	RET_WAL=$(q bench "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
}

# retain_pgq ROUND: PgQ's rotation until the table of the consumed events
# is truncated (see the header); sets the same as retain_orderexp
retain_pgq() {
	local round=$1 cur ntables i lsn0 lsn1 ms=0 got
	q bench "SELECT pgq.set_queue_config('bench', 'rotation_period', '0')" >/dev/null
	ntables=$(q bench "SELECT queue_ntables FROM pgq.queue WHERE queue_name = 'bench'")
	# set-up: the rotations before it, each followed by a tick and the
	# consumer's (empty) batch, until the events' table is the next one
	for i in $(seq 1 $((ntables + 1))); do
		cur=$(q bench "SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'bench'")
		((cur == (PGQ_TABLE_NR + ntables - 1) % ntables)) && break
		((i <= ntables)) || ox_die "round $round pgq: no rotation to the table before $PGQ_TABLE"
		q bench "SELECT pgq.maint_rotate_tables_step1('bench')" \
			"SELECT pgq.maint_rotate_tables_step2()" \
			"SELECT pgq.force_tick('bench')" "SELECT pgq.ticker('bench')" \
			"SELECT pgq.finish_batch(b) FROM pgq.next_batch('bench', 'bench') b WHERE b IS NOT NULL" >/dev/null
	done
	q bench "VACUUM ANALYZE" "CHECKPOINT" >/dev/null
	got=$(q bench "SELECT count(*) FROM ONLY $PGQ_TABLE")
	[[ $got == "$N" ]] || ox_die "round $round pgq: before the rotation $got events in $PGQ_TABLE, expected $N"
	RET_CALLS=0
	lsn0=$(q bench "SELECT pg_current_wal_lsn()")
	while :; do
		RET_CALLS=$((RET_CALLS + 1))
		qt bench "SELECT pgq.maint_rotate_tables_step1('bench')" "SELECT pgq.maint_rotate_tables_step2()"
		ms=$(calc "$ms + $QT_MS")
		[[ $(q bench "SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'bench'") == "$PGQ_TABLE_NR" ]] && break
		((RET_CALLS < 10)) || ox_die "round $round pgq: $PGQ_TABLE not rotated after $RET_CALLS steps"
	done
	lsn1=$(q bench "SELECT pg_current_wal_lsn()")
	got=$(q bench "SELECT count(*) FROM ONLY $PGQ_TABLE")
	[[ $got == 0 ]] || ox_die "round $round pgq: after the rotation $got events in $PGQ_TABLE"
	RET_REMOVED=$N
	RET_KEPT=0
	RET_S=$(calc "$ms / 1000")
	RET_WAL=$(q bench "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
}

# run_one METHOD ROUND: one consumption from a fresh copy of the template,
# then the retention of its events in the same database
run_one() {
	local m=$1 round=$2 lsn0 lsn1 wal out l0 rl
	q postgres "SET client_min_messages = warning" "DROP DATABASE IF EXISTS bench WITH (FORCE)" \
		"CREATE DATABASE bench TEMPLATE tpl_consume STRATEGY FILE_COPY"
	q bench "VACUUM ANALYZE" "SELECT bench.prewarm_all()" "CHECKPOINT" >/dev/null
	l0=$(load1)
	lsn0=$(q bench "SELECT pg_current_wal_lsn()")
	out=$("$SCRATCH/consumer" "$CONNINFO" "$m" "$BATCH" "$N") ||
		ox_die "consumer $m, round $round failed: $out"
	lsn1=$(q bench "SELECT pg_current_wal_lsn()")
	wal=$(q bench "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
	read -r ev nb secs <<<"$out"
	log "round $round $m: $(fmt "$ev") events in $nb batches, $(fmt "$secs" 3) s, $(fmt "$(calc "$ev / $secs")") events/s, $(fmt "$(calc "$wal / $ev")" 1) WAL bytes/event"
	rl=$(load1)
	if [[ $m == pgq ]]; then
		retain_pgq "$round"
		vacuum_after pgq
	else
		retain_orderexp "$round" "$m"
		vacuum_after orderexp
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$round" "$ev" "$nb" \
		"$secs" "$(calc "$ev / $secs")" "$wal" "$l0" "$RET_REMOVED" "$RET_KEPT" "$RET_CALLS" \
		"$RET_S" "$RET_WAL" "$VAC_S" "$VAC_WAL" "$rl" >>"$OUT/consume.tsv"
	log "round $round $m retention: $(fmt "$RET_REMOVED") events removed ($(fmt "$RET_KEPT") records kept), $RET_CALLS call(s), $(fmt "$RET_S" 3) s, $(fmt "$RET_WAL") WAL bytes ($(fmt "$(calc "$RET_WAL / $RET_REMOVED")" 1) an event); VACUUM after: $(fmt "$VAC_S" 3) s, $(fmt "$VAC_WAL") WAL bytes"
}

for round in $(seq 1 "$RUNS"); do
	# rotate the order: each method goes first once in three rounds
	k=$(((round - 1) % ${#METHODS[@]}))
	for i in $(seq 0 $((${#METHODS[@]} - 1))); do
		run_one "${METHODS[$(((i + k) % ${#METHODS[@]}))]}" "$round"
	done
done

# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

PGQ_RATE=$(col "$OUT/consume.tsv" 6 1 pgq | stats | cut -d' ' -f1)
PGQ_WAL=$(col "$OUT/consume.tsv" 7 1 pgq | stats | cut -d' ' -f1)
PGQ_RET_S=$(col "$OUT/consume.tsv" 12 1 pgq | stats | cut -d' ' -f1)
PGQ_RET_WAL=$(col "$OUT/consume.tsv" 13 1 pgq | stats | cut -d' ' -f1)
if [[ $(q tpl_consume "SELECT to_regclass('orderexp.outbox_parts') IS NOT NULL") == t ]]; then
	RET_HOW="the outbox in parts, a rotating part emptied with TRUNCATE: batches finished two
days ago, the events' part made the next one and due"
else
	RET_HOW="no parts, the events deleted row by row: batches finished two days ago"
fi

# per TOTAL COUNT [DECIMALS]: TOTAL / COUNT, n/a for no count
per() {
	if [[ -z $2 || $2 == 0 || $2 == NaN ]]; then echo n/a; else fmt "$(calc "$1 / $2")" "${3:-1}"; fi
}

{
	echo "## Consumption: orderexp against PgQ (\`$BENCH_CMD\`)"
	echo
	echo "* **Date:** $RUN_DATE; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "* **orderexp:** commit $GIT_REV; PgQ $(q tpl_consume "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")"
	echo "* $(fmt "$N") events each ($(fmt "$ORDERS") orders closed on $CHANNELS channel(s): $(fmt "$RECORDS") records"
	echo "  of changes, $(fmt "$PLAIN") plain events), batches of $BATCH, one session (bench/consumer.c, libpq),"
	echo "  $RUNS round(s) from fresh copies of one template, methods alternating; medians"
	echo
	echo "| method | runs | median events/s | min–max events/s | × PgQ | median WAL bytes/event | × PgQ | load before (median) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for m in "${METHODS[@]}"; do
		read -r rate lo hi < <(col "$OUT/consume.tsv" 6 1 "$m" | stats)
		wal=$(col "$OUT/consume.tsv" 7 1 "$m" | stats | cut -d' ' -f1)
		l=$(col "$OUT/consume.tsv" 8 1 "$m" | stats | cut -d' ' -f1)
		printf '| %s | %s | %s | %s–%s | %s | %s | %s | %s |\n' "$m" "$RUNS" "$(fmt "$rate")" \
			"$(fmt "$lo")" "$(fmt "$hi")" "$(fmt "$(calc "$rate / $PGQ_RATE")" 2)" \
			"$(fmt "$(calc "$wal / $N")" 1)" "$(fmt "$(calc "$wal / $PGQ_WAL")" 2)" "$l"
	done
	echo
	echo "### Retention: the consumed events past it, removed"
	echo
	echo "orderexp ($RET_HOW), then"
	echo "\`run_due()\` with \`orderexp.event_retention = '1 day'\` until the pruning is through;"
	echo "records of changes are kept by design. PgQ: \`maint_rotate_tables_step1\` + \`step2\`"
	echo "until the events' table is truncated (the rotations before it, with a tick and a"
	echo "consumer batch after each, are set-up). Seconds: the calls' statement times; WAL:"
	echo "\`pg_current_wal_lsn()\` before and after; then a \`VACUUM\` of the tables of the queue's schema, measured alike."
	echo
	echo "| method | runs | events removed | records kept | calls | median seconds | min–max seconds | × PgQ | median WAL bytes | WAL bytes/event removed | × PgQ | VACUUM after: seconds | VACUUM after: WAL bytes/event removed | load before (median) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for m in "${METHODS[@]}"; do
		removed=$(col "$OUT/consume.tsv" 9 1 "$m" | stats | cut -d' ' -f1)
		kept=$(col "$OUT/consume.tsv" 10 1 "$m" | stats | cut -d' ' -f1)
		calls=$(col "$OUT/consume.tsv" 11 1 "$m" | stats | cut -d' ' -f1)
		read -r rs rlo rhi < <(col "$OUT/consume.tsv" 12 1 "$m" | stats)
		rw=$(col "$OUT/consume.tsv" 13 1 "$m" | stats | cut -d' ' -f1)
		vs=$(col "$OUT/consume.tsv" 14 1 "$m" | stats | cut -d' ' -f1)
		vw=$(col "$OUT/consume.tsv" 15 1 "$m" | stats | cut -d' ' -f1)
		l=$(col "$OUT/consume.tsv" 16 1 "$m" | stats | cut -d' ' -f1)
		if [[ $removed == 0 ]]; then
			wx=n/a
		else
			wx=$(per "$(calc "$rw / $removed")" "$(calc "$PGQ_RET_WAL / $N")" 2)
		fi
		printf '| %s | %s | %s | %s | %s | %s | %s–%s | %s | %s | %s | %s | %s | %s | %s |\n' "$m" "$RUNS" \
			"$(fmt "$removed")" "$(fmt "$kept")" "$calls" "$(fmt "$rs" 3)" "$(fmt "$rlo" 3)" "$(fmt "$rhi" 3)" \
			"$(per "$rs" "$PGQ_RET_S" 2)" "$(fmt "$rw")" "$(per "$rw" "$removed")" "$wx" \
			"$(fmt "$vs" 3)" "$(per "$vw" "$removed")" "$l"
	done
} >"$OUT/consume.md"
cat "$OUT/consume.md"
log "done: $OUT/consume.md"
