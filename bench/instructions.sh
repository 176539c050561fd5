#!/usr/bin/env bash
#
# bench/instructions.sh - what a close and an application's transaction
# cost, in CPU instructions: figures that do not depend on how busy the
# machine is
#
# Usage:  bash bench/instructions.sh [N]      N expired orders (default 10000)
#         BENCH_PLAIN=0 bash bench/instructions.sh [N]   the table with timer rows
#
# As root on Debian bookworm, like bench/run.sh: installs what it needs
# (valgrind besides the packages of scripts/lib.sh), builds and installs the
# extension from this tree, loads a throwaway cluster and stops it.  Each
# measurement then runs one backend in single-user mode (postgres --single)
# under valgrind's callgrind, on a fresh copy of the stopped cluster, and
# reads the instructions it executed; a backend that runs SELECT 1 in the
# same database is the base subtracted from each.  Same binary, same data,
# same statements: one build's counts repeat to the last digit whatever
# else the machine is doing, so the ratios are exact where bench/run.sh's
# timings wobble by 10 % on a shared machine.  Between two builds a close
# moves by some 300 instructions even when no statement it runs changed
# (the catalog's OIDs shift with every new function, bench/instructions.md):
# compare smaller differences with one cluster and both variants.
# Instructions are not time (fsync waits, cache misses and lock waits are
# not in them), so this complements bench/run.sh, it does not replace it.
#
# Measured, per closed order (N expired among 3N rows, as bench/run.sh):
#   (a)   the physical limit: one UPDATE ... RETURNING into an INSERT
#   (e)   orderexp.run_due(): with plain deadlines (BENCH_PLAIN=1, the
#         default) the plain batch: due orders through the partial index,
#         row, event and outcome; with timer rows (BENCH_PLAIN=0) the close
#         batch: timer, row, event and outcome
#   (e-)  the same with the record statement stripped of its outcome row
#         (before 1.3, and the outcome trigger off): what that record costs
#   (f)   a design study, not orderexp's code: the same close if orders
#         whose deadline is created_at + close_after had no timer row
#         (bench/sql/timerless.sql)
# and per transaction of bench/pgbench/oltp.sql (insert an order, pay a
# recent one) into a table registered (plain deadlines or
# timer rows, as above) vs. not registered (with the partial index); the
# registered table again with another table's 1,000 timer rows beside it
# (orderexp.timers' key is then no empty b-tree, as in most databases); the
# registered table with a created-at that may be NULL (with plain deadlines
# it keeps its timer trigger on INSERT then: what that trigger costs); and,
# as a design study, the registered table without its row triggers (insert,
# if it has one, and status): what the status trigger costs the
# application.
#
# A transaction's figure is what one more costs a connection that has run
# some already, as pgbench's connections in bench/run.sh have: the
# instructions of OLTP_WARM + OLTP_TX transactions less those of the first
# OLTP_WARM alone, over OLTP_TX.  A new connection's first transactions
# pay for its caches as well (the relation, catalog, plan and policy
# caches orderexp and PostgreSQL fill once a backend); that figure, the
# first OLTP_WARM less a backend running SELECT 1, is reported beside it.
#
# Writes bench/out/instructions.md (and the callgrind files beside it).
#
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR=$OX_ROOT/bench
# helpers shared with bench/run.sh (log, q, bench_cluster_start)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
OUT=$BENCH_DIR/out/instructions
N=${1:-10000}
OLTP_WARM=1000		# transactions a connection has run before the measured ones
OLTP_TX=2000		# the measured transactions
[[ $N =~ ^[0-9]+$ ]] && ((N >= 100 && N % 2 == 0)) || ox_die "usage: bash bench/instructions.sh [N, even, at least 100]"

OX_PACKAGES+=(valgrind python3)
export OX_QUIET_BUILD=1
ox_setup
rm -rf "$OUT"
mkdir -p "$OUT"
chown postgres "$OUT"
ox_mktemp instructions WORK

# the same cluster as bench/run.sh's, with no worker
bench_cluster_start

REG=$(reg_sql '1 hour')
# (f) is the study of a close without timer rows: its table is registered
# with timer rows whatever BENCH_PLAIN says (timerless.sql deletes them)
REG_TIMERS="SELECT orderexp.set_close_policy('bench.orders', '1 hour', payload_columns => '{customer_email}')"
q postgres "CREATE DATABASE base"
ox_psql -d base -q -f "$BENCH_DIR/sql/schema.sql" >/dev/null
for db in plain reg reg_bare timerless oltp_plain oltp_reg oltp_reg_timers oltp_nullable oltp_notrig; do
	q postgres "CREATE DATABASE $db TEMPLATE base"
