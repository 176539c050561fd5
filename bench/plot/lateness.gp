# bench/plot/lateness.gp - lateness of the worker's closes under a steady
# stream: cumulative distribution at naptime 1000 and 100 ms, from
# lateness_cdf_<naptime>.tsv (ms, fraction); run in bench/out
set terminal pngcairo size 900,520 font "sans,11"
set output "lateness.png"
set title "Time from deadline to close (cumulative), steady stream of new orders"
set xlabel "lateness, ms (log scale)"
set ylabel "fraction of closed orders"
set logscale x
set xrange [1:*]
set yrange [0:1.02]
set grid xtics ytics mxtics
set key top left
set arrow from 150, graph 0 to 150, graph 1 nohead dt 2 lc rgb "gray40"
set label "p99 target 150 ms" at 150, graph 0.5 offset 0.5,0 tc rgb "gray40"
clip(x) = x < 1 ? 1 : x
plot "lateness_cdf_1000.tsv" using (clip($1)):2 with lines lw 2 lc rgb "#b5524a" title "naptime 1000 ms", \
     "lateness_cdf_100.tsv" using (clip($1)):2 with lines lw 2 lc rgb "#4a7ab5" title "naptime 100 ms"
