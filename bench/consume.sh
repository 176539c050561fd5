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
#   orderexp  N orders of a registered table closed by orderexp.run_due(1000),
#             a transaction per batch of 1,000, as the worker closes them:
#             N "closed" events in the outbox
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
# before and after), per event.  Writes bench/out/consume.md and
# bench/out/consume.tsv; exits 1 on a broken run (a wrong count).
#
# Environment: BENCH_CONSUME_N (events, a multiple of 1,000),
# BENCH_CONSUME_RUNS (rounds), BENCH_CONSUME_METHODS (e.g. "claim pgq").

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

log "loading $(fmt "$N") events into each queue"
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
q tpl_consume "CREATE EXTENSION pgq" \
	"SELECT orderexp.set_close_policy('bench.orders', '1 hour', payload_columns => '{customer_email}')" \
	"SELECT bench.fill_drain($N)" >/dev/null
# the closes, a transaction per batch of 1,000, as the worker makes them
closes=()
for _ in $(seq 1 $((N / BATCH))); do
	closes+=("SELECT * FROM orderexp.run_due($BATCH)")
done
q tpl_consume "${closes[@]}" >/dev/null
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
	|| ' ' || (SELECT count(*) FROM pgq.event_template)
	|| ' ' || (SELECT count(*) FROM pgq.tick)")
[[ $got == "$N $N $((N / BATCH + 1))" ]] ||
	ox_die "template: outbox events, PgQ events, ticks are '$got', expected '$N $N $((N / BATCH + 1))'"
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
printf '# method\tround\tevents\tbatches\tseconds\tevents_per_s\twal_bytes\tload1\n' >"$OUT/consume.tsv"

# run_one METHOD ROUND: one consumption from a fresh copy of the template
run_one() {
	local m=$1 round=$2 lsn0 lsn1 wal out l0
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
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$round" "$ev" "$nb" "$secs" \
		"$(calc "$ev / $secs")" "$wal" "$l0" >>"$OUT/consume.tsv"
	log "round $round $m: $(fmt "$ev") events in $nb batches, $(fmt "$secs" 3) s, $(fmt "$(calc "$ev / $secs")") events/s, $(fmt "$(calc "$wal / $ev")" 1) WAL bytes/event"
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
{
	echo "## Consumption: orderexp against PgQ (\`$BENCH_CMD\`)"
	echo
	echo "* **Date:** $RUN_DATE; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "* **orderexp:** commit $GIT_REV; PgQ $(q tpl_consume "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")"
	echo "* $(fmt "$N") events each, batches of $BATCH, one session (bench/consumer.c, libpq),"
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
} >"$OUT/consume.md"
cat "$OUT/consume.md"
log "done: $OUT/consume.md"
