# lib.sh - helpers for the end-to-end tests: they drive the built program the way a person
# would (kcat to produce, the CLI and psql to look), against the real Kafka and Postgres.
#
# Every test gets its own topic prefix, consumer group and skus, so tests never see each
# other's data. Waits are polls with deadlines, never bare sleeps.
set -euo pipefail

: "${AP_BIN:?AP_BIN must point to the allocation-processor binary}"
: "${DATABASE_URL:?DATABASE_URL must point to the test database (deploy/local/test sets it)}"
: "${KAFKA_BOOTSTRAP_SERVERS:?KAFKA_BOOTSTRAP_SERVERS must be set (deploy/local/test sets it)}"

RUN_ID="e2e-$(basename "$0" .sh)-$$-$(date +%s%N | tail -c 7)"
export TOPIC_PREFIX="$RUN_ID"
export KAFKA_GROUP_ID="$RUN_ID"
export COMMAND_TOPIC="$RUN_ID.commands"
export LOG_LEVEL="${LOG_LEVEL:-info}"
# Each processor's HTTP API on a free port (tests run side by side); http_base finds it.
export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:0}"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/$RUN_ID.XXXX")"
PROCESSOR_PID=""
PROCESSOR_LOG="$WORK_DIR/processor.log"
STARTED=$SECONDS
# Group members besides PROCESSOR_PID (start_member): a name, a pid and a log each.
declare -A MEMBER_PID=() MEMBER_LOG=()
MEMBERS=()

# note MESSAGE: a progress line, with the seconds since the test began.
note() { printf '[%s %3ds] %s\n' "$(basename "$0" .sh)" $((SECONDS - STARTED)) "$*"; }

fail() {
    echo "FAIL: $*" >&2
    if [[ -f "$PROCESSOR_LOG" ]]; then
        echo "--- last lines of the processor's log ($PROCESSOR_LOG):" >&2
        tail -n 40 "$PROCESSOR_LOG" >&2
    fi
    exit 1
}