done
q plain "SELECT bench.fill_drain($N)" \
	"$UNPAID_DUE_INDEX" >/dev/null
q reg "$REG" "SELECT bench.fill_drain($N)" >/dev/null
q reg_bare "$REG" "SELECT bench.fill_drain($N)" >/dev/null
# (f), a design study: the same close without timer rows (bench/sql/timerless.sql)
q timerless "$REG_TIMERS" "SELECT bench.fill_drain($N)" >/dev/null
ox_psql -d timerless -q -f "$BENCH_DIR/sql/timerless.sql" >/dev/null
q oltp_reg "$REG" >/dev/null
# a database with timer rows: another registered table's 1,000 unpaid orders
q oltp_reg_timers "$REG" \
	"CREATE TABLE bench.other (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'unpaid',
		created_at timestamptz NOT NULL DEFAULT now())" \
	"SELECT orderexp.set_close_policy('bench.other', '1 hour')" \
	"INSERT INTO bench.other (id) SELECT g FROM generate_series(1, 1000) g" >/dev/null
[[ $(q oltp_reg_timers "SELECT count(*) FROM orderexp.timers") == 1000 ]] ||
	ox_die "oltp_reg_timers: expected 1000 timer rows"
# a created-at that may be NULL: with plain deadlines the table keeps its
# timer trigger on INSERT then (an order without a created-at needs a row)
q oltp_nullable "$REG" "ALTER TABLE bench.orders ALTER COLUMN created_at DROP NOT NULL" >/dev/null
# a design study: the registered table without its row triggers (the
# truncate trigger stays; 1.2's two status triggers go with 1.3's one)
q oltp_notrig "$REG" "DO \$\$ DECLARE t name; BEGIN
	FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = 'bench.orders'::regclass
				AND tgname LIKE 'orderexp%' AND tgname <> 'orderexp_timer_truncate' LOOP
		EXECUTE format('DROP TRIGGER %I ON bench.orders', t);
	END LOOP; END \$\$" >/dev/null
# the unregistered table of the OLTP figure is kept as a pg_cron user would
# keep it: with the partial index by which the job finds due orders
q oltp_plain "$UNPAID_DUE_INDEX" >/dev/null

# reg_bare: the sweep without its audit and outcome CTEs (a wrapper strips
# them from the text the generator makes: from 1.3 on the close batch's
# record statement, _record_close_sql, which since the close's first event
# became its record has an outcome CTE only; before, the one batch
# statement, _sweep_sql), and, before 1.3, the outcome trigger off, so that
# nothing writes those rows (1.3's library switches it off in the sweep's
# orders statement itself, src/batch.c; disabled for the whole table, it
# would stay in that statement's copy of the triggers, and each row's old
# version would be fetched for nothing)
GEN=_sweep_sql
[[ $(q reg_bare "SELECT to_regprocedure('orderexp._record_close_sql(orderexp.tables)') IS NOT NULL") == t ]] &&
	GEN=_record_close_sql
if ((BENCH_PLAIN)); then
	# the plain batch's record statement, whose outcome CTE ends in WHERE
	# (the result, after it, counts the keys)
	GEN=_record_plain_close_sql
	q reg_bare \
		"ALTER FUNCTION orderexp.$GEN(orderexp.tables, orderexp.policies) RENAME TO ${GEN}_full" \
		"CREATE FUNCTION orderexp.$GEN(cfg orderexp.tables, p orderexp.policies) RETURNS text LANGUAGE sql AS
			\$\$ SELECT regexp_replace(orderexp.${GEN}_full(cfg, p),
									  '\\),\\noutcome AS \\(.*\\)\\nSELECT ', E')\\nSELECT ') \$\$" >/dev/null
	stripped=$(q reg_bare "SELECT orderexp.$GEN(t, p) FROM orderexp.tables t
		JOIN orderexp.policies p ON p.order_table = t.order_table AND p.category IS NULL")
else
	q reg_bare \
		"ALTER FUNCTION orderexp.$GEN(orderexp.tables) RENAME TO ${GEN}_full" \
		"CREATE FUNCTION orderexp.$GEN(cfg orderexp.tables) RETURNS text LANGUAGE sql AS
			\$\$ SELECT regexp_replace(orderexp.${GEN}_full(cfg),
									  '\\),\\n(audit|outcome) AS \\(.*\\n\\t [^\\n]*\\)\\nSELECT', E')\\nSELECT') \$\$" >/dev/null
	stripped=$(q reg_bare "SELECT orderexp.$GEN(t) FROM orderexp.tables t")
fi
[[ $GEN != _sweep_sql ]] || q reg_bare \
	"DO \$\$ BEGIN EXECUTE format('ALTER TABLE bench.orders DISABLE TRIGGER %I',
		(SELECT tgname FROM pg_trigger WHERE tgrelid = 'bench.orders'::regclass
		    AND tgname IN ('orderexp_outcome', 'orderexp_status'))); END \$\$" >/dev/null
