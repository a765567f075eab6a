#!/usr/bin/env bash
# Usage: tests/chaos/run.sh
#
# Chaos at scale: the fault test (tests/e2e/fault.sh) made long. A seeded stream of 100,000
# commands over 1,000 skus flows in, chunk by chunk, while a schedule of faults runs: the
# processor (member A) killed with SIGKILL ten times or more, Postgres crashed twice
# (`pg_ctl stop -m immediate`, then started: crash recovery), the Kafka broker killed with
# SIGKILL twice and started again on its data, and three rounds of members B and C joining
# and leaving the group. Each fault comes at a random point of a chunk, so commands are in
# flight. Afterwards Postgres and every event topic are compared with tests/model/model.py,
# as fault.sh does: the read model equal, every event delivered in per-sku order, re-deliveries
# only as exact repeats with the same event-id, no command applied twice (product versions).
#
# It restarts the checkout's own services (deploy/local/services.sh, with the AP_*_PORT
# variables of the caller): never run it beside tests that use them. A script, not a CI test;
# CI runs the short fault.sh. It takes about 10-20 minutes on two cores.
#
# Environment: the e2e tests' (AP_BIN, AP_TOOLS, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS), by
# default build/ci's binaries and the services of `deploy/local/services.sh env` (its
# allocation_test database); CHAOS_SEED=N reproduces a stream and the fault timing; CHAOS_COMMANDS (100000) and
# CHAOS_SKUS (1000) change its size; CHAOS_KEEP=1 keeps the work folder of a passing run.
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICES="$ROOT/deploy/local/services.sh"
# The e2e tests' environment, defaulting to the sanitizer build deploy/local/test makes and the
# checkout's services.
if [[ -z "${DATABASE_URL:-}" || -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    eval "$("$SERVICES" env)"
    export DATABASE_URL="$TEST_DATABASE_URL" KAFKA_BOOTSTRAP_SERVERS
fi
export AP_BIN="${AP_BIN:-$ROOT/build/ci/allocation-processor}" AP_TOOLS="${AP_TOOLS:-$ROOT/build/ci/tests}"
source "$ROOT/tests/e2e/lib.sh"
require_services
set -E
trap 'echo "FAIL: run.sh line $LINENO: \"$BASH_COMMAND\" failed (work dir $WORK_DIR)" >&2' ERR
source "$ROOT/tests/e2e/lib_fault.sh"

SEED="${CHAOS_SEED:-$(((RANDOM << 15) | RANDOM))}"
RANDOM=$SEED
COMMANDS="${CHAOS_COMMANDS:-100000}"
SKUS="${CHAOS_SKUS:-1000}"
STREAM="$WORK_DIR/commands.tsv"
# Twelve partitions, so that three members all get some.
export TOPIC_PARTITIONS=12

# The schedule: one fault per chunk of the stream, after the first chunk (the batches).
SCHEDULE=(kill pg kill join:B kill kafka kill leave:B kill join:C kill pg
          join:B kill leave:C kafka kill join:C kill leave:B leave:C kill kill)
PG_CRASHES=0
BROKER_KILLS=0
JOINS=0
LEAVES=0

echo "chaos: seed $SEED (CHAOS_SEED=$SEED reproduces it), $COMMANDS commands over $SKUS skus, work dir $WORK_DIR"
echo "chaos: load at the start: $(uptime)"
python3 "$MODEL" generate --seed "$SEED" --prefix "$RUN_ID" --skus "$SKUS" --commands "$COMMANDS" >"$STREAM"
TOTAL=$(wc -l <"$STREAM")
# The first chunk holds every sku's first batches; the rest is cut into one chunk per fault.
FIRST=$((TOTAL / 10))
CHUNK=$(((TOTAL - FIRST + ${#SCHEDULE[@]} - 1) / ${#SCHEDULE[@]}))

# service_crash pg|kafka: the service crashes; it comes back after 0-4 s, on its data.
service_crash() {
    read_committed
    note "crashing $1 with $COMMITTED of $PRODUCED records committed"
    "$SERVICES" kill "$1" >>"$WORK_DIR/services.log" 2>&1 ||
        fail "deploy/local/services.sh kill $1 failed: $(tail -n 5 "$WORK_DIR/services.log")"
    sleep "$((RANDOM % 5)).$((RANDOM % 10))" # the outage: every member keeps running through it
    "$SERVICES" start "$1" >>"$WORK_DIR/services.log" 2>&1 ||
        fail "deploy/local/services.sh start $1 failed: $(tail -n 5 "$WORK_DIR/services.log")"
    note "$1 is back"
}

# fault STEP: one step of the schedule.
fault() {
    case "$1" in
        kill) kill_a ;;
        pg) service_crash pg; PG_CRASHES=$((PG_CRASHES + 1)) ;;
        kafka) service_crash kafka; BROKER_KILLS=$((BROKER_KILLS + 1)) ;;
        join:*) join "${1#join:}"; JOINS=$((JOINS + 1)) ;;
        leave:*) leave "${1#leave:}"; LEAVES=$((LEAVES + 1)) ;;
        *) fail "unknown step $1 in the schedule" ;;
    esac
}

