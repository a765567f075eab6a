#!/usr/bin/env bash
# The fault test: a seeded stream of ~21,000 commands over 200 skus flows
# in while the processor is killed with SIGKILL three times, a second group member joins and
# leaves gracefully, and Postgres restarts under the running processor. Afterwards Postgres
# (write model and read model) and every event topic must equal what tests/model/model.py, an
# independent model of docs/domain.md, computes from the same stream: every command applied
# exactly once, every event delivered in per-sku order, re-deliveries only as exact repeats
# with the same event-id.
#
# FAULT_SEED=N reproduces a stream (and the random parts of the fault timing);
# FAULT_COMMANDS=N changes its length (default 21000); FAULT_KEEP=1 keeps the work folder
# (logs, dumps) of a passing run too.
source "$(dirname "$0")/lib.sh"
require_services
# A command that fails outside a condition ends the test: say which (also inside functions).
set -E
trap 'echo "FAIL: fault.sh line $LINENO: \"$BASH_COMMAND\" failed (work dir $WORK_DIR)" >&2' ERR

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODEL="$HERE/../model/model.py"
SEED="${FAULT_SEED:-$(((RANDOM << 15) | RANDOM))}"
RANDOM=$SEED
COMMANDS="${FAULT_COMMANDS:-21000}"
SKUS=200
STREAM="$WORK_DIR/commands.tsv"
# One build for the whole run, even if the binary is rebuilt meanwhile.
cp "$AP_BIN" "$WORK_DIR/allocation-processor"
AP_BIN="$WORK_DIR/allocation-processor"

# Killed members must leave the group fast (KAFKA_<NAME> pass-through to librdkafka). Six
# partitions, so that two members both get some.
export KAFKA_SESSION_TIMEOUT_MS=6000 KAFKA_HEARTBEAT_INTERVAL_MS=1000 TOPIC_PARTITIONS=6

# Member A is lib.sh's PROCESSOR_PID, killed and restarted; member B (start_member) joins
# and leaves.
INCARNATION=0
KILLS=0


echo "fault test: seed $SEED (FAULT_SEED=$SEED reproduces the stream), work dir $WORK_DIR"
python3 "$MODEL" selftest
python3 "$MODEL" generate --seed "$SEED" --prefix "$RUN_ID" --skus "$SKUS" --commands "$COMMANDS" >"$STREAM"
TOTAL=$(wc -l <"$STREAM")

# produce_lines FROM TO: lines FROM..TO of the stream (1-based, inclusive) to the command topic.
PRODUCED=0
produce_lines() {
    sed -n "${1},${2}p" "$STREAM" | produce_keyed || fail "kcat could not produce commands $1..$2"
    PRODUCED=$2
    note "produced commands $1..$2"
}
# The stream's chunk boundaries, as fractions of it.
at() { echo $((TOTAL * $1 / 100)); }

# Member A is lib.sh's processor (PROCESSOR_PID), one log per incarnation; member B is ours.
start_a() {
    local t0=$SECONDS
    INCARNATION=$((INCARNATION + 1))
    PROCESSOR_LOG="$WORK_DIR/member-a$INCARNATION.log"
    start_processor
    note "member A (incarnation $INCARNATION, pid $PROCESSOR_PID) owns partitions after $((SECONDS - t0))s"
}

kill_a() {
    read_committed
    stop_processor KILL
    KILLS=$((KILLS + 1))
    note "kill -9 of member A #$KILLS with $COMMITTED of $PRODUCED records committed"
}

# fail_b MESSAGE: fail, showing member B's log as well as A's.
fail_b() {
    echo "--- last lines of member B's log (${MEMBER_LOG[B]}):" >&2
    tail -n 40 "${MEMBER_LOG[B]}" >&2
    fail "$1"
}

member_b_owns_partitions() {
    member_alive B || fail_b "member B exited early"
    [[ -n "$(owned_partitions "${MEMBER_LOG[B]}")" ]] # its lag series on /metrics
}

start_b() {
    local t0=$SECONDS
    start_member B
    wait_for "member B to own partitions (log ${MEMBER_LOG[B]})" 60 member_b_owns_partitions
    note "member B (pid ${MEMBER_PID[B]}) joined and owns partitions after $((SECONDS - t0))s"
}

