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
make_stream

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

check_stream_delivered
stop_processor TERM
note "done: $applied commands applied"
"$SERVICES" status >/dev/null || fail "the local services are not both running at the end"
pass
