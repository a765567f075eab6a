# lib_fault.sh - what the fault test (tests/e2e/fault.sh) and the chaos run (tests/chaos/run.sh)
# share, sourced after lib.sh: group members that are killed, join and leave; progress measured
# in records committed, riding out a Postgres that is away; and the end, where Postgres and
# every event topic are dumped and compared with tests/model/model.py, an independent model of
# docs/domain.md. It does not decide when a fault happens: the scripts do.
#
# The caller sets STREAM (the model's "key<TAB>json" lines) before it calls model_check.

FAULT_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="$FAULT_HERE/../model/model.py"
# One build for the whole run, even if the binary is rebuilt meanwhile.
cp "$AP_BIN" "$WORK_DIR/allocation-processor"
AP_BIN="$WORK_DIR/allocation-processor"

# Killed members must leave the group fast (KAFKA_<NAME> pass-through to librdkafka).
export KAFKA_SESSION_TIMEOUT_MS=6000 KAFKA_HEARTBEAT_INTERVAL_MS=1000

# Member A is lib.sh's PROCESSOR_PID, killed and restarted, one log per incarnation; the others
# (start_member) join and leave.
INCARNATION=0
KILLS=0
PRODUCED=0

# produce_lines FROM TO: lines FROM..TO of the stream (1-based, inclusive) to the command topic;
# kcat rides out a broker that is away (lib.sh's kcat_produce).
produce_lines() {
    sed -n "${1},${2}p" "$STREAM" | kcat_produce 2>>"$WORK_DIR/kcat.err" ||
        fail "kcat could not produce commands $1..$2: $(tail -n 5 "$WORK_DIR/kcat.err")"
    PRODUCED=$2
    note "produced commands $1..$2"
}

start_a() {
    local t0=$SECONDS
    INCARNATION=$((INCARNATION + 1))
    PROCESSOR_LOG="$WORK_DIR/member-a$INCARNATION.log"
    start_processor
    # CONSUMER_THREADS (e2e_fault_threads): A is that many group members in one process.
    local threads
    threads=$(metric allocation_consumer_threads)
    [[ "$threads" == "${CONSUMER_THREADS:-1}" ]] ||
        fail "member A runs $threads consumer threads, not CONSUMER_THREADS=${CONSUMER_THREADS:-1}"
    note "member A (incarnation $INCARNATION, pid $PROCESSOR_PID, $threads consumer thread(s)) owns partitions after $((SECONDS - t0))s"
}

kill_a() {
    read_committed
    stop_processor KILL
    KILLS=$((KILLS + 1))
    note "kill -9 of member A #$KILLS with $COMMITTED of $PRODUCED records committed"
}

# fail_member NAME MESSAGE: fail, showing member NAME's log as well as A's.
fail_member() {
    echo "--- last lines of member $1's log (${MEMBER_LOG[$1]}):" >&2
    tail -n 40 "${MEMBER_LOG[$1]}" >&2
    fail "$2"
}

member_owns_partitions() {
    member_alive "$1" || fail_member "$1" "member $1 exited early"
    grep -q 'listening on' "${MEMBER_LOG[$1]}" || return 1 # not serving /metrics yet
    [[ -n "$(owned_partitions "${MEMBER_LOG[$1]}")" ]]      # its lag series on /metrics
}

# join NAME: member NAME starts and waits until it owns partitions.
join() {
    local t0=$SECONDS
    start_member "$1"
    wait_for "member $1 to own partitions (log ${MEMBER_LOG[$1]})" 90 member_owns_partitions "$1"
    note "member $1 (pid ${MEMBER_PID[$1]}) joined and owns partitions after $((SECONDS - t0))s"
}

# leave NAME: member NAME gets SIGTERM and must leave the group with exit code 0.
leave() {
    local rc=0 deadline=$((SECONDS + 30))
    kill -TERM "${MEMBER_PID[$1]}"
    while member_alive "$1"; do
        ((SECONDS < deadline)) || fail_member "$1" "member $1 did not stop within 30s of SIGTERM"
        sleep 0.1
    done
    wait "${MEMBER_PID[$1]}" || rc=$?
    MEMBER_PID[$1]=""
    [[ $rc -eq 0 ]] || fail_member "$1" "member $1 exited with $rc after SIGTERM, expected 0"
    note "member $1 left the group (SIGTERM, exit 0)"
}

