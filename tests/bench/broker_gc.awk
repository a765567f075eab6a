# broker_gc.awk: lines a latency phase's commands up with the broker's GC pauses.
#   awk -v t0=START -v others=FILE -f broker_gc.awk PAUSES CSV
# PAUSES: the broker's GC log lines of its pauses, sorted by time, each as the JVM writes them
#   with -Xlog:gc:...:timemillis: "[<wall-clock end, ms>ms] GC(7) Pause Young ... 12.095ms".
# CSV: the phase's latency.csv (seq,first_event,sent_ms,latency_ms,relayed_ms), sent_ms counted
#   from START (the phase's start, seconds since the epoch, as bench_e2e prints it).
# Prints one line: the pauses inside the phase, how many commands were in flight during one
# (sent before it ended, read after it began), and writes the other commands' latencies to
# `others`, one a line, for their percentiles.
FNR == 1 { file++ }
file == 1 {
    if (match($0, /^\[[0-9]+ms\] GC\([0-9]+\) Pause /)) {
        dur = $NF
        if (sub(/ms$/, "", dur) != 1)
            next
        np++
        pe[np] = substr($1, 2) + 0 # "[1796062194698ms]" -> 1796062194698
        ps[np] = pe[np] - dur
        pd[np] = dur + 0
    }
    next
}
FNR == 1 { next } # the CSV's header
{
    split($0, f, ",")
    if (f[4] < 0)
        next # never read back
    s = t0 * 1000 + f[3]
    e = s + f[4]
    if (n == 0)
        first = s
    if (e > last)
        last = e
    # Commands come in send order and pauses in time order, so one pointer walks both: j is
    # the first pause that ends after this command was sent; it overlaps if it began before
    # the command was read (a later pause begins later still).
    while (j < np && pe[j + 1] < s)
        j++
    hit = j < np && ps[j + 1] < e
    n++
    if (hit)
        nhit++
    if (f[4] > 10) {
        slow++
        if (hit)
            slowhit++
    }
    if (!hit)
        print f[4] > others
}
END {
    for (i = 1; i <= np; i++) {
        if (pe[i] < first || ps[i] > last)
            continue
        k++
        total += pd[i]
        if (pd[i] > longest)
            longest = pd[i]
    }
    printf "%d pauses, %.0f ms in all, longest %.1f ms; %d of %d commands were in flight during one, %d of the %d over 10 ms\n",
        k, total, longest, nhit, n, slowhit, slow
}
