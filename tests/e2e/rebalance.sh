#!/usr/bin/env bash
# Rebalances: three processes in one consumer group, partitions moving
# while commands flow. A starts; B joins; C joins; B leaves gracefully (SIGTERM, exit 0);
# C is killed (SIGKILL) and its partitions move once its session times out; C starts again;
# at the end everyone stops with SIGTERM. Afterwards no command was applied twice (the
# counter products' versions count ChangeBatchQuantity applications), none was skipped
# (every allocation is there, the stored offsets equal what was produced), and the
# partitions really moved (each member's /metrics showed the partitions it owned, each one
# applied some).
source "$(dirname "$0")/lib.sh"
require_services
export LOG_FORMAT=text TOPIC_PARTITIONS=6
# A killed member holds its partitions until its session times out: keep that short.
export KAFKA_SESSION_TIMEOUT_MS=6000 KAFKA_HEARTBEAT_INTERVAL_MS=1000


SKUS=120        # products receiving allocations, one batch each
COUNTERS=12     # products whose batch only receives ChangeBatchQuantity
COMMANDS=6000   # the stream after the CreateBatch commands; every 5th is a quantity change
CHUNK=100       # commands per kcat call
CHUNKS=$((COMMANDS / CHUNK))

# --- the members --------------------------------------------------------------------------------
# A member is a name (A, B, C, C2: C's second life), a pid and a log of its own (lib.sh's
# start_member).
PRODUCER_PID=""

fail() {
    echo "FAIL: $*" >&2
    local m
    for m in "${MEMBERS[@]}"; do
        echo "--- last lines of member $m's log (${MEMBER_LOG[$m]}):" >&2
        tail -n 25 "${MEMBER_LOG[$m]}" >&2
    done
    exit 1
}

trap finish EXIT


# stop_member NAME SIGNAL: TERM must end in exit code 0 within 30 s.
stop_member() {
    local m=$1 signal=$2 rc=0 deadline=$((SECONDS + 30))
    kill "-$signal" "${MEMBER_PID[$m]}"
    # (stderr aside while it ends: bash would report a SIGKILL as "Killed")
    {
        while kill -0 "${MEMBER_PID[$m]}" && ((SECONDS < deadline)); do sleep 0.1; done
    } 2>/dev/null
    ! kill -0 "${MEMBER_PID[$m]}" 2>/dev/null || fail "member $m did not stop within 30 s of SIG$signal"
    { wait "${MEMBER_PID[$m]}" || rc=$?; } 2>/dev/null
    MEMBER_PID[$m]=""
    if [[ "$signal" == TERM ]]; then
        [[ $rc -eq 0 ]] || fail "member $m exited with $rc after SIGTERM, expected 0"
    fi
    note "member $m stopped with SIG$signal (exit $rc)"
}

# owned NAME: the command topic's partitions the member holds now, from its /metrics: a member
# has an allocation_consumer_lag_messages series for each partition it owns, removed on revoke.
owned() {
    owned_partitions "${MEMBER_LOG[$1]}"
}

# settled NAME...: the named members are alive, each holds a partition, and together they
# hold every partition exactly once.
settled() {
    local m all="" owns=()
    for m in "$@"; do
        member_alive "$m" || fail "member $m exited unexpectedly"
        local own
        own=$(owned "$m")
        [[ -n "$own" ]] || return 1
        all+=" $own"
        owns+=("$m:$own")
    done
    [[ "$(tr ' ' '\n' <<<"$all" | grep . | sort -n | paste -sd' ')" == "$(seq 0 $((TOPIC_PARTITIONS - 1)) | paste -sd' ')" ]] || return 1
    printf '%s\n' "${owns[@]}" >>"$WORK_DIR/ownership" # each settled split, for the checks
}

# settled_quiet NAME...: settled, and no member's partitions changed for 3 s (a split can look
# complete while a member is about to lose its partitions in another round).
LAST_SIGNATURE="" LAST_CHANGE=0
settled_quiet() {
    local m signature=""
    for m in "$@"; do
        signature+="$m:$(owned "$m") "
    done
    if [[ "$signature" != "$LAST_SIGNATURE" ]]; then
        LAST_SIGNATURE=$signature LAST_CHANGE=$SECONDS
        return 1
    fi
    settled "$@" && ((SECONDS - LAST_CHANGE >= 3))
}

assignment() {
    local m out=""
    for m in "$@"; do out+="$m: [$(owned "$m")] "; done
    echo "$out"
}

# --- the stream ---------------------------------------------------------------------------------
make_stream

# The stream flows in chunks, one kcat call each, paced; before a gate's chunk it waits until
# the main script has finished the step the gate names, so every step happens while commands
# keep arriving, and commands still arrive after it.
declare -A GATE=([15]=b-joined [27]=c-joined [36]=b-left [48]=c-gone [54]=c-back)
PACE=0.3
progress() { echo "chunk $(chunks_done)/$CHUNKS, $(committed_records) records committed"; }

