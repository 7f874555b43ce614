# plots.gp - the figures of bench/RESULTS.md, each as PNG and SVG: W1
# throughput by system, W2 latency distribution, W4 speedup and efficiency
# against p.  It reads the data files and vars.gp that bench/report.py
# writes into one folder:
#   gnuplot -e "data='DIR'; out='bench/plots'" bench/plots.gp

if (!exists("data")) data = "."
if (!exists("out")) out = "."
load data."/vars.gp"
set encoding utf8

# Bar colours by kind: taskq, the reference, the other ZeroMQ programs, peers.
kind_rgb(k) = k == 0 ? 0x1f5fbf : k == 1 ? 0xd9601a : k == 2 ? 0xf0b27a : 0x9a9a9a
short(v) = v >= 1e6 ? sprintf("%.2fM", v / 1e6) : v >= 1e4 ? sprintf("%.0fk", v / 1e3) : \
           v >= 1e3 ? sprintf("%.1fk", v / 1e3) : sprintf("%.0f", v)
# Colours of the W2 points, one per system; the reference's first.
point_rgb = "#d9601a #f0a05a #b15928 #1b9e77 #7570b3 #e7298a #66a61e #a6761d #555555 #1f78b4 #6a3d9a #b8860b"
nodata(t) = sprintf("set label 1 '%s: no figures in this run' at graph 0.5, 0.5 center", t)

do for [ext in "png svg"] {
    if (ext eq "png") {
        set terminal pngcairo size 1000, 620 font "DejaVu Sans,10"
    } else {
        set terminal svg size 1000, 620 font "DejaVu Sans,10" background "white"
    }

    # W1: one bar per system, log scale, whiskers from the slowest to the fastest run.
    set output out."/w1_throughput.".ext
    set title "W1 throughput by system (median of the runs; whiskers: min–max)"
    set ylabel "tasks/s (log scale)"
    set logscale y
    set grid ytics
    set style fill solid 0.9 border rgb "black"
    set xtics rotate by 35 right nomirror font ",9"
    set bmargin 10
    unset key
    if (w1_n == 0) {
        eval nodata("W1")
        plot [0:1] [1:10] NaN notitle
    } else {
        set xrange [-0.6 : w1_n - 0.4]
        set yrange [w1_low : w1_high]
        plot data."/w1.dat" using 0:2:($0 - 0.38):($0 + 0.38):(w1_low):2:(kind_rgb($5)):xtic(1) \
                 with boxxyerror lc rgb variable, \
             "" using 0:2:3:4 with yerrorbars lc rgb "black" ps 0, \
             "" using 0:($4 * 1.3):(short($2)) with labels font ",8"
    }
    reset

    # W2: taskq's every round trip as a distribution, the others' p50 and p99.
    set output out."/w2_latency.".ext
    set title "W2 latency: one task at a time, 1 worker\n(taskq: every round trip of its median run; the others: p50 and p99, joined by a dashed line)"
    set xlabel "round trip, µs (log scale)"
    set ylabel "fraction of tasks at or below"
    set logscale x
    set yrange [0 : 1.02]
    set grid xtics mxtics ytics
    set key outside right top font ",9"
    set rmargin 30
    set arrow from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 3 lc rgb "gray40"
    set arrow from graph 0, first 0.99 to graph 1, first 0.99 nohead dt 3 lc rgb "gray40"
    if (w2_has_cdf + w2_blocks == 0) {
        eval nodata("W2")
        unset logscale x
        plot [0:1] NaN notitle
    } else {
        plot data."/w2_cdf.dat" using 1:2 with steps lw 2.5 lc rgb "#1f5fbf" \
                 title "taskq", \
             for [i = 0 : w2_blocks - 1] data."/w2_points.dat" index i using 1:2 \
                 with linespoints pt (i % 12) + 4 ps 1.3 lw 1 dt 2 \
                 lc rgb word(point_rgb, (i % 12) + 1) title columnheader(1)
    }
    reset

    # W4: speedup and efficiency against p, beside the ideal.
    set output out."/w4_speedup.".ext
    set multiplot layout 1, 2 title "W4: Monte Carlo tasks of about 20 ms, serial then p worker processes (median; bars: min–max)"
    set xlabel "worker processes p"
    set xrange [0.7 : w4_pmax + 0.3]
    set xtics 1
    set grid
    set key top left
    set ylabel "speedup S_p = T_{serial} / T_p"
    set yrange [0 : w4_smax]
    plot x with lines dt 2 lc rgb "gray30" title "ideal (S_p = p)", \
         data."/w4.dat" index 0 using 1:2:3:4 with yerrorlines pt 7 lw 2 lc rgb "#1f5fbf" title "taskq", \
         data."/w4.dat" index 1 using 1:2:3:4 with yerrorlines pt 5 lw 2 lc rgb "#2a9d4b" \
             title "multiprocessing.Pool"
    set ylabel "efficiency E_p = S_p / p"
    set yrange [0 : w4_emax]
    set key bottom left
    plot 1 with lines dt 2 lc rgb "gray30" title "ideal (E_p = 1)", \
         0.9 with lines dt 3 lc rgb "#d9601a" title "target at p = 2 (0.9)", \
         data."/w4.dat" index 0 using 1:5:6:7 with yerrorlines pt 7 lw 2 lc rgb "#1f5fbf" title "taskq", \
         data."/w4.dat" index 1 using 1:5:6:7 with yerrorlines pt 5 lw 2 lc rgb "#2a9d4b" \
             title "multiprocessing.Pool"
    unset multiplot
    reset
}
