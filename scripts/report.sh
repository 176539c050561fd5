#!/usr/bin/env bash
#
# scripts/report.sh - charts of what the close policies do, from one database
#
# Usage:  bash scripts/report.sh DBNAME|CONNINFO OUTDIR
#
# Reads orderexp.experiment_stats, orderexp.policy_stats and
# orderexp.outcomes with psql and renders with gnuplot (pngcairo):
#
#   OUTDIR/conversion.png   conversion rate of every experiment variant with
#                           its 95 % Wilson interval; without experiments,
#                           of every policy version
#   OUTDIR/time_to_pay.png  histogram of how long paid orders took to pay,
#                           per variant (or policy version), in minutes,
#                           against each one's deadline (dashed)
#
# plus the data files beside them (conversion.dat, time_to_pay.dat).  Needs
# psql and gnuplot on PATH (PSQL overrides psql).  Exit 1 on any failure.
set -euo pipefail

if [[ $# -ne 2 ]]; then
	echo "usage: bash scripts/report.sh DBNAME|CONNINFO OUTDIR" >&2
	exit 2
fi
CONN=$1
OUT=$2
PSQL=${PSQL:-psql}
mkdir -p "$OUT"
command -v gnuplot >/dev/null || { echo "report.sh: gnuplot not found" >&2; exit 1; }

q() { "$PSQL" -X -q -At -F $'\t' -v ON_ERROR_STOP=1 -d "$CONN" -c "$1"; }

# --- conversion: label, rate, low, high, orders ------------------------------
q "SELECT format('exp %s v%s %s', experiment_id, variant, close_after), conversion_rate,
          ci_low, ci_high, orders
     FROM orderexp.experiment_stats WHERE orders > 0
    ORDER BY experiment_id, variant" >"$OUT/conversion.dat"
CONV_TITLE="Conversion rate per experiment variant (95% Wilson interval)"
if [[ ! -s $OUT/conversion.dat ]]; then
	q "SELECT format('%s %s v%s %s', s.order_table, coalesce(s.category, '*'), s.policy_version,
                     s.close_after), s.conversion_rate, w.low, w.high, s.orders
         FROM orderexp.policy_stats s, LATERAL orderexp._wilson(s.paid, s.orders) w
        ORDER BY s.order_table::text, s.category, s.policy_version" >"$OUT/conversion.dat"
	CONV_TITLE="Conversion rate per policy version (95% Wilson interval)"
fi
NCONV=$(wc -l <"$OUT/conversion.dat")

# --- time to pay: one block per group, "minutes count", deadline in the title
NGROUPS=$(q "SELECT count(DISTINCT (policy_id, policy_version, variant))
              FROM orderexp.outcomes WHERE outcome = 'paid' AND NOT reopened")
q "WITH paid AS (
       SELECT o.policy_id, o.policy_version, o.variant,
              extract(epoch FROM o.decided_at - o.created_at) / 60 AS minutes,
              coalesce(e.variants[o.variant], v.close_after) AS deadline
         FROM orderexp.outcomes o
         JOIN orderexp.policy_versions v ON v.policy_id = o.policy_id AND v.version = o.policy_version
         LEFT JOIN orderexp.experiments e ON e.policy_id = o.policy_id AND e.policy_version = o.policy_version
        WHERE o.outcome = 'paid' AND NOT o.reopened),
   ranked AS (
       SELECT p.*, dense_rank() OVER (ORDER BY p.policy_id, p.policy_version, p.variant) AS g
         FROM paid p),
   width AS (SELECT greatest(max(extract(epoch FROM deadline)) / 60 / 40, 1 / 60.0) AS w FROM paid)
   SELECT r.g, format('policy %s v%s%s, deadline %s min', r.policy_id, r.policy_version,
                      coalesce(' variant ' || r.variant, ''),
                      round(extract(epoch FROM r.deadline) / 60, 1)),
          round(extract(epoch FROM r.deadline) / 60, 3),
          round(floor(r.minutes / width.w) * width.w + width.w / 2, 4) AS bin, count(*),
          round(width.w, 4)
     FROM ranked r, width
    GROUP BY r.g, r.policy_id, r.policy_version, r.variant, r.deadline, width.w, bin
    ORDER BY r.g, bin" >"$OUT/time_to_pay.dat"

# one histogram per group, its deadline dashed in the same colour
YMAX=1
XMAX=1
if [[ -s $OUT/time_to_pay.dat ]]; then
	YMAX=$(cut -f5 "$OUT/time_to_pay.dat" | sort -n | tail -1)
	XMAX=$(cut -f3,4 "$OUT/time_to_pay.dat" | tr '\t' '\n' | sort -g | tail -1 | awk '{ print $1 * 1.08 }')
fi
TTP_PLOT=""
while IFS=$'\t' read -r g label deadline; do
	TTP_PLOT+="${TTP_PLOT:+, }\"time_to_pay.dat\" using (\$1 == $g ? \$4 : NaN):5:6 with boxes fs transparent solid 0.45 noborder lc $g title \"$label\""
	TTP_PLOT+=", \"+\" using ($deadline):(0):(0):($YMAX) every ::0::0 with vectors nohead dt 2 lw 1.5 lc $g notitle"
done < <(cut -f1-3 "$OUT/time_to_pay.dat" | sort -u -n)

cd "$OUT"
gnuplot <<GP
set terminal pngcairo size 1000,560 font "sans,10" noenhanced
set output "conversion.png"
set title "$CONV_TITLE"
set ylabel "conversion rate (paid / orders)"
set yrange [0:1]
set grid ytics
set style fill solid 0.5 border -1
set boxwidth 0.6
set datafile separator "\t"
set xtics rotate by -30
unset key
if ($NCONV == 0) {
	set label 1 "no outcomes recorded yet" at graph 0.5, 0.5 center
	set xrange [0:1]
	plot NaN notitle
} else {
	set xrange [-0.6:$NCONV - 0.4]
	plot "conversion.dat" using 0:2:xtic(1) with boxes lc rgb "#4a7ab5", \
	     "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 7 ps 0.5 lw 1.5, \
	     "" using 0:4:(sprintf("%.1f%% of %d", \$2 * 100, \$5)) with labels offset 0,0.8
}

set output "time_to_pay.png"
set title "Time to pay of paid orders against the deadline (dashed)"
set xlabel "minutes from creation to payment"
set ylabel "paid orders"
set autoscale
set yrange [0:*]
set xtics norotate
set key top right
if ($NGROUPS == 0) {
	set label 1 "no paid orders recorded yet" at graph 0.5, 0.5 center
	set xrange [0:1]
	set yrange [0:1]
	plot NaN notitle
} else {
	unset label 1
	set xrange [0:$XMAX]
	plot $TTP_PLOT
}
GP

for f in conversion.png time_to_pay.png; do
	if ! head -c 8 "$f" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'; then
		echo "report.sh: $OUT/$f is not a PNG file" >&2
		exit 1
	fi
done
echo "report.sh: wrote $OUT/conversion.png and $OUT/time_to_pay.png"
