#!/usr/bin/env bash
# Usage: tests/chaos/held_snapshot.sh [HOLD_SECONDS [RATE [BEFORE_SECONDS [AFTER_SECONDS]]]]
#        (defaults 300 s held, 1000 commands/s, 60 s before, 180 s after)
#
# A transaction held open beside a steady stream of commands, and what it costs. Another
# session of the processor's database starts a REPEATABLE READ transaction, takes its snapshot
# and an xid, and sits idle in it for HOLD_SECONDS: no row deleted or updated meanwhile can be
# vacuumed away, in the outbox (a queue: every event is inserted, then deleted once relayed),
# products (a version bump per command), consumer_offsets (an update per batch) and the rest.
#
# The stream is bench_e2e's latency phase (tests/bench/bench_e2e.c: commands sent one at a time
# at RATE/s, each timed from its send to its event read back) against a processor of
# build/bench on a scratch database, as tests/bench/run_bench.sh runs it. Every SAMPLE_SECONDS
# (10) the script records the commands applied and, per table, pg_total_relation_size,
# n_live_tup and n_dead_tup. It prints, for the window before the snapshot, the one while it
# is held, and the one after its release: commands applied per second and the latency
# percentiles; then the tables at the end of each window and at the end of the run.
#
# A script for people, not a CI test: it runs for HOLD + BEFORE + AFTER seconds (9 minutes by
# default) on the checkout's services (deploy/local/services.sh), which it never restarts.
# Environment: DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (default: deploy/local/services.sh
# env); SKIP_BUILD=1 reuses build/bench; HELD_OUT (a directory for the logs and samples);
# any processor setting (BATCH_MAX_MESSAGES, ...) passes through.
set -euo pipefail

say() { echo "[held_snapshot $(date -u +%H:%M:%S)] $*" >&2; }
die() { say "error: $*"; exit 1; }
psql_on() { psql "$1" -qAtX -v ON_ERROR_STOP=1 -F $'\t' -c "$2"; }
HOLD=${1:-300} RATE=${2:-1000} BEFORE=${3:-60} AFTER=${4:-180} SAMPLE=${SAMPLE_SECONDS:-10}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
[[ -n "${DATABASE_URL:-}" && -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]] || eval "$(deploy/local/services.sh env)"
BUILD="$ROOT/build/bench" RUN_ID="held$$t$(date +%s)"
OUT="${HELD_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ap-$RUN_ID.XXXX")}"
mkdir -p "$OUT"
psql_on "$DATABASE_URL" 'select 1' >/dev/null || die "Postgres is not reachable at DATABASE_URL"
kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -m 5 >/dev/null 2>&1 || die "Kafka is not reachable at $KAFKA_BOOTSTRAP_SERVERS"

# --- build: the benchmark's Release tree ----------------------------------------------------------
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    say "building $BUILD (Release)"
    [[ -f "$BUILD/CMakeCache.txt" ]] ||
        cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAP_SANITIZE=OFF -DAP_WERROR=OFF \
            -DCMAKE_C_FLAGS="-g -fno-omit-frame-pointer" >"$OUT/build.log" 2>&1
    cmake --build "$BUILD" --target allocation-processor bench_e2e test-delete-topics >>"$OUT/build.log" 2>&1 ||
        { tail -n 30 "$OUT/build.log" >&2; die "build failed ($OUT/build.log)"; }
fi