# 1. The processor creates the topics, then the first chunk flows in.
start_a
stop_processor TERM
[[ "$(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -t "$COMMAND_TOPIC" -J | jq '.topics[0].partitions | length')" -eq 12 ]] ||
    fail "the processor did not create $COMMAND_TOPIC with TOPIC_PARTITIONS=12 partitions"
produce_lines 1 "$FIRST"
start_a

# 2. Per step: the next chunk is produced (member A restarted first when the last step killed
# it, after the chunk when the chunk should meet it down), then the fault comes somewhere
# between 10% and 70% of the chunk's records committed.
for step in "${SCHEDULE[@]}"; do
    from=$((PRODUCED + 1))
    to=$((PRODUCED + CHUNK))
    ((to <= TOTAL)) || to=$TOTAL
    if [[ -z "$PROCESSOR_PID" ]] && ((RANDOM % 2)); then start_a; fi
    ((from > to)) || produce_lines "$from" "$to"
    [[ -n "$PROCESSOR_PID" ]] || start_a
    read_committed
    progress "the chunk before '$step'" 600 $((COMMITTED + (to - from + 1) * (10 + RANDOM % 61) / 100))
    fault "$step"
done

# 3. Everything left finishes on the members still running.
[[ -n "$PROCESSOR_PID" ]] || start_a
((PRODUCED == TOTAL)) || produce_lines $((PRODUCED + 1)) "$TOTAL"
wait_for "every record committed" 900 all_committed
wait_for "the outbox to drain" 300 outbox_empty
note "all $TOTAL records committed and the outbox empty"
for m in "${MEMBERS[@]}"; do
    if member_alive "$m"; then leave "$m"; fi
done
stop_processor TERM
note "member A stopped (SIGTERM, exit 0)"
no_sanitizer_reports

# 4. The model.
model_check "$SEED"
# The figures: events and re-deliveries come from the model's summary.
events=$(grep -o 'kafka: [0-9]* event messages read' "$WORK_DIR/check.txt" | grep -o '[0-9]*')
redelivered=$(grep -o '[0-9]* re-deliveries' "$WORK_DIR/check.txt" | grep -o '[0-9]*')
echo "chaos: $TOTAL commands over $SKUS skus in $((SECONDS - STARTED))s; $KILLS SIGKILLs of member A" \
    "($INCARNATION incarnations), $PG_CRASHES Postgres crash-restarts, $BROKER_KILLS broker SIGKILL-and-restarts," \
    "$JOINS joins and $LEAVES leaves; $events event messages, $redelivered re-deliveries (same event-id, same" \
    "content); every check of the model passed"
echo "chaos: load at the end: $(uptime)"
if [[ -n "${CHAOS_KEEP:-}" ]]; then
    echo "PASS: chaos (work folder kept: $WORK_DIR)"
else
    pass
fi
