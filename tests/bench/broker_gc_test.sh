#!/usr/bin/env bash
# Checks tests/bench/broker_gc.awk, which the benchmark's `broker gc:` lines come from, on a
# made-up GC log and latency CSV whose answer is worked out by hand below.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# The phase starts at 1796062834.500 s, so a pause that ends at <end>ms lies at end - t0*1000
# on the CSV's time line. Pauses on that line: [1000, 1010], [2000, 2005], and [4990, 5000],
# which ends after the last command is read (so is not in the phase). Lines that are not
# pauses are skipped.
cat >"$scratch/gc.log" <<'LOG'
[1796062834000ms] Using G1
[1796062835510ms] GC(1) Pause Young (Normal) (G1 Evacuation Pause) 406M->179M(463M) 10.000ms
[1796062835900ms] GC(2) Concurrent Mark Cycle 45.000ms
[1796062836505ms] GC(3) Pause Remark 200M->190M(463M) 5.000ms
[1796062839500ms] GC(4) Pause Young (Normal) (G1 Evacuation Pause) 406M->179M(463M) 10.000ms
LOG
# seq,first_event,sent_ms,latency_ms,relayed_ms:
#   990 + 25   sent before the first pause began, read after it ended: slow, hit
#   1011 + 12  sent 1 ms after it ended: slow, not hit
#   1500 + 3   between pauses
#   1999 + 2   read during the second pause: hit
#   2006, -1   never read back: not counted
cat >"$scratch/latency.csv" <<'CSV'
seq,first_event,sent_ms,latency_ms,relayed_ms
0,events.allocated,990,25,10
1,events.allocated,1011,12,9
2,events.allocated,1500,3,2
3,events.allocated,1999,2,1
4,events.allocated,2006,-1,-1
CSV

got="$(awk -v t0=1796062834.500 -v others="$scratch/others" -f "$here/broker_gc.awk" \
    "$scratch/gc.log" "$scratch/latency.csv")"
want="2 pauses, 15 ms in all, longest 10.0 ms; 2 of 4 commands were in flight during one, 1 of the 2 over 10 ms"
failures=0
if [[ "$got" != "$want" ]]; then
    printf 'broker_gc: got\n  %s\nwanted\n  %s\n' "$got" "$want" >&2
    failures=1
fi
others="$(tr '\n' ' ' <"$scratch/others")"
if [[ "$others" != "12 3 " ]]; then
    echo "broker_gc: the latencies of the commands no pause touched: got '$others', wanted '12 3 '" >&2
    failures=1
fi
[[ $failures == 0 ]] && echo "broker_gc: $got"
exit $failures