cleanup() {
    local pid
    for pid in "$PROCESSOR_PID" "${MEMBER_PID[@]}"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    # The test's topics go too, so a long-lived local broker does not pile up partitions
    # (best effort: a test that failed because Kafka is away still reports that).
    if [[ -x "${AP_TOOLS:-}/test-delete-topics" ]]; then
        "$AP_TOOLS/test-delete-topics" "$RUN_ID" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# finish [STEP...]: an EXIT trap for tests that run a producer loop (trap 'finish STEP' EXIT):
# stops it, cleans up, then runs each STEP (a command of the test's own), every one of them
# whatever fails, and exits with the test's status.
finish() {
    local rc=$? step
    set +e
    stop_producer
    cleanup
    for step in "$@"; do "$step"; done
    exit "$rc"
}

# Checks the services are there: in CI a missing service is a failure, never a skip.
require_services() {
    psql "$DATABASE_URL" -qAtc 'select 1' >/dev/null 2>&1 || fail "Postgres not reachable at DATABASE_URL"
    kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -m 5 >/dev/null 2>&1 || fail "Kafka not reachable at $KAFKA_BOOTSTRAP_SERVERS"
}

# wait_for DESCRIPTION SECONDS COMMAND... : polls COMMAND until it succeeds or time runs out.
wait_for() {
    local what="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after ${seconds}s waiting for: $what"
        sleep 0.2
    done
}

sql() {
    psql "$DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "$1"
}

# produce KEY < lines : one message per input line, keyed by KEY, to the command topic.
produce() {
    kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$COMMAND_TOPIC" -k "$1" "${@:2}"
}

# produce_keyed < "key<TAB>value" lines
produce_keyed() {
    kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$COMMAND_TOPIC" -K $'\t' "$@"
}

start_processor() {
    "$AP_BIN" run >>"$PROCESSOR_LOG" 2>&1 &
    PROCESSOR_PID=$!
    wait_for "the processor to own its partitions" 60 processor_owns_partitions
}

processor_owns_partitions() {
    kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "the processor exited early"
    [[ "$(sql "select count(*) from consumer_offsets where group_id = '$KAFKA_GROUP_ID'" 2>/dev/null)" -ge 1 ]] &&
        grep -q "assigned $COMMAND_TOPIC" "$PROCESSOR_LOG"
}

# http_base [LOG]: http://127.0.0.1:PORT of the processor writing LOG (default the running
# processor's), from its "listening" log line: the one place a port chosen at start is told.
http_base() {
    local port log="${1:-$PROCESSOR_LOG}"
    port=$(grep -o 'listening on [^ ]* (port [0-9]*)' "$log" | tail -n 1 | grep -o '[0-9]*)$' | tr -d ')')
    [[ -n "$port" ]] || fail "the processor logged no HTTP port ($log)"
    echo "http://127.0.0.1:$port"
}

# metric 'NAME{LABELS}' [LOG]: its value in a fresh scrape of that processor's /metrics, 0 when
# absent (or when the processor does not answer).
metric() {
    curl -s "$(http_base "${2:-}")/metrics" | awk -v k="$1" '$1 == k {print $2; found=1} END {if (!found) print 0}'
}

# owned_partitions [LOG]: the command topic's partitions that processor owns now, sorted, from
# its allocation_consumer_lag_messages series (set for each owned partition, removed on revoke).
owned_partitions() {
    curl -s "$(http_base "${1:-}")/metrics" |
        sed -n "s/^allocation_consumer_lag_messages{topic=\"$COMMAND_TOPIC\",partition=\"\([0-9]*\)\"} .*/\1/p" |
        sort -n | paste -sd' '
}

# stop_processor [SIGNAL]: TERM by default, which must end in exit code 0.
stop_processor() {
    local signal="${1:-TERM}" rc=0
    kill "-$signal" "$PROCESSOR_PID"
    local deadline=$((SECONDS + 30))
    while kill -0 "$PROCESSOR_PID" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "the processor did not stop within 30s of SIG$signal"
        sleep 0.1
    done
    wait "$PROCESSOR_PID" || rc=$?
    PROCESSOR_PID=""
    if [[ "$signal" == TERM || "$signal" == INT ]]; then
        [[ $rc -eq 0 ]] || fail "the processor exited with $rc after SIG$signal, expected 0"
    fi
}

# The sum over partitions of the next offset stored for our group: how many records were
# consumed and committed.
committed_records() {
    sql "select coalesce(sum(next_offset), 0) from consumer_offsets where group_id = '$KAFKA_GROUP_ID' and topic = '$COMMAND_TOPIC' and next_offset > 0"
}

# The sum of the latest offsets of the command topic's partitions: how many were produced.
produced_records() {
    local total=0 p
    for p in $(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -t "$COMMAND_TOPIC" -J | jq -r '.topics[0].partitions[].partition'); do
        local end
        end=$(kcat -Q -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$COMMAND_TOPIC:$p:-1" | awk '{print $NF}')
        total=$((total + end))
    done
    echo "$total"
}

# committed_at_least N: at least N records consumed and committed (false while Postgres is away).
committed_at_least() {
    local got
    got=$(committed_records 2>/dev/null) || return 1
    [[ -n "$got" ]] && ((got >= $1))
}

all_records_committed() {
    [[ "$(committed_records)" == "$(produced_records)" ]]
}

# Ends a test that passed; its scratch folder goes (a failed one keeps it for a look).
pass() {
    echo "PASS: $(basename "$0")"
    rm -rf "$WORK_DIR"
}

# decoded_events EVENT: every value on <prefix>.events.EVENT so far, decoded to JSON lines.
decoded_events() {
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC_PREFIX.events.$1" -o beginning -e -q \
        -f '%R%s' 2>/dev/null | "$AP_BIN" decode
}

# topic_lines TOPIC FORMAT: every message of TOPIC so far, printed with kcat's -f FORMAT.
topic_lines() {
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$1" -o beginning -e -q -f "$2" 2>/dev/null
}

# outbox_rows: rows of this test's topics still waiting in the outbox.
outbox_rows() {
    sql "select count(*) from outbox where topic like '$TOPIC_PREFIX.%'"
}

outbox_empty() {
    [[ "$(outbox_rows)" -eq 0 ]]
}

# events_with_ids EVENT: "<event-id> <decoded JSON>" per message of <prefix>.events.EVENT,
# partition by partition (values and headers are read in two passes of the same offsets).
events_with_ids() {
    local topic="$TOPIC_PREFIX.events.$1" p
    for p in $(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -t "$topic" -J | jq -r '.topics[0].partitions[].partition'); do
        paste -d' ' \
            <(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -p "$p" -o beginning -e -q -f '%h\n' 2>/dev/null |
                sed -E 's/.*event-id=([^,]*).*/\1/') \
            <(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -p "$p" -o beginning -e -q -f '%R%s' 2>/dev/null |
                "$AP_BIN" decode)
    done
}

# ---------------------------------------------------------------- a paced, gated stream
#
# For tests that change things while commands flow. The caller sets STREAM (a file of
# "key<TAB>json" lines), CHUNKS and CHUNK (lines per chunk), PACE (seconds between chunks)
# and an associative array GATE (chunk number -> gate name), then runs `producer_loop &`.
# Before a gate's chunk the loop waits until the main script calls open_gate NAME, so each
# step is sure to have commands arriving while it happens and after it. Progress goes to
# $WORK_DIR/chunks, a failure to $WORK_DIR/failed; touching $WORK_DIR/stop ends the loop.

# kcat rides out a broker restart: -E keeps it from exiting when all brokers are down, and the
# idempotent producer keeps its retries from duplicating a command.
kcat_produce() {
    kcat -P -E -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$COMMAND_TOPIC" -K $'\t' \
        -X enable.idempotence=true -X message.timeout.ms=180000
}

producer_loop() {
    local k
    for ((k = 0; k < CHUNKS; k++)); do
        if [[ -n "${GATE[$k]:-}" ]]; then
            local deadline=$((SECONDS + 300))
            until [[ -e "$WORK_DIR/gate.${GATE[$k]}" || -e "$WORK_DIR/stop" ]]; do
                ((SECONDS < deadline)) || { echo "gate ${GATE[$k]} not opened in 300 s" >"$WORK_DIR/failed"; exit 1; }
                sleep 0.1
            done
        fi
        [[ -e "$WORK_DIR/stop" ]] && exit 0
        local rc=0
        sed -n "$((k * CHUNK + 1)),$(((k + 1) * CHUNK))p" "$STREAM" | kcat_produce 2>>"$WORK_DIR/kcat.err" || rc=$?
        if ((rc != 0)); then
            echo "kcat exited $rc producing chunk $k" >"$WORK_DIR/failed"
            exit 1
        fi
        echo $((k + 1)) >"$WORK_DIR/chunks.tmp"
        mv "$WORK_DIR/chunks.tmp" "$WORK_DIR/chunks"
        sleep "$PACE"
    done
}

open_gate() { touch "$WORK_DIR/gate.$1"; }

# Ends the stream: its gates open, then the loop (PRODUCER_PID) and its kcat are killed.
stop_producer() {
    [[ -d "$WORK_DIR" ]] && touch "$WORK_DIR/stop"
    if [[ -n "${PRODUCER_PID:-}" ]] && kill -0 "$PRODUCER_PID" 2>/dev/null; then
        pkill -KILL -P "$PRODUCER_PID" 2>/dev/null || true
        kill -KILL "$PRODUCER_PID" 2>/dev/null || true
        wait "$PRODUCER_PID" 2>/dev/null || true
    fi
}
chunks_done() { cat "$WORK_DIR/chunks" 2>/dev/null || echo 0; }
producer_ok() {
    [[ ! -e "$WORK_DIR/failed" ]] || fail "producing the stream: $(cat "$WORK_DIR/failed"): $(tail -n 5 "$WORK_DIR/kcat.err" 2>/dev/null)"
}
# chunks_at_least N: the producer loop sent N chunks; fails when it failed, or when the
# processor (PROCESSOR_PID, if one runs) exited meanwhile.
chunks_at_least() {
    producer_ok
    [[ -z "$PROCESSOR_PID" ]] || kill -0 "$PROCESSOR_PID" 2>/dev/null ||
        fail "the processor exited while the stream was being produced"
    (($(chunks_done) >= $1))
}

# start_member NAME: another processor in the group (the test's settings), logging to
# MEMBER_LOG[NAME]; its pid is MEMBER_PID[NAME]. cleanup kills the ones still running.
start_member() {
    local m=$1
    MEMBER_LOG[$m]="$WORK_DIR/member-$m.log"
    "$AP_BIN" run >>"${MEMBER_LOG[$m]}" 2>&1 &
    MEMBER_PID[$m]=$!
    MEMBERS+=("$m")
    note "member $m started (pid ${MEMBER_PID[$m]})"
}
# member_alive NAME: member NAME was started and is still running.
member_alive() { [[ -n "${MEMBER_PID[$1]:-}" ]] && kill -0 "${MEMBER_PID[$1]}" 2>/dev/null; }

# check_applied_once SKUS ALLOCS COUNTERS: for streams named like outages.sh and rebalance.sh
# (allocation skus <run>-S<n>, orders <run>-o<n>, counter skus <run>-C<n> with batch
# <run>-counter<n> and CHANGES_OF[n] quantity changes each): no command lost (every order
# allocated, in both models), none applied twice (versions exact; a counter's version counts
# its ChangeBatchQuantity applications) and none out of order (a counter's final quantity).
check_applied_once() {
    local skus="$1" allocs="$2" counters="$3" got c
    got=$(sql "select count(*) from allocations a join batches b on b.id = a.batch_id where b.sku like '$RUN_ID-S%'")
    [[ "$got" -eq "$allocs" ]] || fail "expected $allocs allocations, found $got (commands skipped)"
    got=$(sql "select count(distinct orderid) from allocations_view where orderid like '$RUN_ID-o%'")
    [[ "$got" -eq "$allocs" ]] || fail "expected $allocs orders in the read model, found $got"
    got=$(sql "select sum(version_number) from products where sku like '$RUN_ID-S%'")
    [[ "$got" -eq $((skus + allocs)) ]] || fail "expected the allocated products' versions to sum to $((skus + allocs)), got $got"
    for ((c = 0; c < counters; c++)); do
        got=$(sql "select version_number from products where sku = '$RUN_ID-C$c'")
        [[ "$got" -eq $((1 + CHANGES_OF[c])) ]] ||
            fail "counter $c: ChangeBatchQuantity applied $((got - 1)) times, expected ${CHANGES_OF[c]}"
        got=$(sql "select purchased_quantity from batches where reference = '$RUN_ID-counter$c'")
        [[ "$got" -eq "${CHANGES_OF[c]}" ]] || fail "counter $c: its batch holds $got, expected ${CHANGES_OF[c]} (applied out of order)"
    done
}

# make_stream: writes the stream outages.sh, rebalance.sh and resource_faults.sh send, for
# SKUS, COUNTERS and COMMANDS: $WORK_DIR/creates.tsv (a CreateBatch per sku: <run>-S<n> with
# batch <run>-b<n> and plenty of stock, and counter skus <run>-C<n> with batch
# <run>-counter<n>), then STREAM
# ($WORK_DIR/stream.tsv): COMMANDS commands, every 5th a ChangeBatchQuantity of a counter's
# batch (1, 2, 3, ... in order), the rest an Allocate (<run>-o<n>, one unit) spread over the
# skus; and $WORK_DIR/want.EVENT, the events expected (check_events). Sets CREATES, ALLOCS
# and CHANGES_OF (what check_applied_once takes).
declare -a CHANGES_OF
make_stream() {
    local s c i
    STREAM="$WORK_DIR/stream.tsv"
    : >"$STREAM"
    {
        for ((s = 0; s < SKUS; s++)); do
            printf '%s\t{"type":"CreateBatch","ref":"%s-b%d","sku":"%s","qty":1000000}\n' "$RUN_ID-S$s" "$RUN_ID" "$s" "$RUN_ID-S$s"
        done
        for ((c = 0; c < COUNTERS; c++)); do
            printf '%s\t{"type":"CreateBatch","ref":"%s-counter%d","sku":"%s","qty":0}\n' "$RUN_ID-C$c" "$RUN_ID" "$c" "$RUN_ID-C$c"
        done
    } >"$WORK_DIR/creates.tsv"
    CREATES=$((SKUS + COUNTERS))
    # Expected events, as the keys the checks below compare (one line per distinct event).
    : >"$WORK_DIR/want.allocated"
    : >"$WORK_DIR/want.batch_quantity_changed"
    {
        for ((s = 0; s < SKUS; s++)); do echo "$RUN_ID-b$s"; done
        for ((c = 0; c < COUNTERS; c++)); do echo "$RUN_ID-counter$c"; done
    } >"$WORK_DIR/want.batch_created"
    for ((c = 0; c < COUNTERS; c++)); do CHANGES_OF[c]=0; done
    ALLOCS=0
    for ((i = 1; i <= COMMANDS; i++)); do
        if ((i % 5 == 0)); then
            c=$(((i / 5) % COUNTERS))
            CHANGES_OF[c]=$((CHANGES_OF[c] + 1))
            printf '%s\t{"type":"ChangeBatchQuantity","ref":"%s-counter%d","qty":%d}\n' "$RUN_ID-C$c" "$RUN_ID" "$c" "${CHANGES_OF[c]}" >>"$STREAM"
            echo "$RUN_ID-counter$c ${CHANGES_OF[c]}" >>"$WORK_DIR/want.batch_quantity_changed"
        else
            ALLOCS=$((ALLOCS + 1))
            s=$((ALLOCS % SKUS))
            printf '%s\t{"type":"Allocate","orderid":"%s-o%d","sku":"%s","qty":1}\n' "$RUN_ID-S$s" "$RUN_ID" "$ALLOCS" "$RUN_ID-S$s" >>"$STREAM"
            echo "$RUN_ID-o$ALLOCS $RUN_ID-b$s" >>"$WORK_DIR/want.allocated"
        fi
    done
}

# check_stream_delivered: after make_stream's stream was applied and relayed, every expected
# event is on its topic (check_events), quantity changes in per-sku order, nothing on the
# other topics (no rejection, no dead letter), no sanitizer report in the processor's log, and
# its allocation_commands_total counts every command applied once (left in `applied`).
check_stream_delivered() {
    local got topic
    check_events batch_created '.ref'
    check_events allocated '"\(.orderid) \(.batchref)"'
    check_events batch_quantity_changed '"\(.ref) \(.qty)"'
    # Per product, the first delivery of each quantity change follows the commands' order.
    cut -d' ' -f2- "$WORK_DIR/got.batch_quantity_changed" | jq -r '"\(.ref) \(.qty)"' | awk '!seen[$0]++' |
        awk '{ if ($2 != ++n[$1]) { print "out of order: " $0; exit 1 } }' >"$WORK_DIR/order" ||
        fail "BatchQuantityChanged events $(cat "$WORK_DIR/order") (per-sku order lost)"
    for topic in events.deallocated events.out_of_stock events.command_rejected dead_letter; do
        got=$(topic_lines "$TOPIC_PREFIX.$topic" '%o\n' | wc -l)
        [[ "$got" -eq 0 ]] || fail "$TOPIC_PREFIX.$topic holds $got message(s), expected none"
    done

    if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$PROCESSOR_LOG"; then
        fail "a sanitizer reported an error"
    fi
    # The processor's own count: every command applied once (none a duplicate, none failed).
    applied=$(curl -s "$(http_base)/metrics" |
        awk '/^allocation_commands_total\{.*outcome="applied"/ { n += $2 } END { print n + 0 }')
    [[ "$applied" -eq $((CREATES + COMMANDS)) ]] ||
        fail "allocation_commands_total counts $applied applied, $((CREATES + COMMANDS)) were produced"
}

# database_url NAME: DATABASE_URL with its database replaced (URI or keyword=value form).
database_url() {
    local url="$DATABASE_URL" query=""
    if [[ "$url" =~ ^postgres(ql)?:// ]]; then
        if [[ "$url" == *\?* ]]; then
            query="?${url#*\?}"
            url="${url%%\?*}"
        fi
        local rest="${url#*://}"
        echo "${url%%://*}://${rest%%/*}/$1$query"
    else
        echo "$url dbname=$1"
    fi
}

# check_events EVENT JQ-KEY: against $WORK_DIR/want.EVENT (one line per expected event, as
# JQ-KEY prints a decoded event), each expected event is on its topic; re-deliveries only as
# the same event-id with the same value; one event-id per event (an event-id more would be an
# effect applied twice).
check_events() {
    local event=$1 key=$2 file="$WORK_DIR/got.$1"
    events_with_ids "$event" >"$file"
    local total ids pairs
    total=$(wc -l <"$file")
    ids=$(cut -d' ' -f1 "$file" | sort -u | wc -l)
    pairs=$(sort -u "$file" | wc -l)
    [[ "$pairs" -eq "$ids" ]] || fail "$event: an event-id was delivered with two different values"
    cut -d' ' -f2- "$file" | jq -r "$key" | sort -u >"$file.keys"
    sort -u "$WORK_DIR/want.$event" >"$file.want"
    local missing extra
    missing=$(comm -23 "$file.want" "$file.keys" | wc -l)
    extra=$(comm -13 "$file.want" "$file.keys" | wc -l)
    ((missing == 0)) || fail "$event: $missing expected event(s) missing, e.g. $(comm -23 "$file.want" "$file.keys" | head -n 3 | paste -sd,)"
    ((extra == 0)) || fail "$event: $extra unexpected event(s), e.g. $(comm -13 "$file.want" "$file.keys" | head -n 3 | paste -sd,)"
    [[ "$ids" -eq "$(wc -l <"$file.want")" ]] ||
        fail "$event: $ids distinct event-ids for $(wc -l <"$file.want") events (an event emitted twice)"
    note "$event: $total message(s), $ids event-ids, $((total - ids)) re-deliveries"
}

# readme_walkthrough README: the walkthrough as "command<TAB>expected output" lines (expected
# empty when the README shows none). A `# ...` line right after a command is that command's
# output; any other comment is prose. Lines ending in a backslash continue on the next.
readme_walkthrough() {
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"<!-- walkthrough:.*?-->(.*?)<!-- walkthrough: end -->", text, re.S)
if not m:
    sys.exit("README.md has no walkthrough markers")
steps = []
for block in re.findall(r"```sh\n(.*?)```", m.group(1), re.S):
    lines, after_command = block.replace("\\\n", " ").splitlines(), False
    for line in lines:
        line = line.strip()
        if not line:
            after_command = False
        elif line.startswith("#"):
            if after_command:
                steps[-1][1] = line[1:].strip()
            after_command = False
        else:
            steps.append([re.sub(r"\s+", " ", line), ""])
            after_command = True
for command, expected in steps:
    print(f"{command}\t{expected}")
PY
}

# play_walkthrough README [CLI_FN]: runs the README's walkthrough as written, from the checkout's
# root, with two rewrites so runs never share data: the broker address becomes
# $KAFKA_BOOTSTRAP_SERVERS and `-t allocation.` this test's prefix. CLI_FN, when given, is
# called as `CLI_FN COMMAND N` for each command whose output the README shows (N counts them
# from 0) and prints the command to run instead (e.g. the CLI inside a pod). A shown output is
# asked for until it matches, for 30 s: the processor applies commands as they arrive. Fails
# on a README whose walkthrough has fewer than 6 commands or 2 shown outputs. Sets
# WALKTHROUGH_CHECKED to the number of outputs checked.
play_walkthrough() {
    local readme=$1 cli_fn=${2:-} root steps step command expected deadline
    root=$(cd "$(dirname "$readme")" && pwd -P)
    mapfile -t steps < <(readme_walkthrough "$readme")
    WALKTHROUGH_CHECKED=0
    local shown=0
    for step in "${steps[@]}"; do [[ "${step#*$'\t'}" ]] && shown=$((shown + 1)); done
    ((${#steps[@]} >= 6 && shown >= 2)) ||
        fail "the README's walkthrough has ${#steps[@]} commands and $shown outputs; expected at least 6 and 2"
    for step in "${steps[@]}"; do
        command=${step%%$'\t'*} expected=${step#*$'\t'}
        echo "\$ $command"
        command=${command//127.0.0.1:9092/$KAFKA_BOOTSTRAP_SERVERS}
        command=${command//-t allocation./-t $TOPIC_PREFIX.}
        if [[ -z "$expected" ]]; then
            (cd "$root" && bash -o pipefail -c "$command") >"$WORK_DIR/out" 2>"$WORK_DIR/err" ||
                fail "'$command' failed: $(cat "$WORK_DIR/err")"
            continue
        fi
        [[ -z "$cli_fn" ]] || command=$("$cli_fn" "$command" "$WALKTHROUGH_CHECKED")
        deadline=$((SECONDS + 30))
        until (cd "$root" && bash -o pipefail -c "$command") >"$WORK_DIR/out" 2>"$WORK_DIR/err" &&
            [[ "$(cat "$WORK_DIR/out")" == "$expected" ]]; do
            ((SECONDS < deadline)) ||
                fail "'$command' printed '$(cat "$WORK_DIR/out")' for 30 s, the README shows '$expected'"
            sleep 0.2
        done
        echo "# $(cat "$WORK_DIR/out")"
        WALKTHROUGH_CHECKED=$((WALKTHROUGH_CHECKED + 1))
    done
}