# --- the run ------------------------------------------------------------------------------------
# A first: it creates the command topic with its 6 partitions.
start_member A
wait_for "A to hold every partition" 60 settled_quiet A
kcat_produce <"$WORK_DIR/creates.tsv" || fail "producing the CreateBatch commands"
producer_loop &
PRODUCER_PID=$!
note "streaming $COMMANDS commands; $(assignment A)"

wait_for "the stream under way" 120 chunks_at_least 6
note "B joins ($(progress))"
start_member B
wait_for "A and B to share the partitions" 60 settled_quiet A B
open_gate b-joined
note "$(assignment A B)"

wait_for "the stream further on" 120 chunks_at_least 18
note "C joins ($(progress))"
start_member C
wait_for "A, B and C to share the partitions" 60 settled_quiet A B C
open_gate c-joined
note "$(assignment A B C)"

wait_for "the stream further on" 120 chunks_at_least 30
note "B leaves gracefully ($(progress))"
stop_member B TERM
wait_for "A and C to take over B's partitions" 60 settled_quiet A C
open_gate b-left
note "$(assignment A C)"

wait_for "the stream further on" 120 chunks_at_least 39
note "C is killed ($(progress))"
stop_member C KILL
wait_for "A to take over C's partitions once C's session times out" 90 settled_quiet A
open_gate c-gone
note "$(assignment A)"

wait_for "the stream further on" 120 chunks_at_least 50
note "C starts again ($(progress))"
start_member C2
wait_for "A and C's second life to share the partitions" 60 settled_quiet A C2
open_gate c-back
note "$(assignment A C2)"

wait_for "the whole stream produced" 180 chunks_at_least "$CHUNKS"
wait "$PRODUCER_PID" || fail "the producer loop failed: $(cat "$WORK_DIR/failed" 2>/dev/null)"
PRODUCER_PID=""
produced=$(produced_records)
[[ "$produced" -eq $((CREATES + COMMANDS)) ]] ||
    fail "precondition: the command topic holds $produced records, $((CREATES + COMMANDS)) were produced (a kcat problem, not the processor's)"
members_alive() { member_alive A || fail "member A exited"; member_alive C2 || fail "member C2 exited"; all_records_committed; }
wait_for "every record committed" 180 members_alive
note "all $produced records committed ($(progress)); stopping everyone"
stop_member A TERM
stop_member C2 TERM

# --- checks -------------------------------------------------------------------------------------
check_applied_once "$SKUS" "$ALLOCS" "$COUNTERS"
[[ "$(committed_records)" -eq "$produced" ]] || fail "stored offsets sum to $(committed_records), $produced produced"

# The partitions moved: A gave some up, every member held some, and each partition's owner
# epoch went up with each claim.
# (The splits each settled wait saw: A with fewer than all partitions once B had joined; B's
# partitions with A and C once B had left.)
all_partitions=$(seq 0 $((TOPIC_PARTITIONS - 1)) | paste -sd' ')
grep -q "^A:" "$WORK_DIR/ownership" && ! grep "^A:" "$WORK_DIR/ownership" | grep -qvx "A:$all_partitions" &&
    fail "A never gave up a partition"
for m in A B C C2; do
    grep -q "^$m:[0-9]" "$WORK_DIR/ownership" || fail "member $m was never seen owning a partition"
done
moved=$(sql "select count(*) from consumer_offsets where group_id = '$KAFKA_GROUP_ID' and topic = '$COMMAND_TOPIC' and owner_epoch > 1")
((moved > 0)) || fail "no partition was ever claimed twice"
# Each member that stopped says how much it applied; every one applied some, together no
# more than there was (C's first life, killed, applied the rest).
sum=0
for m in A B C2; do
    line=$(grep "consumer: stopping: applied=" "${MEMBER_LOG[$m]}" | tail -n 1)
    [[ "$line" =~ applied=([0-9]+) ]] || fail "member $m did not log its stopping line"
    n=${BASH_REMATCH[1]}
    ((n > 0)) || fail "member $m applied no command"
    sum=$((sum + n))
    note "member $m: ${line#*consumer: }; owned: $(grep "^$m:" "$WORK_DIR/ownership" | cut -d: -f2 | uniq | paste -sd'|')"
done
((sum <= produced)) || fail "the members applied $sum commands in all, more than the $produced produced"
note "C's first life (killed) applied the other $((produced - sum)); owner epochs: $(sql "select string_agg(partition || ':' || owner_epoch, ' ' order by partition) from consumer_offsets where group_id = '$KAFKA_GROUP_ID' and topic = '$COMMAND_TOPIC'")"
fenced=$(cat "${MEMBER_LOG[@]}" | grep -c "another consumer owns it now" || true)
note "$fenced fenced commit(s) (a batch of a partition that had moved, abandoned)"

for m in "${MEMBERS[@]}"; do
    if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "${MEMBER_LOG[$m]}"; then
        fail "a sanitizer reported an error in member $m"
    fi
    if grep -qE "^[^ ]+ error " "${MEMBER_LOG[$m]}"; then
        fail "member $m logged errors: $(grep -E "^[^ ]+ error " "${MEMBER_LOG[$m]}" | head -n 3)"
    fi
done
pass