BARE=1
if [[ $stripped == *"orderexp.audit"* || $stripped == *"orderexp.outcomes"* || $stripped != *"INSERT INTO orderexp.outbox"* ]]; then
	# the statement of another version (1.1 has no "done" CTE): no (e-)
	ox_warn "could not strip the audit and outcome rows from this version's sweep statement: no (e-) figure"
	BARE=0
fi
for db in plain reg reg_bare timerless oltp_plain oltp_reg oltp_reg_timers oltp_nullable oltp_notrig; do
	q "$db" "VACUUM ANALYZE" >/dev/null
done
q postgres "CHECKPOINT" >/dev/null
# with plain deadlines no timer row at all, else one per unpaid order
WANT="$N $((2 * N))"
((BENCH_PLAIN)) && WANT="0 0"
for db in reg reg_bare; do
	[[ $(q $db "SELECT count(*) FILTER (WHERE close_at <= now()) || ' ' || count(*) FROM orderexp.timers") == "$WANT" ]] ||
		ox_die "the registered drain set of $db has the wrong timers"
done

# the OLTP scripts: an order and a payment of one of the thousand before
# it (bench/pgbench/oltp.sql's work, with fixed choices), OLTP_WARM times,
# and OLTP_WARM + OLTP_TX times (beginning alike)
oltp_script() {
	python3 - "$1" <<'EOF'
import random, sys
random.seed(1)
n = int(sys.argv[1])
for i in range(n):
    k = 10_000_001 + i
    print(f"INSERT INTO bench.orders (id, customer_email, amount) VALUES ({k}, 'client1@example.com', 19.99);")
    back = random.randint(0, min(i, 999))
    print(f"UPDATE bench.orders SET status = 'paid' WHERE id = {k - back} AND status = 'unpaid';")
EOF
}
oltp_script "$OLTP_WARM" >"$WORK/oltp_warm.sql"
oltp_script $((OLTP_WARM + OLTP_TX)) >"$WORK/oltp.sql"
cmp -s "$WORK/oltp_warm.sql" <(head -n $((2 * OLTP_WARM)) "$WORK/oltp.sql") ||
	ox_die "the OLTP scripts do not begin alike"
