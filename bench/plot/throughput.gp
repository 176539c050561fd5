# bench/plot/throughput.gp - drain throughput of methods (a)-(e): median
# rows/s with min-max error bars, from throughput.dat (index, label,
# median, min, max, ratio to (a)); run in bench/out
set terminal pngcairo size 900,520 font "sans,11" noenhanced
set output "throughput.png"
set title "Closing expired orders with an event each: orders per second (median, min-max)"
set style fill solid 0.6 border -1
set boxwidth 0.6
set ylabel "orders closed per second"
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set xrange [-0.6:4.6]
set grid ytics
set format y "%.0s%c"
unset key
plot "throughput.dat" using 1:3:xtic(2) with boxes lc rgb "#4a7ab5", \
     "" using 1:3:4:5 with yerrorbars lc rgb "black" pt 0 lw 1.5, \
     "" using 1:5:(sprintf("%.1fk/s\n%.2f x (a)", $3 / 1000, $6)) with labels offset 0,1.6