stop_b() {
    local rc=0 deadline=$((SECONDS + 30))
    kill -TERM "${MEMBER_PID[B]}"
    while member_alive B; do
        ((SECONDS < deadline)) || fail_b "member B did not stop within 30s of SIGTERM"
        sleep 0.1
    done
    wait "${MEMBER_PID[B]}" || rc=$?
    MEMBER_PID[B]=""
    [[ $rc -eq 0 ]] || fail_b "member B exited with $rc after SIGTERM, expected 0"
    note "member B left the group (SIGTERM, exit 0)"
}

alive() {
    if [[ -n "$PROCESSOR_PID" ]]; then
        kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "member A died (log $PROCESSOR_LOG)"
    fi
    if [[ -n "${MEMBER_PID[B]:-}" ]]; then
        member_alive B || fail_b "member B died"
    fi
}

# read_committed: COMMITTED = lib.sh's committed_records, waiting while Postgres is away.
COMMITTED=0
committed_or_nothing() { COMMITTED=$(committed_records 2>/dev/null) && [[ -n "$COMMITTED" ]]; }
read_committed() { wait_for "Postgres to answer" 60 committed_or_nothing; }

# Progress: the records committed reach N (capped at what was produced, so always reachable).
alive_and_committed() { alive && committed_at_least "$1"; }
progress() { # progress DESCRIPTION SECONDS N
    local n=$3
    ((n <= PRODUCED)) || n=$PRODUCED
    wait_for "$1 (at least $n records committed)" "$2" alive_and_committed "$n"
}
# A random point between FROM% and TO% of the stream.
somewhere() { echo $((TOTAL * ($1 + RANDOM % ($2 - $1 + 1)) / 100)); }
jitter() { sleep "0.$((RANDOM % 10))"; }

# 1. The processor creates the topics (kcat would make a one-partition command topic) and
# stops; the first chunk (all the batches and the start of the mix) arrives while it is down.
start_a
stop_processor TERM
[[ "$(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -t "$COMMAND_TOPIC" -J | jq '.topics[0].partitions | length')" -eq 6 ]] ||
    fail "the processor did not create $COMMAND_TOPIC with TOPIC_PARTITIONS=6 partitions"
produce_lines 1 "$(at 35)"
start_a
progress "the first records" 90 "$(somewhere 8 20)"
jitter
kill_a

# 2. More commands while it is down; it comes back, and a second member joins while it
# works through the backlog.
produce_lines $(($(at 35) + 1)) "$(at 50)"
start_a
start_b
produce_lines $(($(at 50) + 1)) "$(at 70)"

# 3. A is killed while two members share the partitions; B goes on with its own and takes
# A's over when A's session times out; A comes back.
read_committed
progress "both members applying" 90 $((COMMITTED + 800))
jitter
kill_a
read_committed
progress "member B alone" 90 $((COMMITTED + 300))
start_a

# 4. B leaves gracefully while commands flow.
produce_lines $(($(at 70) + 1)) "$(at 80)"
read_committed
progress "two members again" 90 $((COMMITTED + 300))
stop_b

# 5. A last kill in the middle of a chunk, and more commands while it is down.
produce_lines $(($(at 80) + 1)) "$(at 90)"
read_committed
progress "member A on the new chunk" 90 $((COMMITTED + 300))
jitter
kill_a
produce_lines $(($(at 90) + 1)) "$(at 95)"
start_a

# 6. Postgres restarts under the running processor in the middle of the last chunk: this
# incarnation must ride it out and finish the stream, consuming and relaying, by itself.
produce_lines $(($(at 95) + 1)) "$TOTAL"
read_committed
progress "member A on the last chunk" 90 $((COMMITTED + 100))
read_committed
note "restarting Postgres with $COMMITTED of $PRODUCED records committed"
"$REPO/deploy/local/services.sh" restart pg >>"$WORK_DIR/pg-restart.log" 2>&1 ||
    fail "deploy/local/services.sh restart pg failed: $(tail -n 5 "$WORK_DIR/pg-restart.log")"