echo "SELECT 1;" >"$WORK/select1.sql"
echo "SELECT bench.close_all();" >"$WORK/a.sql"
echo "SELECT closed FROM orderexp.run_due();" >"$WORK/e.sql"
echo "SELECT bench.timerless_drain();" >"$WORK/f.sql"
chown postgres "$WORK"/*.sql

ox_cluster_stop
cp -a "$OX_PGDATA" "$WORK/data0"

declare -A IR
SPECS=(plain:select1 plain:a reg:select1 reg:e timerless:select1 timerless:f)
for db in oltp_plain oltp_reg oltp_reg_timers oltp_nullable oltp_notrig; do
	SPECS+=("$db:select1" "$db:oltp_warm" "$db:oltp")
done
((BARE)) && SPECS+=(reg_bare:select1 reg_bare:e)
for spec in "${SPECS[@]}"; do
	db=${spec%%:*}
	what=${spec#*:}
	IR[$spec]=$(callgrind_count "$WORK/data0" "$db" "$WORK/$what.sql" "$db.$what" \
		"$OUT/callgrind.$db.$what")
	log "$spec: ${IR[$spec]} instructions"
done
# run_due() closed every due order, with or without timer rows
for db in reg reg_bare; do
	[[ ! -e $WORK/$db.e.log ]] || grep -q "closed = \"$N\"" "$WORK/$db.e.log" ||
		ox_die "run_due() in $db did not close $N orders (see $WORK/$db.e.log)"
done

A=$(per "${IR[plain:a]}" "${IR[plain:select1]}" "$N")
E=$(per "${IR[reg:e]}" "${IR[reg:select1]}" "$N")
F=$(per "${IR[timerless:f]}" "${IR[timerless:select1]}" "$N")
EB=NaN
((BARE)) && EB=$(per "${IR[reg_bare:e]}" "${IR[reg_bare:select1]}" "$N")
# per transaction of a connection that has run OLTP_WARM (T), and of a
# new connection's first OLTP_WARM (W)
declare -A T W
for db in oltp_plain oltp_reg oltp_reg_timers oltp_nullable oltp_notrig; do
	T[$db]=$(per "${IR[$db:oltp]}" "${IR[$db:oltp_warm]}" "$OLTP_TX")
	W[$db]=$(per "${IR[$db:oltp_warm]}" "${IR[$db:select1]}" "$OLTP_WARM")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "NaN") print "n/a"; else printf "%.3f", a / b }'; }
GIT_REV=$(git -C "$OX_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$OX_ROOT" status --porcelain -- . ':!bench' 2>/dev/null) ]]; then
	GIT_REV="$GIT_REV (with uncommitted changes)"
fi

cat >"$OUT/../instructions.md" <<EOF
# orderexp: instructions per close and per transaction

* **Command:** \`BENCH_PLAIN=$BENCH_PLAIN bash bench/instructions.sh $N\`, $(date -u '+%Y-%m-%d %H:%M UTC'), orderexp commit $GIT_REV
* **Registered table:** $BENCH_MODE
* **How:** one single-user backend per figure under \`valgrind --tool=callgrind\`, on a fresh
  copy of the same stopped cluster, \`jit = off\`; minus a backend running \`SELECT 1\` in the
  same database. $(fmt "$N") expired orders among $(fmt $((3 * N))) rows, as in bench/run.sh.
  Instructions are not time: WAL flushes, cache misses and lock waits are not in them.

| per closed order | instructions | ratio to (a) |
|---|---:|---:|
| (a) one UPDATE ... RETURNING into an INSERT | $(fmt "$A") | 1.000 |
| (e) \`orderexp.run_due()\`, $BENCH_MODE | $(fmt "$E") | $(ratio "$A" "$E") |
| (e) without the outcome row | $(fmt "$EB") | $(ratio "$A" "$EB") |
| (f) design study: (e) without timer rows (bench/sql/timerless.sql) | $(fmt "$F") | $(ratio "$A" "$F") |

The ratio is (a)'s instructions over the method's, so that it reads like bench/run.sh's
throughput ratios.

| per application transaction (insert an order, pay a recent one) | instructions | plain / registered | a new connection's first $(fmt "$OLTP_WARM") | plain / registered |
|---|---:|---:|---:|---:|
| table not registered | $(fmt "${T[oltp_plain]}") | | $(fmt "${W[oltp_plain]}") | |
| table registered, $BENCH_MODE | $(fmt "${T[oltp_reg]}") | $(ratio "${T[oltp_plain]}" "${T[oltp_reg]}") | $(fmt "${W[oltp_reg]}") | $(ratio "${W[oltp_plain]}" "${W[oltp_reg]}") |
| table registered, $BENCH_MODE, another table's 1,000 timer rows beside it | $(fmt "${T[oltp_reg_timers]}") | $(ratio "${T[oltp_plain]}" "${T[oltp_reg_timers]}") | $(fmt "${W[oltp_reg_timers]}") | $(ratio "${W[oltp_plain]}" "${W[oltp_reg_timers]}") |
| table registered, $BENCH_MODE, its created-at nullable (with plain deadlines the insert trigger stays then) | $(fmt "${T[oltp_nullable]}") | $(ratio "${T[oltp_plain]}" "${T[oltp_nullable]}") | $(fmt "${W[oltp_nullable]}") | $(ratio "${W[oltp_plain]}" "${W[oltp_nullable]}") |
| design study: registered, without its row triggers (insert, if any, and status) | $(fmt "${T[oltp_notrig]}") | $(ratio "${T[oltp_plain]}" "${T[oltp_notrig]}") | $(fmt "${W[oltp_notrig]}") | $(ratio "${W[oltp_plain]}" "${W[oltp_notrig]}") |

The first figures are what one more transaction costs a connection that has run $(fmt "$OLTP_WARM")
(the instructions of $(fmt $((OLTP_WARM + OLTP_TX))) transactions less those of the first $(fmt "$OLTP_WARM"), over
$(fmt "$OLTP_TX")), as for bench/run.sh's pgbench connections. A new connection's first transactions
also fill its caches once (relations, catalog, plans, orderexp's policies); before 2026-12-06 this
file reported 2,000 transactions of a new connection, its caches included.

Callgrind files: \`bench/out/instructions/callgrind.*\` (\`callgrind_annotate --inclusive=yes\`).
EOF
cat "$OUT/../instructions.md"
