#!/usr/bin/env bash
# Usage: tests/bench/run_bench.sh [COMMANDS [RATE [SECONDS [SKUS]]]]
#        (defaults 100000 commands, 1000 commands/s for 20 s, 1000 skus: bench_e2e's)
#        BENCH_MIX=realistic tests/bench/run_bench.sh ...      (the mix: simple by default)
#        BENCH_MILLIONS=10 tests/bench/run_bench.sh 0 1000     (the long run: 10 x 1,000,000)
#
# The end-to-end benchmark, in one command, against the local services
# (deploy/local/services.sh start; this script never starts or stops them):
#   1. builds a Release tree build/bench (-DAP_SANITIZE=OFF, -g -fno-omit-frame-pointer for
#      perf, warnings not fatal) with allocation-processor and bench_e2e;
#   2. starts build/bench/allocation-processor on a scratch database (created here, dropped
#      at the end) with its own TOPIC_PREFIX and KAFKA_GROUP_ID, samples its VmRSS/VmHWM;
#   3. runs bench_e2e against it (throughput, then latency at a fixed rate), optionally with
#      perf recording the processor during the throughput phase (PROFILE=1);
#   4. stops the processor (SIGTERM), deletes the run's topics, then runs pgbench's
#      simple-update (-N) on a scratch pgbench database on the same server for as long as
#      the throughput phase lasted (at least 10 s);
#   5. prints one block: commands/s beside pgbench's tps and their ratio, latency, memory,
#      CPU split, and the performance targets. Exits 1 when events were missing, pgbench failed,
#      or Postgres or Kafka restarted during the run (the numbers are then void).
#
# Environment: DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (default: deploy/local/services.sh
# env); BATCH_MAX_MESSAGES, BATCH_MAX_WAIT_MS, BACKPRESSURE_MAX_ROWS, BACKPRESSURE_MAX_AGE_MS,
# TOPIC_PARTITIONS and any other processor setting are passed to the processor as they are;
# PROFILE=1 records perf during the throughput phase (the processor and its Postgres
# backends with DWARF call graphs, and the whole machine; it costs some throughput: compare
# with a run without it); with perf present, the processor's sendto/recvfrom/poll calls per
# command are always counted (perf stat on tracepoints: cheap);
# PGBENCH_CLIENTS (2), PGBENCH_SCALE (1), PGBENCH_SECONDS (the throughput phase's length);
# BENCH_MIX (simple, the default, or realistic: bench_e2e.c says what each sends);
# BENCH_MILLIONS=N, BENCH_ROUND, BENCH_PROBE_S: the long run (N rounds of BENCH_ROUND commands,
# default 1,000,000, each followed by a BENCH_PROBE_S-second probe at RATE, then, unless
# BENCH_SETTLE_S=0, a wait of up to BENCH_SETTLE_S (120) seconds for the machine to go quiet
# and a second probe, the one the p99 target is judged on; after each round a line with its
# throughput, both probes' p99, VmRSS and the table sizes; at the end the verdicts);
# BENCH_REPLICAS=N (default 1): N processors in the same group and database, as replicas of a
# deployment are (give TOPIC_PARTITIONS a multiple of N); with CONSUMER_THREADS=M each is M
# group members; the run starts once every member holds its share of the partitions, and
# the memory and thread figures are the first processor's;
# BENCH_OUT (a directory for logs, default a new one under /tmp; latency.csv there has every
# latency-phase command's send time, latency and the part of it up to the relay's produce
# call, which the summary's `split:` line sums up); SKIP_BUILD=1 (reuse build/bench);
# BENCH_KAFKA_GC_LOG: the broker's GC log, when it is not the local broker's (the summary's
# `broker gc:` lines count the commands in flight during each of its pauses).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PGBIN=/usr/lib/postgresql/15/bin
BUILD="$ROOT/build/bench"
RUN_ID="bench$$t$(date +%s)"
OUT="${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ap-$RUN_ID.XXXX")}"
mkdir -p "$OUT"