# alive: every member that should run does (A when PROCESSOR_PID is set, the others started).
alive() {
    local m
    if [[ -n "$PROCESSOR_PID" ]]; then
        kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "member A died (log $PROCESSOR_LOG)"
    fi
    for m in "${MEMBERS[@]}"; do
        if [[ -n "${MEMBER_PID[$m]:-}" ]]; then
            member_alive "$m" || fail_member "$m" "member $m died"
        fi
    done
}

# read_committed: COMMITTED = lib.sh's committed_records, waiting while Postgres is away.
COMMITTED=0
committed_or_nothing() { COMMITTED=$(committed_records 2>/dev/null) && [[ -n "$COMMITTED" ]]; }
read_committed() { wait_for "Postgres to answer" 120 committed_or_nothing; }

# progress DESCRIPTION SECONDS N: the records committed reach N (capped at what was produced,
# so always reachable), every member staying alive.
alive_and_committed() { alive && committed_at_least "$1"; }
progress() {
    local n=$3
    ((n <= PRODUCED)) || n=$PRODUCED
    wait_for "$1 (at least $n records committed)" "$2" alive_and_committed "$n"
}

# all_committed: lib.sh's all_records_committed, tolerating a broker or a Postgres that does
# not answer for a moment.
all_committed() {
    local produced
    alive
    produced=$(produced_records 2>/dev/null) || return 1
    [[ -n "$produced" && "$(committed_records 2>/dev/null)" == "$produced" ]]
}

# no_sanitizer_reports: fails on an AddressSanitizer, LeakSanitizer or UBSan report in any
# member's log.
no_sanitizer_reports() {
    local log
    for log in "$WORK_DIR"/member-*.log; do
        if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log"; then
            grep -E -A 30 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log" | head -n 60 >&2
            fail "a sanitizer report in $log"
        fi
    done
}

# model_check SEED: dumps what the processor made (Postgres rows of this run, every message
# of the command topic and the event topics) into $WORK_DIR/dump and compares it with the
# model run over $STREAM; the model's summary goes to $WORK_DIR/check.txt and stdout.
model_check() {
    local dump="$WORK_DIR/dump" like="'$RUN_ID-%'" event
    mkdir -p "$dump/events"
    from_pg "$dump/products.tsv" "select sku, version_number from products where sku like $like order by sku"
    from_pg "$dump/batches.tsv" "select reference, sku, purchased_quantity, coalesce(eta::text, '') from batches
        where reference like $like or sku like $like order by id"
    from_pg "$dump/allocations.tsv" "select b.reference, a.orderid, a.qty from allocations a
        join batches b on b.id = a.batch_id where b.reference like $like or b.sku like $like order by a.id"
    from_pg "$dump/view.tsv" "select orderid, sku, batchref from allocations_view
        where orderid like $like or sku like $like order by id"
    from_kafka "$dump/command_topic.tsv" "$COMMAND_TOPIC" '%p\t%o\t%k\t%s\n'
    from_kafka "$dump/dead_letters" "$TOPIC_PREFIX.dead_letter" '%o\n'
    wc -l <"$dump/dead_letters" >"$dump/dead_letter.count"
    # Events with partition, offset, key and headers (event-id, causation-id), values framed for
    # `allocation-processor decode`, which model.py runs.
    for event in batch_created batch_quantity_changed allocated deallocated out_of_stock command_rejected; do
        from_kafka "$dump/events/$event.bin" "$TOPIC_PREFIX.events.$event" '%p\t%o\t%k\t%h\n%R%s'
    done
    note "checking against the model"
    python3 "$MODEL" check --prefix "$RUN_ID" --commands "$STREAM" --dump "$dump" --decoder "$AP_BIN" \
        >"$WORK_DIR/check.txt" 2>&1 ||
        { cat "$WORK_DIR/check.txt"; fail "Postgres or Kafka differ from the model (seed $1; dump in $dump)"; }
    cat "$WORK_DIR/check.txt"
}

# from_pg FILE QUERY: the rows as tab-separated lines, retried while Postgres is away.
from_pg() {
    local deadline=$((SECONDS + 60))
    until psql "$DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -F $'\t' -c "$2" >"$1" 2>"$WORK_DIR/psql.err"; do
        ((SECONDS < deadline)) || fail "query for $1 failed: $(cat "$WORK_DIR/psql.err")"
        sleep 1
    done
}

# from_kafka FILE TOPIC FORMAT: every message of TOPIC so far, with kcat -f FORMAT; retried,
# since a broker that does not answer for a moment is not the subject here.
from_kafka() {
    local deadline=$((SECONDS + 60))
    until topic_lines "$2" "$3" >"$1"; do
        ((SECONDS < deadline)) || fail "could not read $2 from Kafka"
        sleep 1
    done
}
