#!/usr/bin/env bash
# Outages: a steady stream of commands flows in while Postgres is restarted
# under the running processor, and later the Kafka broker. The processor must notice each
# outage (its /readyz, polled through each restart, answers 503 naming the service, then 200
# again), keep running (the same process throughout), its relay must lose and retake the lock
# across the Postgres restart and deliver again (allocation_relay_leader and
# allocation_relay_delivered_total on /metrics), and afterwards every command is applied exactly
# once, the outbox is drained, every expected event is on its topic (re-deliveries only with
# the same event-id), and SIGTERM still ends it with exit code 0.
#
# ChangeBatchQuantity bumps its product's version on every application, so the versions of
# the counter products count applications (none doubled); allocations show none was lost.
#
# The test runs on a scratch database of its own: there is one active outbox relay per
# database, and in the shared test database another test's processor may hold the relay
# lock, which would hide whether ours recovers from the outages.
#
# It restarts the shared local services (deploy/local/services.sh), so other runs against
# them see the outages too; both are running again when it ends, whatever the outcome.
source "$(dirname "$0")/lib.sh"
require_services
export LOG_FORMAT=text TOPIC_PARTITIONS=3

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICES="$REPO/deploy/local/services.sh"

SKUS=50         # products receiving allocations, one batch each
COUNTERS=5      # products whose batch only receives ChangeBatchQuantity
COMMANDS=3000   # the stream after the CreateBatch commands; every 5th is a quantity change
CHUNK=50        # commands per kcat call
CHUNKS=$((COMMANDS / CHUNK))

# --- a scratch database -------------------------------------------------------------------------
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
ADMIN_DATABASE_URL="$DATABASE_URL"
SCRATCH_DB="ap_e2e_outages_$$_$(date +%s)"
sql "CREATE DATABASE $SCRATCH_DB" || fail "cannot create the scratch database $SCRATCH_DB"
export DATABASE_URL
DATABASE_URL="$(database_url "$SCRATCH_DB")"

PRODUCER_PID=""
# Whatever happened, leave both services running for everyone else.
restore_services() {
    if ! "$SERVICES" status >/dev/null 2>&1; then
        echo "outages: bringing the local services back" >&2
        "$SERVICES" start >&2 || echo "outages: WARNING: $SERVICES start failed" >&2
    fi
}
drop_scratch_db() {
    psql "$ADMIN_DATABASE_URL" -qAtX -c "DROP DATABASE IF EXISTS $SCRATCH_DB WITH (FORCE)" >/dev/null 2>&1 ||
        echo "outages: could not drop the scratch database $SCRATCH_DB" >&2
}
trap 'finish stop_poller restore_services drop_scratch_db' EXIT