if [[ -z "${DATABASE_URL:-}" || -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    eval "$(deploy/local/services.sh env)"
fi
say() { echo "[run_bench] $*" >&2; }
die() { say "error: $*"; exit 1; }

# DATABASE_URL with another database name (URI or keyword=value form).
url_with_db() {
    local url="$1" db="$2"
    if [[ "$url" == postgres://* || "$url" == postgresql://* ]]; then
        local query=""
        [[ "$url" == *\?* ]] && query="?${url#*\?}" && url="${url%%\?*}"
        local rest="${url#*://}"
        if [[ "$rest" == */* ]]; then url="${url%/*}/$db"; else url="$url/$db"; fi
        echo "$url$query"
    else
        echo "$url dbname=$db"
    fi
}

psql_admin() { "$PGBIN/psql" "$DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
psql_admin 'select 1' >/dev/null || die "Postgres is not reachable at DATABASE_URL"
kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -m 5 >/dev/null 2>&1 ||
    die "Kafka is not reachable at $KAFKA_BOOTSTRAP_SERVERS"

# --- 1. build -------------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    say "building $BUILD (Release)"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAP_SANITIZE=OFF -DAP_WERROR=OFF \
        -DCMAKE_C_FLAGS="-g -fno-omit-frame-pointer" >"$OUT/build.log" 2>&1 ||
        { tail -n 30 "$OUT/build.log" >&2; die "cmake failed ($OUT/build.log)"; }
    cmake --build "$BUILD" -j"$(nproc)" --target allocation-processor bench_e2e test-delete-topics \
        >>"$OUT/build.log" 2>&1 ||
        { grep -E 'error|Error' "$OUT/build.log" | head -n 30 >&2; die "build failed ($OUT/build.log)"; }
fi
AP_BIN="$BUILD/allocation-processor"
BENCH_BIN="$BUILD/tests/bench_e2e"
DELETE_TOPICS_BIN="$BUILD/tests/test-delete-topics"
[[ -x "$AP_BIN" && -x "$BENCH_BIN" && -x "$DELETE_TOPICS_BIN" ]] ||
    die "missing $AP_BIN, $BENCH_BIN or $DELETE_TOPICS_BIN"

# --- 2. processor ---------------------------------------------------------------------------------
SCRATCH_DB="ap_bench_$$"
PGBENCH_DB="ap_pgbench_$$"
PROC_URL="$(url_with_db "$DATABASE_URL" "$SCRATCH_DB")"
PROC_PID=""
EXTRA_PIDS=()
SAMPLER_PID=""

TOPICS_LEFT=""
# Postgres may be restarting (another session's fault test): try for a while.
drop_db() {
    local i
    for i in $(seq 1 15); do
        psql_admin "DROP DATABASE IF EXISTS $1 WITH (FORCE)" 2>/dev/null && return 0
        sleep 1
    done
    say "could not drop database $1"
}
cleanup() {
    local pid
    for f in "$OUT/perf.pids" "$OUT/count.pid"; do
        [[ -f "$f" ]] && while read -r pid; do kill -INT "$pid" 2>/dev/null || true; done <"$f"
    done
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    for pid in $PROC_PID "${EXTRA_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n "$TOPICS_LEFT" ]] && "$DELETE_TOPICS_BIN" "$TOPIC_PREFIX" >/dev/null 2>&1
    drop_db "$SCRATCH_DB"
    drop_db "$PGBENCH_DB"
}
trap cleanup EXIT

# How busy the machine is before we start (other work skews every number below).
cpu_busy_pct() {
    local a b
    a=($(head -n 1 /proc/stat)); sleep "$1"; b=($(head -n 1 /proc/stat))
    awk -v n="$(nproc)" -v u=$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8])) \
        -v i=$((b[4] + b[5] - a[4] - a[5])) 'BEGIN {printf "%.0f", (u + i) ? 100 * n * u / (u + i) : 0}'
}
BUSY_BEFORE="$(cpu_busy_pct 3)"
LOAD_BEFORE="$(uptime | sed 's/.*load average/load average/')"
OTHERS="$(top -b -n 2 -d 1 -w 200 | awk '/^top/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 {printf "%s %s%%, ", $12, $9}' | head -c 200)"
say "machine busy ${BUSY_BEFORE}% (of $(( $(nproc) * 100 ))%) before the run; busiest: ${OTHERS:-none}"
[[ "$BUSY_BEFORE" -gt 20 ]] && say "warning: the machine is not idle: numbers will be low"

# Services restarted during the run (another session's fault test, say) void the numbers.
pg_started() { psql_admin 'SELECT pg_postmaster_start_time()' 2>/dev/null || echo "?"; }
kafka_pid() { ss -Hltnp "( sport = :${KAFKA_BOOTSTRAP_SERVERS##*:} )" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1; }
PG_STARTED="$(pg_started)"
KAFKA_PID="$(kafka_pid)"

psql_admin "CREATE DATABASE $SCRATCH_DB"
export TOPIC_PREFIX="$RUN_ID" KAFKA_GROUP_ID="$RUN_ID"
export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:0}" # a free port: never in the way of another processor
say "starting the processor: TOPIC_PREFIX=$TOPIC_PREFIX, database $SCRATCH_DB, log $OUT/processor.log"
TOPICS_LEFT=1
DATABASE_URL="$PROC_URL" LOG_LEVEL="${LOG_LEVEL:-info}" "$AP_BIN" run >"$OUT/processor.log" 2>&1 &
PROC_PID=$!
# More replicas in the same group (BENCH_REPLICAS): the partitions are shared out among them,
# and one relay runs (the relay lock). Memory and thread figures below are the first one's.
EXTRA_PIDS=()
for ((r = 2; r <= ${BENCH_REPLICAS:-1}; r++)); do
    DATABASE_URL="$PROC_URL" LOG_LEVEL="${LOG_LEVEL:-info}" "$AP_BIN" run >"$OUT/processor-$r.log" 2>&1 &
    EXTRA_PIDS+=($!)
done
# Partitions each group member holds now, from the processors' logs: "<member> <count>" for
# every member that holds some (assigned minus revoked, by the Kafka client named at the end
# of each line).
holdings() {
    cat "$OUT/processor.log" "$OUT"/processor-*.log 2>/dev/null |
        awk '/kafka: assigned/ {n[$NF]++} /kafka: revoked/ {n[$NF]--}
             END {for (m in n) if (n[m] > 0) print m, n[m]}'
}
MEMBERS=$((${BENCH_REPLICAS:-1} * ${CONSUMER_THREADS:-1}))
if [[ "$MEMBERS" -gt 1 ]]; then
    # The run starts once every member (BENCH_REPLICAS processors of CONSUMER_THREADS each)
    # holds a share: each at least one partition, all of them between them (the first takes
    # them all, then gives some up to each newcomer).
    want="${TOPIC_PARTITIONS:-3}"
    for _ in $(seq 1 600); do
        read -r members total < <(holdings | awk '{m++; t += $2} END {print m + 0, t + 0}')
        [[ "$members" == "$MEMBERS" && "$total" == "$want" ]] && break
        sleep 0.1
    done
    [[ "$members" == "$MEMBERS" && "$total" == "$want" ]] ||
        die "the $MEMBERS group members did not share the $want partitions within 60 s"
    say "$MEMBERS group members (${BENCH_REPLICAS:-1} processor(s) of ${CONSUMER_THREADS:-1} consumer thread(s)) share the $want partitions"
fi

# Resident memory every 200 ms: the highest VmRSS seen (VmHWM is read at the end too).
(
    max=0
    while [[ -r /proc/$PROC_PID/status ]]; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PROC_PID/status" 2>/dev/null || echo 0)
        [[ -n "$rss" && "$rss" -gt "$max" ]] && max=$rss && echo "$max" >"$OUT/rss_max_kb"
        sleep 0.2
    done
) &
SAMPLER_PID=$!

# --- 3. bench_e2e ---------------------------------------------------------------------------------
# System calls of the processor's threads during the throughput phase (perf stat counting
# tracepoints: cheap, so always on when perf works): the consumer threads' (ap-consumer-N)
# sendto calls are their round trips to Postgres.
start_count() {
    command -v perf >/dev/null || return 0
    perf stat -x, --per-thread -p "$PROC_PID" -o "$OUT/syscalls.csv" \
        -e syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_poll \
        >"$OUT/perf-stat.log" 2>&1 &
    echo $! >"$OUT/count.pid"
}
stop_count() {
    [[ -f "$OUT/count.pid" ]] || return 0
    local pid
    pid="$(cat "$OUT/count.pid")"
    kill -INT "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$OUT/count.pid"
}

start_perf() {
    command -v perf >/dev/null || { say "perf not found: no profile"; return; }
    perf record -F 999 --call-graph dwarf,16384 -p "$PROC_PID" -o "$OUT/perf-processor.data" \
        >"$OUT/perf-processor.log" 2>&1 &
    echo $! >"$OUT/perf.pids"
    perf record -F 499 -a -g -o "$OUT/perf-all.data" >"$OUT/perf-all.log" 2>&1 &
    echo $! >>"$OUT/perf.pids"
    # The Postgres backends serving the processor (consumer and relay sessions).
    local backends
    backends="$(psql_admin "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
                            WHERE datname = '$SCRATCH_DB' AND pid <> pg_backend_pid()" || true)"
    if [[ -n "$backends" ]]; then
        perf record -F 999 --call-graph dwarf,16384 -p "$backends" -o "$OUT/perf-pg.data" \
            >"$OUT/perf-pg.log" 2>&1 &
        echo $! >>"$OUT/perf.pids"
    fi
}
stop_perf() {
    [[ -f "$OUT/perf.pids" ]] || return 0
    local pid
    while read -r pid; do kill -INT "$pid" 2>/dev/null || true; done <"$OUT/perf.pids"
    while read -r pid; do while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; done <"$OUT/perf.pids"
}

say "running bench_e2e ${*:-(defaults)}; output also in $OUT/bench.log"
set +e
BENCH_LATENCY_CSV="$OUT/latency.csv" BENCH_PROCESSOR_PID="$PROC_PID" DATABASE_URL="$PROC_URL" \
    "$BENCH_BIN" "$@" 2>&1 |
    tee "$OUT/bench.log" |
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
        "phase: throughput start")
            start_count
            [[ "${PROFILE:-}" == 1 ]] && start_perf ;;
        "phase: throughput end")
            stop_count
            [[ "${PROFILE:-}" == 1 ]] && stop_perf ;;
        esac
    done
BENCH_RC=${PIPESTATUS[0]}
set -e
stop_count
[[ "${PROFILE:-}" == 1 ]] && stop_perf

status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PROC_PID/status" 2>/dev/null || true; }
HWM_KB="$(status_kb VmHWM)"
RSS_END_KB="$(status_kb VmRSS)"
kill -0 "$PROC_PID" 2>/dev/null || say "the processor exited during the run (see $OUT/processor.log)"

# Stop the processors (SIGTERM: each finishes, commits and leaves its group), then the topics.
for pid in "$PROC_PID" "${EXTRA_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "processor $pid did not stop within 30 s of SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
done
EXTRA_PIDS=()
PROC_PID=""
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
"$DELETE_TOPICS_BIN" "$TOPIC_PREFIX" || say "could not delete the topics of $TOPIC_PREFIX"
TOPICS_LEFT=""
drop_db "$SCRATCH_DB"

# --- 4. pgbench -----------------------------------------------------------------------------------
num() { grep -oP "$1" "$OUT/bench.log" | head -n 1; }
CMDS_PER_S="$(num 'events read [0-9.]+ s after the first command: \K[0-9]+(?= commands/s)' || true)"
# The long run: its last round's throughput stands for the run.
[[ -z "$CMDS_PER_S" ]] && CMDS_PER_S="$(num 'last round \K[0-9]+(?= commands/s)' || true)"
EVENTS_PER_S="$(num '[0-9]+(?= events/s end-to-end)' || true)"
THR_SECONDS="$(num 'events read \K[0-9.]+(?= s after)' || true)"
PGB_SECONDS="${PGBENCH_SECONDS:-$(awk -v s="${THR_SECONDS:-0}" 'BEGIN {s = int(s + 0.999); print (s < 10 ? 10 : s)}')}"
PGB_CLIENTS="${PGBENCH_CLIENTS:-2}"
PGB_SCALE="${PGBENCH_SCALE:-1}"
PGB_URL="$(url_with_db "$DATABASE_URL" "$PGBENCH_DB")"
psql_admin "CREATE DATABASE $PGBENCH_DB"
say "pgbench -N: scale $PGB_SCALE, $PGB_CLIENTS clients, $PGB_SECONDS s"
"$PGBIN/pgbench" -i -q -s "$PGB_SCALE" "$PGB_URL" >"$OUT/pgbench-init.log" 2>&1 ||
    { cat "$OUT/pgbench-init.log" >&2; die "pgbench -i failed"; }
PGB_RC=0
"$PGBIN/pgbench" -N -c "$PGB_CLIENTS" -j "$PGB_CLIENTS" -T "$PGB_SECONDS" "$PGB_URL" \
    >"$OUT/pgbench.log" 2>&1 || PGB_RC=$?
PGB_TPS="$(grep -oP 'tps = \K[0-9]+(?=[0-9.]* \(without initial connection time\))' "$OUT/pgbench.log" | head -n 1)"
if [[ "$PGB_RC" != 0 ]]; then
    say "pgbench failed (exit $PGB_RC): $(grep -m 2 -E 'error|FATAL' "$OUT/pgbench.log" | tr '\n' ' ')"
    PGB_TPS="${PGB_TPS:+$PGB_TPS (INCOMPLETE: pgbench failed)}"
fi
drop_db "$PGBENCH_DB"
RESTARTS=""
[[ "$(pg_started)" != "$PG_STARTED" ]] && RESTARTS+="Postgres restarted during the run; "
[[ "$(kafka_pid)" != "$KAFKA_PID" ]] && RESTARTS+="the Kafka broker restarted during the run; "

# --- 5. the block ---------------------------------------------------------------------------------
if [[ "${PROFILE:-}" == 1 && -f "$OUT/perf-processor.data" ]]; then
    perf report -i "$OUT/perf-processor.data" --no-children --sort dso --stdio -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 15 >"$OUT/profile-dso.txt" || true
    perf report -i "$OUT/perf-processor.data" --no-children --sort dso,symbol --stdio \
        -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 >"$OUT/profile-symbols.txt" || true
    perf report -i "$OUT/perf-processor.data" --children --sort symbol --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 60 >"$OUT/profile-children.txt" || true
    perf report -i "$OUT/perf-processor.data" --no-children --sort comm --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 15 >"$OUT/profile-threads.txt" || true
    perf report -i "$OUT/perf-all.data" --no-children --sort comm,dso --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 25 >"$OUT/profile-machine.txt" || true
    if [[ -f "$OUT/perf-pg.data" ]]; then
        # Where the backends' time goes, by the protocol step that led to it (inclusive).
        perf report -i "$OUT/perf-pg.data" --children --sort symbol --stdio -g none 2>/dev/null |
            grep -v '^#' | grep -E 'exec_|PostgresMain|Commit|Parse|Bind|Portal|Execute|pq_|secure_|sendto|recvfrom|epoll|XLog|Savepoint|ReleaseSavepoint|DefineSavepoint|planner|pg_plan|parse_analyze|raw_parser|heap_insert|ExecInsert|ExecUpdate|index_insert|pgstat|AtEOSubXact|AtEOXact' |
            head -n 40 >"$OUT/profile-pg.txt" || true
    fi
fi

# sendto/recvfrom/poll per command: the consumer threads, and the other threads together
# (perf stat names a thread <comm>-<tid>).
SYSCALLS=""
N_THR="$(num 'throughput: \K[0-9]+(?= commands \()' || true)"
if [[ -s "$OUT/syscalls.csv" && -n "$N_THR" ]]; then
    SYSCALLS="$(awk -F, -v n="$N_THR" '
        NF >= 4 && $4 ~ /^syscalls:/ {
            ev = $4; sub(/.*sys_enter_/, "", ev)
            c = ($2 ~ /^[0-9]+$/) ? $2 : 0
            if ($1 ~ /^ap-consumer-/) main[ev] += c; else other[ev] += c
        }
        END {
            printf "consumer threads %.2f sendto, %.2f recvfrom, %.2f poll; other threads %.2f sendto, %.2f recvfrom, %.2f poll",
                main["sendto"] / n, main["recvfrom"] / n, main["poll"] / n,
                other["sendto"] / n, other["recvfrom"] / n, other["poll"] / n
        }' "$OUT/syscalls.csv")"
fi

# Where the latency went: send -> the relay's produce call (the event's Kafka timestamp, whole
# milliseconds of the wall clock) and from there -> the event read, p50 and p99 of each.
SPLIT=""
if [[ -s "$OUT/latency.csv" ]]; then
    # Columns seq,first_event,sent_ms,latency_ms,relayed_ms; -1 where there is no value.
    awk -F, 'NR > 1 && $4 >= 0 && $5 > -1 {print $5 >"/dev/stderr"; print $4 - $5}' \
        "$OUT/latency.csv" >"$OUT/split-read.txt" 2>"$OUT/split-relay.txt"
    q() { sort -g "$1" | awk -v q="$2" '{v[NR] = $1} END {i = int(q * NR); if (i < 1) i = 1; printf "%.1f", v[i]}'; }
    [[ -s "$OUT/split-relay.txt" ]] &&
        SPLIT="send -> relay's produce call p50 $(q "$OUT/split-relay.txt" 0.5) ms, p99 $(q "$OUT/split-relay.txt" 0.99) ms; then -> event read p50 $(q "$OUT/split-read.txt" 0.5) ms, p99 $(q "$OUT/split-read.txt" 0.99) ms (event timestamps: +-1 ms)"
fi

# The broker's GC pauses in each latency phase: a pause stalls every request the broker holds,
# so the commands in flight during one are counted apart, with the p99 of the others. The local
# broker logs its pauses (deploy/local/services.sh); BENCH_KAFKA_GC_LOG names another log.
GC_LINES=()
GC_LOG="${BENCH_KAFKA_GC_LOG:-}"
if [[ -z "$GC_LOG" ]]; then
    for f in "$ROOT/.local/kafka-container/gc.log" "$ROOT/.local/kafka/gc.log"; do
        [[ -f "$f" && ( -z "$GC_LOG" || "$f" -nt "$GC_LOG" ) ]] && GC_LOG="$f"
    done
fi
if [[ -n "$GC_LOG" && -f "$GC_LOG" ]]; then
    # The current file and its rotated predecessors; timestamps of one width sort as text.
    grep -h ' Pause ' "$GC_LOG" "$GC_LOG".[0-9]* 2>/dev/null | sort -u >"$OUT/broker-gc-pauses.txt" || true
    while IFS='|' read -r label start; do
        csv="$OUT/latency.csv"
        [[ "$label" == "probe "* ]] && csv="$OUT/latency-probe${label#probe }.csv"
        [[ "$label" == "settled probe "* ]] && csv="$OUT/latency-probe${label#settled probe }-settled.csv"
        [[ -s "$csv" ]] || continue
        line="$(awk -v t0="$start" -v others="$OUT/gc-others.txt" -f "$ROOT/tests/bench/broker_gc.awk"             "$OUT/broker-gc-pauses.txt" "$csv")"
        [[ -s "$OUT/gc-others.txt" ]] &&
            line+="; p99 of the others $(sort -g "$OUT/gc-others.txt" | awk '{v[NR] = $1} END {i = int(0.99 * NR); if (i < 1) i = 1; printf "%.1f", v[i]}') ms"
        GC_LINES+=("$label: $line")
        rm -f "$OUT/gc-others.txt"
    done < <(sed -n 's/^phase: \(.*\) start at \([0-9.]*\) s since the epoch$/\1|\2/p' "$OUT/bench.log")
    [[ ${#GC_LINES[@]} -gt 0 ]] && GC_LINES[-1]+=" (log: $GC_LOG)"
else
    GC_LINES=("no GC log from the broker (deploy/local/services.sh restart kafka starts one)")
fi

mib() { awk -v k="${1:-}" 'BEGIN {if (k == "") print "?"; else printf "%.1f", k / 1024}'; }
RSS_MAX_KB="$(cat "$OUT/rss_max_kb" 2>/dev/null || true)"
pg_setting() { psql_admin "SHOW $1" 2>/dev/null || echo "?"; }
verdict() { if awk "BEGIN {exit !($1)}" 2>/dev/null; then echo "met"; else echo "NOT met"; fi; }
P99="$(num 'worst probe p99 \K[0-9.]+(?= ms)' || num 'p99 \K[0-9.]+(?= ms)' || true)"
RATIO="$(awk -v a="${CMDS_PER_S:-0}" -v b="${PGB_TPS%% *}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "?"}')"
ENVSET=""
for v in BATCH_MAX_MESSAGES BATCH_MAX_WAIT_MS BACKPRESSURE_MAX_ROWS BACKPRESSURE_MAX_AGE_MS TOPIC_PARTITIONS CONSUMER_THREADS BENCH_REPLICAS; do
    ENVSET+=" $v=${!v:-(default)}"
done
ENVSET+="$(env | { grep -E '^KAFKA_' || true; } | { grep -vE '^KAFKA_(BOOTSTRAP_SERVERS|GROUP_ID)=' || true; } | sort | sed 's/^/ /' | tr -d '\n')"

{
    echo
    echo "==================== allocation-processor end-to-end benchmark ===================="
    echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '? (not a git checkout)')$(git diff --quiet HEAD -- processor include CMakeLists.txt 2>/dev/null || echo ' + uncommitted changes')"
    echo "machine:     $(nproc) CPU(s), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/^Mem:/ {print $2}') GiB; Kafka, Postgres, processor and benchmark on it"
    echo "before:      machine ${BUSY_BEFORE}% busy (of $(( $(nproc) * 100 ))%) over 3 s before the processor started${OTHERS:+; busiest: $OTHERS}"
    echo "postgres:    $("$PGBIN/postgres" --version | awk '{print $3}'), synchronous_commit=$(pg_setting synchronous_commit), fsync=$(pg_setting fsync), shared_buffers=$(pg_setting shared_buffers), max_wal_size=$(pg_setting max_wal_size)"
    echo "processor:   $AP_BIN (Release, -g -fno-omit-frame-pointer);$ENVSET"
    echo "command:     ${BENCH_MIX:+BENCH_MIX=$BENCH_MIX }${BENCH_MILLIONS:+BENCH_MILLIONS=$BENCH_MILLIONS }${BENCH_ROUND:+BENCH_ROUND=$BENCH_ROUND }${BENCH_SETTLE_S:+BENCH_SETTLE_S=$BENCH_SETTLE_S }tests/bench/run_bench.sh ${*}"
    echo "mix:         ${BENCH_MIX:-simple}$([[ -n "${BENCH_MILLIONS:-}" ]] && echo "; long run of $BENCH_MILLIONS rounds")"
    echo "load:        $LOAD_BEFORE at the start; $(uptime | sed 's/.*load average/load average/') at the end"
    echo "--- bench_e2e (exit $BENCH_RC)"
    grep -v '^  t=' "$OUT/bench.log" | grep -v '^phase: '
    echo "--- pgbench"
    echo "pgbench -N (simple-update), scale $PGB_SCALE, $PGB_CLIENTS clients, $PGB_SECONDS s, same server: ${PGB_TPS:-?} tps"
    echo "--- summary"
    echo "end-to-end:  ${CMDS_PER_S:-?} commands/s (${EVENTS_PER_S:-?} events/s) vs pgbench -N ${PGB_TPS:-?} tps: ratio ${RATIO}"
    [[ -n "$SPLIT" ]] && echo "split:       $SPLIT"
    for line in "${GC_LINES[@]}"; do echo "broker gc:   $line"; done
    [[ -n "$SYSCALLS" ]] && echo "syscalls:    processor per command in the throughput phase: $SYSCALLS"
    echo "memory:      processor VmHWM $(mib "$HWM_KB") MiB, VmRSS max sampled $(mib "$RSS_MAX_KB") MiB, at the end $(mib "$RSS_END_KB") MiB"
    echo "targets:     >= 30000 commands/s: $(verdict "${CMDS_PER_S:-0} >= 30000") (${CMDS_PER_S:-?});" \
        ">= 8 x pgbench -N: $(verdict "${RATIO/\?/0} >= 8") (${RATIO});" \
        "p99 <= 10 ms at the offered rate: $(verdict "${P99:-1e9} <= 10") (${P99:-?} ms);" \
        "RSS <= 64 MiB: $(verdict "${HWM_KB:-1e12} <= 65536") ($(mib "$HWM_KB") MiB VmHWM)"
    if [[ "${PROFILE:-}" == 1 && -s "$OUT/profile-dso.txt" ]]; then
        echo "--- perf, processor during the throughput phase, self time by module ($OUT/perf-processor.data)"
        cat "$OUT/profile-dso.txt"
        echo "--- perf, processor, self time by thread"
        cat "$OUT/profile-threads.txt"
        echo "--- perf, processor, top symbols (self)"
        head -n 25 "$OUT/profile-symbols.txt"
        echo "--- perf, whole machine by process and module"
        cat "$OUT/profile-machine.txt"
        if [[ -s "$OUT/profile-pg.txt" ]]; then
            echo "--- perf, the processor's Postgres backends, inclusive time of selected functions"
            cat "$OUT/profile-pg.txt"
        fi
    fi
    [[ -n "$RESTARTS" ]] && echo "WARNING:     ${RESTARTS}these numbers are not trustworthy"
    echo "logs:        $OUT"
    echo "==================================================================================="
} | tee "$OUT/summary.txt"
[[ "$BENCH_RC" == 0 && "$PGB_RC" == 0 && -z "$RESTARTS" ]] || exit 1
