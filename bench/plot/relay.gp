# bench/plot/relay.gp - orderexp-relay's events/s (median, min-max) against
# the receiver's latency (latency.dat: latency ms, median, min, max) and
# against --concurrency webhook=N (concurrency.dat: N, median, min, max),
# with the claim + ack baseline; run in bench/out/relay by bench/relay.sh
# with -e "baseline=...; have_conc=0|1; conc_latency=..."
set terminal pngcairo size 1200,500 font "sans,10" noenhanced
set output "relay.png"
set multiplot layout 1,2 title "orderexp-relay --once -q --webhook: events delivered per second (median of the runs, min-max)"

# a log axis has no 0: the 0 ms receiver is drawn at 0.3 ms
xpos(l) = (l == 0 ? 0.3 : l)

set title "against the receiver's latency, default settings"
set logscale xy
set xrange [0.2:2000]
set xtics ("0" 0.3, "1" 1, "10" 10, "100" 100, "1000" 1000)
set xlabel "receiver latency, ms"
set ylabel "events/s"
set format y "%g"
set grid
set key bottom left box opaque
plot "latency.dat" using (xpos($1)):2:3:4 with yerrorlines lw 2 pt 7 lc rgb "#4a7ab5" title "orderexp-relay", \
     baseline with lines dt 2 lw 1.5 lc rgb "#b54a4a" title sprintf("claim(100) + ack alone: %.0f/s", baseline), \
     (x >= 1 ? 1000 / x : 1/0) with lines dt 3 lw 1.5 lc rgb "gray40" title "one delivery at a time: 1000 / latency"

set title sprintf("against --concurrency webhook=N, %d ms receiver", conc_latency)
if (have_conc) {
	set xrange [0.7:400]
	set xtics ("1" 1, "4" 4, "16" 16, "64" 64, "256" 256)
	set xlabel "N (deliveries at once)"
	set key bottom right box opaque
	plot "concurrency.dat" using 1:2:3:4 with yerrorlines lw 2 pt 7 lc rgb "#4a7ab5" title "orderexp-relay", \
	     baseline with lines dt 2 lw 1.5 lc rgb "#b54a4a" title sprintf("claim(100) + ack alone: %.0f/s", baseline), \
	     1000.0 / conc_latency * x with lines dt 3 lw 1.5 lc rgb "gray40" title "N deliveries at a time: N x 1000 / latency"
} else {
	unset logscale
	unset grid
	unset xtics
	unset ytics
	unset xlabel
	unset ylabel
	set border 0
	set xrange [0:1]
	set yrange [0:1]
	set label 1 "the relay under test has no --concurrency:\nthese cases were skipped" at 0.5, 0.5 center
	unset key
	plot 2 notitle lc rgb "white"
}
unset multiplot