# --- a scratch database and a processor on it -----------------------------------------------------
DB="ap_held_$$"
PROC_URL="${DATABASE_URL%/*}/$DB"
PROC_PID="" BENCH_PID="" HOLDER_PID=""
cleanup() {
    local pid
    exec 7>&- 2>/dev/null || true
    for pid in "$HOLDER_PID" "$BENCH_PID" "$PROC_PID"; do
        [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    "$BUILD/tests/test-delete-topics" "$RUN_ID" >/dev/null 2>&1 || true
    psql_on "$DATABASE_URL" "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || say "could not drop $DB"
}
trap cleanup EXIT
psql_on "$DATABASE_URL" "CREATE DATABASE $DB"
export TOPIC_PREFIX="$RUN_ID" KAFKA_GROUP_ID="$RUN_ID" HTTP_ADDR="127.0.0.1:0"
DATABASE_URL="$PROC_URL" "$BUILD/allocation-processor" run >"$OUT/processor.log" 2>&1 &
PROC_PID=$!
say "load before the run: $(uptime)"
say "processor pid $PROC_PID on database $DB, topics $RUN_ID.*; logs in $OUT"

# --- samples --------------------------------------------------------------------------------------
TABLES="'outbox','products','batches','allocations','allocations_view','consumer_offsets','command_outcomes','email_outbox'"
# sample LABEL: one line per table: label, epoch seconds, commands applied, table, total bytes,
# live rows, dead rows, autovacuum count; to $OUT/samples.tsv.
sample() {
    psql_on "$PROC_URL" "
        select '$1', extract(epoch from clock_timestamp())::numeric(14,1),
               (select coalesce(sum(next_offset), 0) from consumer_offsets where group_id = '$RUN_ID'),
               relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup, autovacuum_count
          from pg_stat_user_tables where relname in ($TABLES) order by relname" >>"$OUT/samples.tsv" 2>/dev/null || true
}

# --- the stream -----------------------------------------------------------------------------------
# bench_e2e: a small throughput phase (2,000 commands) first, then RATE/s for the whole run.
SECONDS_TOTAL=$((BEFORE + HOLD + AFTER))
BENCH_LATENCY_CSV="$OUT/latency.csv" BENCH_PROCESSOR_PID="$PROC_PID" DATABASE_URL="$PROC_URL" \
    "$BUILD/tests/bench_e2e" 2000 "$RATE" "$SECONDS_TOTAL" 1000 >"$OUT/bench.log" 2>&1 &
BENCH_PID=$!
deadline=$((SECONDS + 300))
until grep -q "^phase: throughput end" "$OUT/bench.log"; do
    kill -0 "$BENCH_PID" 2>/dev/null || { cat "$OUT/bench.log" >&2; die "bench_e2e ended early"; }
    ((SECONDS < deadline)) || die "bench_e2e did not reach its latency phase in 300 s"
    sleep 0.5
done
# The fixed-rate phase starts about 1.2 s later (a warm-up command, then a 1 s pause).
STREAM_T0=$(($(date +%s%N) / 1000000 + 1200))
say "the stream runs at $RATE commands/s for $SECONDS_TOTAL s"

# phase LABEL SECONDS: samples every SAMPLE seconds for SECONDS, the last one at the end.
phase() {
    local end=$((SECONDS + $2))
    while ((SECONDS < end)); do
        sample "$1"
        sleep "$SAMPLE"
    done
    sample "$1-end"
}
ms_into_stream() { echo $(($(date +%s%N) / 1000000 - STREAM_T0)); }

phase before "$BEFORE"
# The holder: a session of the same database in REPEATABLE READ, with a snapshot (the first
# query) and an xid (txid_current), then idle in transaction until the script commits it.
mkfifo "$OUT/holder.fifo"
psql "$PROC_URL" -qAtX -v ON_ERROR_STOP=1 <"$OUT/holder.fifo" >"$OUT/holder.out" 2>&1 &
HOLDER_PID=$!
exec 7>"$OUT/holder.fifo"
HOLD_FROM_MS=$(ms_into_stream)
echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(), count(*) FROM outbox;" >&7
say "snapshot taken and held (REPEATABLE READ, idle in transaction) for $HOLD s"
phase held "$HOLD"
psql_on "$PROC_URL" "select state, backend_xid, backend_xmin, now() - xact_start from pg_stat_activity
    where pid = (select pid from pg_stat_activity where state like 'idle in transaction%' limit 1)" >"$OUT/holder.state" || true
echo "COMMIT;" >&7
exec 7>&-
wait "$HOLDER_PID" || die "the holding session failed: $(cat "$OUT/holder.out")"
HOLDER_PID=""
HOLD_TO_MS=$(ms_into_stream)
say "released (holder said: $(tr '\n' ' ' <"$OUT/holder.out"); $(cat "$OUT/holder.state"))"
phase after "$AFTER"
wait "$BENCH_PID" || say "bench_e2e exited $? (see $OUT/bench.log)"
BENCH_PID=""
# The stream is over: until autovacuum has visited the outbox again (at most 3 minutes).
deadline=$((SECONDS + 180))
while ((SECONDS < deadline)); do
    sample idle
    [[ "$(psql_on "$PROC_URL" "select n_dead_tup from pg_stat_user_tables where relname = 'outbox'")" -lt 1000 ]] && break
    sleep "$SAMPLE"
done
sample final
kill -TERM "$PROC_PID"
wait "$PROC_PID" || say "the processor exited $? (log $OUT/processor.log)"
PROC_PID=""

# --- the figures ----------------------------------------------------------------------------------
{
    echo "==================== held snapshot: $HOLD s beside $RATE commands/s ===================="
    echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- processor include schemas 2>/dev/null || echo ' + uncommitted changes')"
    echo "load:     $(uptime)"
    echo "command:  tests/chaos/held_snapshot.sh $HOLD $RATE $BEFORE $AFTER"
    grep -E '^(latency|events of this run)' "$OUT/bench.log" || true
    echo "--- per window: commands applied per second (from consumer_offsets) and send -> event latency"
    python3 - "$OUT/latency.csv" "$OUT/samples.tsv" "$HOLD_FROM_MS" "$HOLD_TO_MS" <<'PY'
import csv, sys
lat_path, samples_path, hold_from, hold_to = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
windows = {"before": [], "held": [], "after": []}
lost = 0
for row in csv.DictReader(open(lat_path)):
    t, lat = float(row["sent_ms"]), float(row["latency_ms"])
    if lat < 0:
        lost += 1
        continue
    windows["before" if t < hold_from else "held" if t < hold_to else "after"].append(lat)
applied = {}
for line in open(samples_path):
    label, at, n = line.split("\t")[:3]
    applied.setdefault(label.replace("-end", ""), []).append((float(at), int(n)))
def pct(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
for w, xs in windows.items():
    xs.sort()
    pts = applied.get(w, [])
    rate = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) if len(pts) > 1 and pts[-1][0] > pts[0][0] else float("nan")
    print(f"{w:7s} {len(xs):7d} commands timed; applied {rate:7.0f}/s; latency p50 {pct(xs, .5):8.1f} ms, "
          f"p99 {pct(xs, .99):8.1f} ms, max {xs[-1] if xs else float('nan'):8.1f} ms")
print(f"commands without an event: {lost}")
PY
    echo "--- tables at the end of each window: total size (pg_total_relation_size), live / dead rows, autovacuums"
    python3 - "$OUT/samples.tsv" <<'PY'
import sys
last, peak = {}, {}
for line in open(sys.argv[1]):
    label, _, _, rel, size, live, dead, av = line.rstrip("\n").split("\t")
    last[(label, rel)] = (int(size), int(live), int(dead), int(av))
    p = peak.setdefault(rel, [0, 0])
    p[0], p[1] = max(p[0], int(size)), max(p[1], int(dead))
labels = [l for l in ("before-end", "held-end", "after-end", "final") if any(k[0] == l for k in last)]
print(f"{'table':18s}" + "".join(f"{l:>30s}" for l in labels) + f"{'peak size / dead':>24s}")
for rel in sorted(peak):
    cells = []
    for l in labels:
        s = last.get((l, rel))
        cells.append(f"{s[0] / 1048576:8.1f} MiB {s[1]:7d} / {s[2]:7d} {s[3]:2d}" if s else f"{'-':>30s}")
    print(f"{rel:18s}" + "".join(f"{c:>30s}" for c in cells) + f"{peak[rel][0] / 1048576:12.1f} MiB {peak[rel][1]:9d}")
PY
    echo "logs:     $OUT (samples.tsv, latency.csv, bench.log, processor.log)"
} | tee "$OUT/summary.txt"
