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
# (logs, dumps) of a passing run too. With CONSUMER_THREADS=N every processor is N group
# members (e2e_fault_threads runs it so).
source "$(dirname "$0")/lib.sh"
require_services
# A command that fails outside a condition ends the test: say which (also inside functions).
set -E
trap 'echo "FAIL: fault.sh line $LINENO: \"$BASH_COMMAND\" failed (work dir $WORK_DIR)" >&2' ERR

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
source "$(dirname "$0")/lib_fault.sh"
SEED="${FAULT_SEED:-$(((RANDOM << 15) | RANDOM))}"
RANDOM=$SEED
COMMANDS="${FAULT_COMMANDS:-21000}"
SKUS=200
STREAM="$WORK_DIR/commands.tsv"
# Six partitions, so that two members both get some.
export TOPIC_PARTITIONS=6

echo "fault test: seed $SEED (FAULT_SEED=$SEED reproduces the stream), work dir $WORK_DIR"
python3 "$MODEL" selftest
python3 "$MODEL" generate --seed "$SEED" --prefix "$RUN_ID" --skus "$SKUS" --commands "$COMMANDS" >"$STREAM"
TOTAL=$(wc -l <"$STREAM")

# The stream's chunk boundaries, as fractions of it.
at() { echo $((TOTAL * $1 / 100)); }

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
join B
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
leave B

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
wait_for "every record committed" 150 all_committed
wait_for "the outbox to drain" 60 outbox_empty
note "all $TOTAL records committed and the outbox empty; member A's log says of Postgres:"
grep -E "warn|error" "$PROCESSOR_LOG" | grep -E " pg: | consumer: .*(retry|Postgres)| relay: " | grep -v "rejected (" |
    sed 's/^/    /' | head -n 12 || true
stop_processor TERM
note "member A stopped (SIGTERM, exit 0)"

no_sanitizer_reports
model_check "$SEED"
echo "fault test: $TOTAL commands, $KILLS kills -9, a second member joined and left, one Postgres restart; $((SECONDS - STARTED))s"
if [[ -n "${FAULT_KEEP:-}" ]]; then
    echo "PASS: $(basename "$0") (work folder kept: $WORK_DIR)"
else
    pass
fi
