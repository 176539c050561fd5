# shellcheck shell=bash
#
# bench/report.sh - results.md and the plots, from the data bench/run.sh left
# in bench/out (sourced by run.sh; uses its variables and helpers)

# label of a drain method
method_label() {
	case $1 in
		a) echo "(a) one statement: UPDATE ... RETURNING into INSERT (physical limit)" ;;
		b) echo "(b) batched procedure, 1000 per batch, SKIP LOCKED, COMMIT per batch (pg_cron job)" ;;
		c) echo "(c) one transaction per order, $QUEUE_CLIENTS clients (job-per-order queue), sample of $(fmt "$QUEUE_SAMPLE")" ;;
		d) echo "(d) orderexp worker (enabled by reload, until all events are written)" ;;
		e) echo "(e) orderexp.run_due(), one call" ;;
	esac
}

short_label() {
	case $1 in
		a) echo "(a) one statement" ;;
		b) echo "(b) batched proc." ;;
		c) echo "(c) txn per order" ;;
		d) echo "(d) orderexp worker" ;;
		e) echo "(e) run_due()" ;;
	esac
}

verdict() { if [[ $1 == 1 ]]; then echo "**met**"; else echo "**missed**"; fi; }

# per-round ratio of method M to (a): "min max"
round_ratios() {
	awk -F'\t' -v m="$1" '!/^#/ { r[$1 "," $2] = $5; runs[$2] = 1 }
		END { for (k in runs) if ((m "," k) in r && ("a," k) in r && r["a," k] > 0) print r[m "," k] / r["a," k] }' \
		"$OUT/drain.tsv" | stats | awk '{ print $2, $3 }'
}

# the sweep's EXPLAINs (auto_explain): per statement with CTEs (the batch
# statements; the small lookups have none), its duration and the CTEs'
# inclusive times
explain_summary() {
	awk '
		function flush() {
			if (line != "") {
				n++
				printf("| %d | %.1f | %s |\n", n, dur, substr(line, 1, length(line) - 2))
			}
			line = ""
		}
		/duration: [0-9.]+ ms +plan:/ {
			flush()
			match($0, /duration: [0-9.]+/)
			dur = substr($0, RSTART + 10, RLENGTH - 10)
			next
		}
		/^ *CTE [a-z_]+$/ { cte = $2; next }
		cte != "" && /actual time=/ {
			match($0, /actual time=[0-9.]+\.\.[0-9.]+/)
			split(substr($0, RSTART + 12, RLENGTH - 12), t, "\\.\\.")
			line = line sprintf("%s %.1f, ", cte, t[2]); cte = ""; next
		}
		END { flush() }' "$OUT/explain_sweep_batch.txt"
}