note "Postgres is back"
# (lib.sh's all_records_committed, tolerating a broker that does not answer for a moment.)
all_committed() {
    local produced
    alive
    produced=$(produced_records 2>/dev/null) || return 1
    [[ -n "$produced" && "$(committed_records 2>/dev/null)" == "$produced" ]]
}
wait_for "every record committed" 150 all_committed
wait_for "the outbox to drain" 60 outbox_empty
note "all $TOTAL records committed and the outbox empty; member A's log says of Postgres:"
grep -E "warn|error" "$PROCESSOR_LOG" | grep -E " pg: | consumer: .*(retry|Postgres)| relay: " | grep -v "rejected (" |
    sed 's/^/    /' | head -n 12 || true
stop_processor TERM
note "member A stopped (SIGTERM, exit 0)"

for log in "$WORK_DIR"/member-*.log; do
    if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log"; then
        grep -E -A 30 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log" | head -n 60 >&2
        fail "a sanitizer report in $log"
    fi
done

# 7. Dump what the processor made, and compare with the model.
dump="$WORK_DIR/dump"
mkdir -p "$dump/events"
# from_pg FILE QUERY: the rows as tab-separated lines, retried while Postgres is away.
from_pg() {
    local deadline=$((SECONDS + 60))
    until psql "$DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -F $'\t' -c "$2" >"$1" 2>"$WORK_DIR/psql.err"; do
        ((SECONDS < deadline)) || fail "query for $1 failed: $(cat "$WORK_DIR/psql.err")"
        sleep 1
    done
}
like="'$RUN_ID-%'"
from_pg "$dump/products.tsv" "select sku, version_number from products where sku like $like order by sku"
from_pg "$dump/batches.tsv" "select reference, sku, purchased_quantity, coalesce(eta::text, '') from batches
    where reference like $like or sku like $like order by id"
from_pg "$dump/allocations.tsv" "select b.reference, a.orderid, a.qty from allocations a
    join batches b on b.id = a.batch_id where b.reference like $like or b.sku like $like order by a.id"
from_pg "$dump/view.tsv" "select orderid, sku, batchref from allocations_view
    where orderid like $like or sku like $like order by id"
# Kafka reads are retried: a broker that does not answer for a moment is not our subject here.
# from_kafka FILE TOPIC FORMAT: every message of TOPIC so far, with kcat -f FORMAT.
from_kafka() {
    local deadline=$((SECONDS + 60))
    until topic_lines "$2" "$3" >"$1"; do
        ((SECONDS < deadline)) || fail "could not read $2 from Kafka"
        sleep 1
    done
}
from_kafka "$dump/command_topic.tsv" "$COMMAND_TOPIC" '%p\t%o\t%k\t%s\n'
from_kafka "$dump/dead_letters" "$TOPIC_PREFIX.dead_letter" '%o\n'
wc -l <"$dump/dead_letters" >"$dump/dead_letter.count"
# Events with partition, offset, key and headers (event-id, causation-id), values framed for
# `allocation-processor decode`, which model.py runs (lib.sh's events_with_ids, in one read).
for event in batch_created batch_quantity_changed allocated deallocated out_of_stock command_rejected; do
    from_kafka "$dump/events/$event.bin" "$TOPIC_PREFIX.events.$event" '%p\t%o\t%k\t%h\n%R%s'
done

note "checking against the model"
python3 "$MODEL" check --prefix "$RUN_ID" --commands "$STREAM" --dump "$dump" --decoder "$AP_BIN" \
    >"$WORK_DIR/check.txt" 2>&1 ||
    { cat "$WORK_DIR/check.txt"; fail "Postgres or Kafka differ from the model (seed $SEED; dump in $dump)"; }
cat "$WORK_DIR/check.txt"
echo "fault test: $TOTAL commands, $KILLS kills -9, a second member joined and left, one Postgres restart; $((SECONDS - STARTED))s"
if [[ -n "${FAULT_KEEP:-}" ]]; then
    echo "PASS: $(basename "$0") (work folder kept: $WORK_DIR)"
else
    pass
fi