# --- the stream ---------------------------------------------------------------------------------
STREAM="$WORK_DIR/stream.tsv"
COUNTER_SKU() { echo "$RUN_ID-C$1"; }
{
    for ((s = 0; s < SKUS; s++)); do
        printf '%s\t{"type":"CreateBatch","ref":"%s-b%d","sku":"%s","qty":1000000}\n' "$RUN_ID-S$s" "$RUN_ID" "$s" "$RUN_ID-S$s"
    done
    for ((c = 0; c < COUNTERS; c++)); do
        printf '%s\t{"type":"CreateBatch","ref":"%s-counter%d","sku":"%s","qty":0}\n' "$(COUNTER_SKU $c)" "$RUN_ID" "$c" "$(COUNTER_SKU $c)"
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
declare -a CHANGES_OF
for ((c = 0; c < COUNTERS; c++)); do CHANGES_OF[c]=0; done
ALLOCS=0
for ((i = 1; i <= COMMANDS; i++)); do
    if ((i % 5 == 0)); then
        c=$(((i / 5) % COUNTERS))
        CHANGES_OF[c]=$((CHANGES_OF[c] + 1))
        printf '%s\t{"type":"ChangeBatchQuantity","ref":"%s-counter%d","qty":%d}\n' "$(COUNTER_SKU $c)" "$RUN_ID" "$c" "${CHANGES_OF[c]}" >>"$STREAM"
        echo "$RUN_ID-counter$c ${CHANGES_OF[c]}" >>"$WORK_DIR/want.batch_quantity_changed"
    else
        ALLOCS=$((ALLOCS + 1))
        s=$((ALLOCS % SKUS))
        printf '%s\t{"type":"Allocate","orderid":"%s-o%d","sku":"%s","qty":1}\n' "$RUN_ID-S$s" "$RUN_ID" "$ALLOCS" "$RUN_ID-S$s" >>"$STREAM"
        echo "$RUN_ID-o$ALLOCS $RUN_ID-b$s" >>"$WORK_DIR/want.allocated"
    fi
done

# The stream flows in chunks (lib.sh's producer_loop), paced; it stops at a gate until the main
# script has created the gate's file, so each outage is sure to have commands arriving while
# it happens and after it is over. Progress goes to $WORK_DIR/chunks, failures to .../failed.
declare -A GATE=([$((CHUNKS * 45 / 100))]=pg-done [$((CHUNKS * 80 / 100))]=kafka-done)
PACE=0.15 # ~20 s for the stream on this machine

# The outcomes are read from the processor's HTTP API while each restart runs: a poller writes
# "<readyz code> <services not ready, or -> <allocation_relay_leader, or ?>" every 0.2 s to
# $WORK_DIR/poll.<service> ("000 - ?" when the processor did not answer in time).
POLLER_PID=""
poll_readiness() {
    local base code not_ready leader
    base=$(http_base)
    while :; do
        code=$(curl -s --max-time 2 -o "$WORK_DIR/readyz.body" -w '%{http_code}' "$base/readyz")
        not_ready=$(jq -r '(.not_ready // []) | join(",")' "$WORK_DIR/readyz.body" 2>/dev/null)
        leader=$(curl -s --max-time 2 "$base/metrics" | awk '$1 == "allocation_relay_leader" {print $2}')
        echo "$code ${not_ready:--} ${leader:-?}"
        sleep 0.2
    done
}
start_poller() { poll_readiness >"$WORK_DIR/poll.$1" 2>/dev/null & POLLER_PID=$!; }
stop_poller() {
    [[ -n "$POLLER_PID" ]] || return 0
    kill "$POLLER_PID" 2>/dev/null
    wait "$POLLER_PID" 2>/dev/null || true
    POLLER_PID=""
}
alive() {
    producer_ok
    kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "the processor exited (it must ride out the outages)"
}
# went_down_and_up SERVICE NAME: /readyz answered 503 with NAME not ready, then 200 after it.
went_down_and_up() {
    alive
    awk -v n="$2" '$1 == 503 && index("," $2 ",", "," n ",") { down = 1 } down && $1 == 200 { up = 1 } END { exit !up }' "$WORK_DIR/poll.$1"
}
committed_beyond() {
    alive
    (($(committed_records) > $1))
}
# check_outage SERVICE NAME: the service is back (services.sh returned) and commands flow: once
# the processor commits again, /readyz must have gone 503 naming NAME, then 200.
check_outage() {
    local svc=$1 name=$2 committed
    committed=$(committed_records)
    wait_for "commands committed again after the $svc restart" 120 committed_beyond "$committed"
    wait_for "/readyz to answer 503 naming $name, then 200" 30 went_down_and_up "$svc" "$name"
}
# relay_retook_lock: during the Postgres restart allocation_relay_leader went 0, then 1.
relay_retook_lock() {
    alive
    awk '$NF == 0 { lost = 1 } lost && $NF == 1 { back = 1 } END { exit !back }' "$WORK_DIR/poll.Postgres"
}
delivered_beyond() {
    alive
    (($(metric allocation_relay_delivered_total | cut -d. -f1) > $1))
}

# --- the run ------------------------------------------------------------------------------------
# The processor first: it creates the command topic with TOPIC_PARTITIONS partitions (a
# broker auto-creating it on kcat's first record would make one).
start_processor
PID_AT_START=$PROCESSOR_PID
kcat_produce <"$WORK_DIR/creates.tsv" || fail "producing the CreateBatch commands"
note "processor $PROCESSOR_PID running on scratch database $SCRATCH_DB; streaming $COMMANDS commands"
producer_loop &
PRODUCER_PID=$!

# (a) Postgres restarts a quarter of the way into the stream.
wait_for "a quarter of the stream produced" 120 chunks_at_least $((CHUNKS / 4))
start_poller Postgres
delivered=$(metric allocation_relay_delivered_total | cut -d. -f1)
note "restarting Postgres (chunk $(chunks_done)/$CHUNKS, $(committed_records) records committed)"
t0=$SECONDS
"$SERVICES" restart pg >"$WORK_DIR/restart-pg.log" 2>&1 || { cat "$WORK_DIR/restart-pg.log" >&2; fail "services.sh restart pg failed"; }
note "Postgres back after $((SECONDS - t0)) s"
open_gate pg-done
check_outage Postgres postgres
wait_for "allocation_relay_leader to go 0, then 1 again, across the Postgres restart" 60 relay_retook_lock
wait_for "the relay to deliver again after the Postgres restart" 60 delivered_beyond "$delivered"
stop_poller
note "Postgres outage ridden out ($(committed_records) records committed)"

# (b) The Kafka broker restarts past the middle of the stream.
wait_for "over half of the stream produced" 120 chunks_at_least $((CHUNKS * 55 / 100))
start_poller Kafka
note "restarting Kafka (chunk $(chunks_done)/$CHUNKS, $(committed_records) records committed)"
t0=$SECONDS
"$SERVICES" restart kafka >"$WORK_DIR/restart-kafka.log" 2>&1 || { cat "$WORK_DIR/restart-kafka.log" >&2; fail "services.sh restart kafka failed"; }
note "Kafka back after $((SECONDS - t0)) s"
open_gate kafka-done
check_outage Kafka kafka
stop_poller
note "Kafka outage ridden out ($(committed_records) records committed)"

# The rest of the stream, then everything committed and relayed.
wait_for "the whole stream produced" 180 chunks_at_least "$CHUNKS"
wait "$PRODUCER_PID" || fail "the producer loop failed: $(cat "$WORK_DIR/failed" 2>/dev/null)"
PRODUCER_PID=""
produced=$(produced_records)
[[ "$produced" -eq $((CREATES + COMMANDS)) ]] ||
    fail "precondition: the command topic holds $produced records, $((CREATES + COMMANDS)) were produced (a kcat problem, not the processor's)"
# (And none twice: the topic's values are exactly the stream's lines.)
topic_lines "$COMMAND_TOPIC" '%s\n' | sort >"$WORK_DIR/topic.sorted"
cut -f2- "$WORK_DIR/creates.tsv" "$STREAM" | sort | cmp -s - "$WORK_DIR/topic.sorted" ||
    fail "precondition: the command topic does not hold exactly the stream (a kcat problem, not the processor's)"
committed_progress() { kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "the processor exited"; all_records_committed; }
wait_for "every record committed" 180 committed_progress
wait_for "the outbox to drain" 120 outbox_empty
note "all $produced records committed and the outbox drained"

# --- checks -------------------------------------------------------------------------------------
if [[ "$PROCESSOR_PID" != "$PID_AT_START" ]] || ! kill -0 "$PROCESSOR_PID" 2>/dev/null; then
    fail "the processor is not the one started at the beginning"
fi
# Readiness ends where it should: ready, both services up.
ready=$(curl -s -o /dev/null -w '%{http_code}' "$(http_base)/readyz")
[[ "$ready" == 200 ]] || fail "/readyz answers $ready at the end: $(curl -s "$(http_base)/readyz")"
for up in allocation_postgres_up allocation_kafka_up; do
    [[ "$(metric $up)" == 1 ]] || fail "$up is $(metric $up) at the end"
done
for svc in Postgres Kafka; do
    note "/readyz through the $svc restart: $(awk '{print $1 ($2 != "-" ? "(" $2 ")" : "")}' "$WORK_DIR/poll.$svc" | uniq | paste -sd' ')"
done

check_applied_once "$SKUS" "$ALLOCS" "$COUNTERS"
got=$(sql "select count(*) from consumer_offsets where group_id = '$KAFKA_GROUP_ID'")
[[ "$got" -ge 1 ]] || fail "no consumer offsets stored"

# Events: each expected one on its topic; re-deliveries only as the same event-id with the
# same value; one event-id per event (an event-id more would be an effect applied twice).
# check_events EVENT JQ-KEY: compares the topic's distinct keys with want.EVENT.
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
stop_processor TERM
note "done: $applied commands applied"
"$SERVICES" status >/dev/null || fail "the local services are not both running at the end"
pass