write_report() {
	local m med min max secs rmin rmax a_med ratio rr
	local d_ratio d_ok idle_ok oltp_ok late_ok mem_ok
	local p_med p_min p_max r_med r_min r_max oltp_ratio
	local big_anon small_anon big_hwm small_hwm anon_ratio hwm_ratio late_anon late_ratio
	local nap100_p99 early_total

	read -r a_med _ _ < <(col "$OUT/drain.tsv" 5 1 a | stats)
	read -r med _ _ < <(col "$OUT/drain.tsv" 5 1 d | stats)
	d_ratio=$(calc "$med / $a_med")
	d_ok=$(calc "($d_ratio >= 0.7) ? 1 : 0")

	idle_ok=$(calc "($RUNDUE_DB < 0.5 && $IDLE_CPU_PER_TICK < 0.5) ? 1 : 0")

	read -r p_med p_min p_max < <(col "$OUT/oltp.tsv" 3 1 plain | stats)
	read -r r_med r_min r_max < <(col "$OUT/oltp.tsv" 3 1 registered | stats)
	oltp_ratio=$(calc "$r_med / $p_med")
	oltp_ok=$(calc "($oltp_ratio >= 0.9) ? 1 : 0")

	nap100_p99=$(col "$OUT/lateness.tsv" 7 1 100)
	early_total=$(col "$OUT/lateness.tsv" 10 | awk '{ s += $1 } END { print s + 0 }')
	late_ok=$(calc "($nap100_p99 <= 150 && $early_total == 0) ? 1 : 0")

	read -r big_anon _ _ < <(col "$OUT/mem.tsv" 6 1 big | stats)
	read -r small_anon _ _ < <(col "$OUT/mem.tsv" 6 1 small | stats)
	read -r big_hwm _ _ < <(col "$OUT/mem.tsv" 4 1 big | stats)
	read -r small_hwm _ _ < <(col "$OUT/mem.tsv" 4 1 small | stats)
	read -r warm_anon _ _ < <(col "$OUT/mem.tsv" 6 1 small_warm | stats)
	# the big drain after its first 10 %: a worker past its first transaction
	read -r late_anon _ _ < <(col "$OUT/mem.tsv" 10 1 big | stats)
	anon_ratio=$(calc "$big_anon / $small_anon")
	warm_ratio=$(calc "$big_anon / $warm_anon")
	late_ratio=$(calc "$late_anon / $warm_anon")
	# growth of the private memory during the big drain, after its first 10 %
	read -r anon_growth _ _ < <(awk -F'\t' '!/^#/ && $1 == "big" && $8 > 0 { print 100 * ($9 - $8) / $8 }' "$OUT/mem.tsv" | stats)
	hwm_ratio=$(calc "$big_hwm / $small_hwm")
	# like with like: a new worker's drains, big against small; a worker
	# past its first transaction, the rest of the big drain against the
	# second small one (bench/README.md, 5. Memory)
	mem_ok=$(calc "($anon_ratio <= 1.10 && $late_ratio <= 1.10) ? 1 : 0")

	cat <<-EOF
	# orderexp benchmark results

	* **Command:** \`$BENCH_CMD\`$([[ $MODE == smoke ]] && echo " (smoke run: tiny sizes, figures not meaningful)")
	* **Date:** $RUN_DATE; total runtime $((SECONDS - START_SECONDS)) s
	* **Machine:** $(nproc) CPUs ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo);
	  load average $LOAD_START at the start, $LOAD_END at the end (the machine is shared: other
	  builds and test clusters ran beside the benchmark, see "load" columns)
	* **PostgreSQL:** $PG_VERSION
	* **orderexp:** commit $GIT_REV
	* **Registered table:** $BENCH_MODE
	* **Cluster:** throwaway, default settings except \`shared_buffers = 1GB\`, \`max_wal_size = 4GB\`
	  (fsync, synchronous_commit and full_page_writes on, as by default), orderexp preloaded,
	  \`orderexp.batch_size\` 1000 (default)

	## Targets

	| target | measured | verdict |
	|---|---|---|
	| (d) worker drain ≥ 0.7 × (a) | $(fmt "$d_ratio" 2) × (a) | $(verdict "$d_ok") |
	| idle tick < 0.5 ms of database time at $(fmt "$IDLE_N") tracked orders | run_due() $(fmt "$RUNDUE_DB" 3) ms beyond a \`SELECT 1\` round trip; worker CPU $(fmt "$IDLE_CPU_PER_TICK" 3) ms per tick | $(verdict "$idle_ok") |
	| OLTP TPS registered ≥ 0.9 × unregistered | $(fmt "$oltp_ratio" 4) × | $(verdict "$oltp_ok") |
	| lateness p99 ≤ 150 ms at naptime 100 ms, no close before the deadline | p99 $(fmt "$nap100_p99" 1) ms; $early_total early closes | $(verdict "$late_ok") |
	| worker memory flat within 10 % from $(fmt "$MEM_SMALL") to $(fmt "$DRAIN_N") backlog | private (RssAnon) peak of a new worker × $(fmt "$anon_ratio" 3) against a new worker's $(fmt "$MEM_SMALL")-order drain; after the big drain's first 10 % × $(fmt "$late_ratio" 3) against the same worker's second $(fmt "$MEM_SMALL")-order drain (the whole big drain's peak × $(fmt "$warm_ratio" 3) against that, its first transaction's included); $(fmt "$anon_growth" 1) % during the big drain after its first 10 %; VmHWM × $(fmt "$hwm_ratio" 2) (counts the shared buffers it touched) | $(verdict "$mem_ok") (judged on private memory, like with like: both ≤ 1.10) |

	## 1. Drain throughput

	$(fmt "$DRAIN_N") expired unpaid orders among $(fmt $((3 * DRAIN_N))) rows ($(fmt "$DRAIN_N") paid,
	$(fmt "$DRAIN_N") unpaid and due in 40-60 minutes), each closed with one event in an outbox, in
	the same transaction. Every run starts from a fresh copy of the same template database
	(\`CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY\`), then \`VACUUM ANALYZE\`, all
	tables and indexes loaded into shared buffers (\`pg_prewarm\`), \`CHECKPOINT\`; the methods
	take turns (a, b, c, d, e, a, b, ...). After each run the counts are checked: exactly the
	expected orders closed, one event each, paid orders untouched, (d)/(e) no due timer left.

	| method | rows | runs | median rows/s | min–max rows/s | median s | ratio to (a) | per-run ratio min–max | load before (median) |
	|---|---:|---:|---:|---:|---:|---:|---:|---:|
	EOF
	for m in "${METHODS[@]}"; do
		read -r med min max < <(col "$OUT/drain.tsv" 5 1 "$m" | stats)
		read -r secs _ _ < <(col "$OUT/drain.tsv" 4 1 "$m" | stats)
		read -r rmin rmax < <(round_ratios "$m")
		ratio=$(calc "$med / $a_med")
		rr="$(fmt "$rmin" 3)–$(fmt "$rmax" 3)"
		printf '| %s | %s | %s | %s | %s–%s | %s | %s | %s | %s |\n' "$(method_label "$m")" \
			"$(fmt "$(col "$OUT/drain.tsv" 3 1 "$m" | head -n 1)")" \
			"$(col "$OUT/drain.tsv" 1 1 "$m" | wc -l)" "$(fmt "$med")" "$(fmt "$min")" "$(fmt "$max")" \
			"$(fmt "$secs" 2)" "$(fmt "$ratio" 3)" "$rr" \
			"$(col "$OUT/drain.tsv" 6 1 "$m" | stats | awk '{ print $1 }')"
	done
	cat <<-EOF

	(c) is timed by pgbench (transactions per second without connection time); (d) from the
	\`ALTER SYSTEM SET orderexp.enabled = on\` + \`pg_reload_conf()\` to the last event committed
	(polled every 20 ms), its worker used $(col "$OUT/drain.tsv" 7 1 d | stats | awk '{ printf "%.1f", $1 }') s of CPU
	(median) for it. Loading the registered template ($( ((BENCH_PLAIN)) && echo "plain deadlines: no timer rows, and on its NOT NULL created-at no timer trigger on INSERT" || echo "timers made by the trigger, $(fmt $((2 * DRAIN_N))) of them")) took $(fmt "$REG_LOAD_SECS" 1) s.

	![throughput](throughput.png)

	### Where a batch's time goes

	\`EXPLAIN (ANALYZE, BUFFERS, WAL)\` of every statement of the sweep, by \`auto_explain\`
	with nested statements, while \`run_due(5000)\` takes five batches of 1000 on a fresh copy
	of the registered template (full plans: \`explain_sweep_batch.txt\`); the statements with
	CTEs are the batch statements (from 1.3 on three per batch: take, orders, record). The CTE
	times are inclusive: a materialized CTE is charged to the node that reads it first, and
	data-modifying CTEs that nothing reads run after the main plan.

	| statement | duration ms | CTE times, ms |
	|---:|---:|---|
	$(explain_summary)

	## 2. Idle cost

	$(fmt "$IDLE_N") unpaid orders, all tracked, none due for 45 minutes. Loaded into the bare
	table with \`INSERT ... SELECT\` ($(fmt "$IDLE_FILL_SECS" 1) s with the primary key built afterwards) and
	registered afterwards: \`set_close_policy\` made the $(fmt "$IDLE_N") timers in one statement in
	$(fmt "$IDLE_REG_SECS" 1) s (through the trigger it would be slower, see the insert cost in 3).

	| measurement | value |
	|---|---:|
	| \`SELECT orderexp.run_due()\` with nothing due, median of $(fmt "$TICK_CALLS") calls (client latency, pgbench) | $(fmt "$RUNDUE_MED" 3) ms (p99 $(fmt "$RUNDUE_P99" 3), min $(fmt "$RUNDUE_MIN" 3), max $(fmt "$RUNDUE_MAX" 3)) |
	| \`SELECT 1\`, median, same way (the round trip) | $(fmt "$SELECT1_MED" 3) ms |
	| run_due() database time (difference of the medians) | $(fmt "$RUNDUE_DB" 3) ms |
	| the worker's overview query, EXPLAIN ANALYZE execution time, median of 7 | $(fmt "$OVERVIEW_MED" 3) ms |
	| worker CPU over $(fmt "$IDLE_ELAPSED" 1) s at naptime 1 s (/proc/PID/schedstat) | $(fmt "$IDLE_CPU_MS" 1) ms = $(fmt "$IDLE_CPU_SHARE" 3) % of a core |
	| worker CPU per tick (one tick a second) | $(fmt "$IDLE_CPU_PER_TICK" 3) ms |

	## 3. OLTP overhead

	pgbench, $PGBENCH_CLIENTS clients, $OLTP_S s per run, script \`bench/pgbench/oltp.sql\`: insert an
	unpaid order, then pay one of the 1000 most recent orders with the guarded update (two
	transactions per pgbench transaction). Before each run the table is emptied and given
	$(fmt "$OLTP_BASE") recent orders, then registered (\`close_after\` 1 hour: nothing comes due) or
	not; the worker runs (idle) in both cases. Modes alternate.

	| mode | runs | median TPS | min–max |
	|---|---:|---:|---:|
	| not registered | $(col "$OUT/oltp.tsv" 3 1 plain | wc -l) | $(fmt "$p_med") | $(fmt "$p_min")–$(fmt "$p_max") |
	| registered | $(col "$OUT/oltp.tsv" 3 1 registered | wc -l) | $(fmt "$r_med") | $(fmt "$r_min")–$(fmt "$r_max") |
	| ratio | | $(fmt "$oltp_ratio" 4) | |

	Insert cost per unpaid order, $(fmt "$TRIGGER_ROWS") rows in one \`INSERT ... SELECT\`:
	$(fmt "$US_BARE" 1) µs into a bare copy with the same indexes, $(fmt "$US_REG" 1) µs into the registered one: registering
	adds $(fmt "$(calc "$US_REG - $US_BARE")" 1) µs per order (the timer trigger's, where the table has one; with plain
	deadlines on a \`NOT NULL\` created-at it has none, and the difference is the machine's noise).

	## 4. Lateness

	pgbench \`-R $LATE_RATE -T $LATE_S\`, $PGBENCH_CLIENTS clients, script \`bench/pgbench/stream.sql\`: a new
	unpaid order each time, deadline $LATE_CLOSE_AFTER s after it; every even order is paid by the
	order placed $LATE_LAG later (a quarter second), so about half close. Lateness is the
	time from the deadline (created_at + $LATE_CLOSE_AFTER s) to \`clock_timestamp()\` at the end of the
	closing statement, from a bench statement trigger with a transition table on the orders
	table (a little later than the statement's last row, a little earlier than its commit).
	The "outbox" columns compare \`outbox.created_at\` (start of the closing transaction) with
	the event's \`close_at\`: a lower bound of the same thing.

	| naptime | orders | rate /s | paid | closed | p50 ms | p99 ms | max ms | min ms | closes before deadline | outbox p50 / p99 / max ms | outbox before deadline |
	|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
	EOF
	awk -F'\t' '!/^#/ { printf("| %s ms | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s |\n",
		$1, $2, $5, $3, $4, $6, $7, $8, $9, $10, $11, $12, $13, $14) }' "$OUT/lateness.tsv"
	cat <<-EOF

	![lateness](lateness.png)

	## 5. Memory of the worker

	The worker is a new process in each run (the database is dropped and copied again). Its
	\`/proc/PID/status\` is sampled every 2 ms while it drains (\`bench/rss_sampler.py\`: a batch's
	peak lasts a few milliseconds); VmHWM is read before it is
	enabled and after the drain. VmHWM and VmRSS count the pages of shared buffers the process
	touched, which grow with the data it reads (the 1 GB of shared_buffers is mapped by every
	backend); RssAnon is its private memory, which is what would grow with a leak or a
	backlog held in memory.

	| backlog | runs | VmHWM before | VmHWM after (median) | peak VmRSS | peak RssAnon (median) | peak RssShmem | RssAnon at 10 % of the drain → last sample | peak RssAnon after 10 % |
	|---:|---:|---:|---:|---:|---:|---:|---:|---:|
	EOF
	for m in small small_warm big; do
		printf '| %s | %s | %s kB | %s kB | %s kB | %s kB | %s kB | %s → %s kB | %s kB |\n' \
			"$(case $m in small) fmt "$MEM_SMALL" ;; small_warm) echo "$(fmt "$MEM_SMALL"), same worker again" ;; big) fmt "$DRAIN_N" ;; esac)" \
			"$(col "$OUT/mem.tsv" 1 1 $m | wc -l)" \
			"$(fmt "$(col "$OUT/mem.tsv" 3 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 4 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 5 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 6 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 7 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 8 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 9 1 $m | stats | cut -d' ' -f1)")" \
			"$(fmt "$(col "$OUT/mem.tsv" 10 1 $m | stats | cut -d' ' -f1)")"
	done
	cat <<-EOF

	Private memory (RssAnon, median of the runs): $(fmt "$small_anon") kB at the peak for the small
	backlog drained by a new worker, $(fmt "$warm_anon") kB when the same worker drains another
	$(fmt "$MEM_SMALL") orders, $(fmt "$big_anon") kB for the big backlog (× $(fmt "$anon_ratio" 3) against the
	first, × $(fmt "$warm_ratio" 3) against the second), $(fmt "$late_anon") kB after the big drain's first
	10 % (× $(fmt "$late_ratio" 3) against the second). During the big drain it changed by
	$(fmt "$anon_growth" 1) % from 10 % of the drain to its end (samples in \`mem_samples_*.tsv\`).
	A new worker's peak is its first transaction's, whatever the backlog: the caches and plans it
	builds then, and the pages glibc's heap keeps until the transaction's \`malloc_trim\`; so a
	new worker's big drain is compared with a new worker's small one, and the rest of the big
	drain with the same worker's second small one (see bench/README.md, 5. Memory).

	## Sizes, and where they differ from the plan

	* Drain: $(fmt "$DRAIN_N") expired orders among $(fmt $((3 * DRAIN_N))) rows, $RUNS runs per method;
	  (c) on a sample of $(fmt "$QUEUE_SAMPLE") orders.
	* Idle: $(fmt "$IDLE_N") tracked orders; worker CPU read over $IDLE_CPU_S s$( ((IDLE_CPU_S < 60)) &&
	  echo " (shortened from a minute for the time budget; at one tick a second that is $IDLE_CPU_S ticks)").
	* OLTP: $OLTP_RUNS runs of $OLTP_S s per mode. Lateness: $LATE_S s per naptime.
	* Memory: the big backlog is the drain's ($(fmt "$DRAIN_N")), drained by the worker once more per run with
	  the sampler on; the timed (d) runs have no sampler.
	EOF
}

draw_plots() {
	local m i=0 med min max a_med
	read -r a_med _ _ < <(col "$OUT/drain.tsv" 5 1 a | stats)
	: >"$OUT/throughput.dat"
	for m in "${METHODS[@]}"; do
		read -r med min max < <(col "$OUT/drain.tsv" 5 1 "$m" | stats)
		printf '%d\t"%s"\t%s\t%s\t%s\t%s\n' "$i" "$(short_label "$m")" "$med" "$min" "$max" \
			"$(calc "$med / $a_med")" >>"$OUT/throughput.dat"
		i=$((i + 1))
	done
	(cd "$OUT" && gnuplot "$BENCH_DIR/plot/throughput.gp" && gnuplot "$BENCH_DIR/plot/lateness.gp") ||
		ox_warn "gnuplot failed: no plots"
}
