#!/usr/bin/env bash
#
# bench/afterclose.sh - what the audit trail and the outcomes cost
#
# Usage:  PGHOST=... PGPORT=... bash bench/afterclose.sh [DRAIN_N] [PAY_S] [RUNS]
#         (PGBIN names the directory of psql and pgbench, default: psql's)
#
# Against a running cluster with orderexp installed (its worker disabled or
# pointed at another database), in a scratch database afterclose_bench:
#
#   drain  DRAIN_N expired unpaid orders (default 100000) closed by one
#          orderexp.run_due() call, RUNS times from a fresh table; reported
#          in orders per second, each run and the median.  With
#          orderexp 1.1 of this branch each close also writes an audit row
#          and (through the outcome trigger) an outcome row.
#   pay    pgbench, 2 clients, PAY_S seconds (default 20): each transaction
#          pays the next unpaid order (bench/pgbench/pay.sql), on a table
#          that is not registered vs. one that is; RUNS alternating runs
#          (default 3), each on a fresh table of 500,000 unpaid orders.
#          Reported in transactions per second, each run, the median of
#          each mode and the median of registered / plain over the runs.
#
# Run it once per build to compare builds (e.g. main against this branch).
set -euo pipefail
DRAIN_N=${1:-100000}
PAY_S=${2:-20}
RUNS=${3:-3}
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${PGBIN:-$(dirname "$(command -v psql)")}
DB=afterclose_bench
q() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

"$BIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q -c 'CREATE EXTENSION orderexp'
q -c 'CREATE SCHEMA bench'

# --- drain -----------------------------------------------------------------
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
drain_rates=()
for run in $(seq 1 "$RUNS"); do
	q <<SQL
DROP TABLE IF EXISTS bench.orders;
CREATE TABLE bench.orders (id bigint PRIMARY KEY, status text NOT NULL,
                           created_at timestamptz NOT NULL, amount numeric);
SELECT orderexp.set_close_policy('bench.orders', '1 hour') IS NOT NULL AS registered;
INSERT INTO bench.orders
SELECT g, 'unpaid', now() - interval '2 hours', 10 FROM generate_series(1, $DRAIN_N) g;
VACUUM ANALYZE bench.orders;
VACUUM ANALYZE orderexp.timers;
CHECKPOINT;
SQL
	ms=$(q -At <<'SQL'
\timing on
SELECT closed FROM orderexp.run_due();
SQL
)
	closed=$(sed -n 1p <<<"$ms")
	t=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$ms")
	[[ $closed == "$DRAIN_N" ]] || { echo "drain closed $closed of $DRAIN_N" >&2; exit 1; }
	rate=$(awk -v n="$DRAIN_N" -v t="$t" 'BEGIN { printf "%.0f", n / t * 1000 }')
	drain_rates+=("$rate")
	printf 'drain\trun %s\t%s orders\t%s ms\t%s orders/s\n' "$run" "$DRAIN_N" "$t" "$rate"
	q -c 'TRUNCATE orderexp.outbox' -c "SELECT orderexp.drop_close_policy('bench.orders')" >/dev/null
done
printf 'drain\tmedian\t%s orders/s\n' "$(printf '%s\n' "${drain_rates[@]}" | median)"

# --- payment -----------------------------------------------------------------
pay_prepare() {
	q <<SQL
DROP TABLE IF EXISTS bench.orders;
DROP SEQUENCE IF EXISTS bench.pay_seq;
CREATE TABLE bench.orders (id bigint PRIMARY KEY, status text NOT NULL,
                           created_at timestamptz NOT NULL, amount numeric);
CREATE SEQUENCE bench.pay_seq;
INSERT INTO bench.orders SELECT g, 'unpaid', now(), 10 FROM generate_series(1, 500000) g;
SQL
	if [[ $1 == registered ]]; then
		q -c "SELECT orderexp.set_close_policy('bench.orders', '1 day')" >/dev/null
	fi
	q -c 'VACUUM ANALYZE bench.orders' -c 'CHECKPOINT'
}
plain_tps=()
reg_tps=()
ratios=()
for run in $(seq 1 "$RUNS"); do
	for mode in plain registered; do
		pay_prepare $mode
		tps=$("$BIN/pgbench" -n -c 2 -j 2 -T "$PAY_S" -f "$DIR/pgbench/pay.sql" "$DB" 2>&1 |
			sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -1)
		outcomes=$(q -At -c "SELECT count(*) FROM orderexp.outcomes WHERE order_table = 'bench.orders'::regclass" 2>/dev/null || echo -)
		printf 'pay\t%s\trun %s\t%s tps\toutcomes %s\n' "$mode" "$run" "$tps" "$outcomes"
		if [[ $mode == plain ]]; then plain_tps+=("$tps"); else reg_tps+=("$tps"); fi
	done
	ratios+=("$(awk -v r="$tps" -v p="${plain_tps[-1]}" 'BEGIN { printf "%.3f", r / p }')")
done
printf 'pay\tmedian\tplain %s tps\tregistered %s tps\tregistered/plain %s\n' \
	"$(printf '%s\n' "${plain_tps[@]}" | median)" "$(printf '%s\n' "${reg_tps[@]}" | median)" \
	"$(printf '%s\n' "${ratios[@]}" | median)"
"$BIN/psql" -X -q -d postgres -c "DROP DATABASE $DB"
