#!/usr/bin/env bash
# Resource faults: while a stream of commands flows, one fault hits the running processor's
# resources, holds while more commands arrive, then clears. The argument names the fault:
#
#   read_only         the database turns read-only (ALTER DATABASE ... SET
#                     default_transaction_read_only = on; its sessions are ended, as a
#                     failover to a standby would, so the new ones see it)
#   connection_limit  the processor's role reaches its connection limit (ALTER ROLE ...
#                     CONNECTION LIMIT 1 with one session held by another client), and its
#                     sessions are ended, so it cannot open new ones
#   message_size      the Allocated topic's max.message.bytes is lowered below an event's size
#                     (kafka.admin.ConfigCommand, Kafka's own kafka-configs)
#   broker_disk_full  the broker's log directory fills up (a 64 MB tmpfs mounted over the local
#                     broker's data directory for the test, then filled): Kafka stops the broker
#                     ("all log dirs have failed"), which the processor sees as Kafka gone;
#                     cleared by freeing the space and starting the broker again. Not in ctest:
#                     it needs root (mount) and restarts the local broker (deploy/local), so run
#                     it by hand: bash tests/e2e/resource_faults.sh broker_disk_full
#
# Each time, within DETECT_S of the fault the processor must say it: one log line naming it
# (not one per retry), /readyz 503 with a reason naming it, and a gauge on /metrics. It must
# not restart, and once the fault clears it must be ready again within RESUME_S, and in the
# end every command is applied exactly once (none lost, none doubled, none dead-lettered or
# failed), and every expected event is on its topic, quantity changes in per-sku order. For
# message_size, the events of the other topics keep flowing while Allocated ones wait.
#
# It runs on a scratch database owned by a role of its own (a connection limit does not bind
# a superuser, and the relay lock is one per database); the test's own queries go as the
# administrator. It prints the figures: time to detect, time to resume, commands and events
# before and after.
source "$(dirname "$0")/lib.sh"
require_services
CASE="${1:?usage: resource_faults.sh read_only|connection_limit|message_size}"
export LOG_FORMAT=text TOPIC_PARTITIONS=3

SKUS=20      # products receiving allocations
COUNTERS=3   # products whose batch only receives ChangeBatchQuantity
COMMANDS=600 # after the CreateBatch commands; every 5th a quantity change
CHUNK=20
CHUNKS=$((COMMANDS / CHUNK))
PACE=0.1
DETECT_S=30 # from the fault to the log line, /readyz 503 and the gauge
RESUME_S=30 # from clearing it to /readyz 200
METRIC_ON='v > 0' # FAULT_METRIC's value while the fault holds (an awk condition on v) ...
METRIC_OFF='v == 0' # ... and once it has passed
STREAM_DURING_FAULT=1 # commands keep arriving in Kafka while the fault holds

# --- a scratch database and role ----------------------------------------------------------------
ADMIN_DATABASE_URL="$DATABASE_URL"
SCRATCH_DB="ap_e2e_faults_${CASE}_$$"
ROLE="ap_e2e_faults_${CASE}_$$"
admin_sql() { psql "$ADMIN_DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
# with_user URL USER: URL connecting as USER.
with_user() {
    if [[ "$1" =~ ^postgres(ql)?:// ]]; then
        [[ "$1" == *\?* ]] && echo "$1&user=$2" || echo "$1?user=$2"
    else
        echo "$1 user=$2"
    fi
}
admin_sql "CREATE ROLE $ROLE LOGIN" || fail "cannot create the role $ROLE"
admin_sql "CREATE DATABASE $SCRATCH_DB OWNER $ROLE" || fail "cannot create the scratch database"
export DATABASE_URL
DATABASE_URL="$(database_url "$SCRATCH_DB")"
PROCESSOR_URL="$(with_user "$DATABASE_URL" "$ROLE")"

HOLDER_PID="" # connection_limit: the other client's session
drop_scratch() {
    admin_sql "DROP DATABASE IF EXISTS $SCRATCH_DB WITH (FORCE)" >/dev/null 2>&1 &&
        admin_sql "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 ||
        echo "resource_faults: could not drop $SCRATCH_DB or $ROLE" >&2
}

# --- the faults ---------------------------------------------------------------------------------
KAFKA_LIBS="$(bash -c 'source "$1/deploy/local/lib.sh" >/dev/null 2>&1; echo "$AP_KAFKA_LIBS"' _ "$(dirname "$0")/../..")"
# topic_config ARGS...: kafka-configs on the Allocated topic (Kafka's own tool, from its jars).
topic_config() {
    printf 'log4j.rootLogger=WARN, stderr\nlog4j.appender.stderr=org.apache.log4j.ConsoleAppender\nlog4j.appender.stderr.Target=System.err\nlog4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n' >"$WORK_DIR/log4j.properties"
    java -Xmx256m -Dlog4j.configuration="file:$WORK_DIR/log4j.properties" -cp "$KAFKA_LIBS/*" \
        kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --alter \
        --entity-type topics --entity-name "$TOPIC_PREFIX.events.allocated" "$@" >>"$WORK_DIR/configs.log" 2>&1
}
# end_sessions: ends the processor's sessions, as a failover or an administrator would.
end_sessions() {
    admin_sql "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$SCRATCH_DB' and application_name = 'allocation-processor'" >/dev/null
}
held_session() { [[ "$(admin_sql "select count(*) from pg_stat_activity where usename = '$ROLE' and application_name = 'holder'")" -ge 1 ]]; }

case "$CASE" in
read_only)
    FAULT_LOG='Postgres read-only'
    FAULT_REASON='.reasons.postgres // "" | test("read-only")'
    FAULT_METRIC='allocation_postgres_fault{fault="read_only"}'
    fault_on() {
        admin_sql "ALTER DATABASE $SCRATCH_DB SET default_transaction_read_only = on"
        end_sessions
    }
    fault_off() { admin_sql "ALTER DATABASE $SCRATCH_DB RESET default_transaction_read_only"; }
    ;;
connection_limit)
    FAULT_LOG='Postgres connection limit reached'
    FAULT_REASON='.reasons.postgres // "" | test("connection limit")'
    FAULT_METRIC='allocation_postgres_fault{fault="connection_limit"}'
    fault_on() {
        PGAPPNAME=holder psql "$(with_user "$DATABASE_URL" "$ROLE")" -qAtX -c 'select pg_sleep(3600)' >/dev/null 2>&1 &
        HOLDER_PID=$!
        wait_for "the other client's session" 20 held_session
        admin_sql "ALTER ROLE $ROLE CONNECTION LIMIT 1"
        end_sessions
    }
    fault_off() {
        admin_sql "ALTER ROLE $ROLE CONNECTION LIMIT -1"
        if [[ -n "$HOLDER_PID" ]]; then
            kill "$HOLDER_PID" 2>/dev/null || true
            wait "$HOLDER_PID" 2>/dev/null || true
            HOLDER_PID=""
        fi
    }
    ;;
message_size)
    FAULT_LOG='relay: .*events.allocated refused [0-9]* record'
    FAULT_REASON='.reasons.relay // "" | test("too large")'
    FAULT_METRIC='allocation_relay_refused_rows'
    # An Allocated event is ~100 bytes of Avro plus headers: 64 bytes refuses every one.
    fault_on() { topic_config --add-config max.message.bytes=64; }
    fault_off() { topic_config --delete-config max.message.bytes; }
    ;;
broker_disk_full)
    SERVICES="$(dirname "$0")/../../deploy/local/services.sh"
    DATA_DIR="$(cd "$(dirname "$0")/../.." && pwd)/.local/kafka-container/data"
    FAULT_LOG='consumer: Kafka unreachable'
    FAULT_REASON='.reasons.kafka // "" | test("no broker")'
    FAULT_METRIC='allocation_kafka_up'
    METRIC_ON='v == 0'
    METRIC_OFF='v == 1'
    RESUME_S=60
    STREAM_DURING_FAULT=0 # commands cannot reach a broker that is down
    [[ "$(id -u)" == 0 ]] || fail "broker_disk_full mounts a tmpfs: run it as root"
    [[ -d "$DATA_DIR" ]] || fail "no container broker's data directory at $DATA_DIR"
    # The broker restarts on a small file system of its own; its own data comes back after.
    "$SERVICES" stop kafka >/dev/null 2>&1 || fail "cannot stop the local broker"
    mount -t tmpfs -o size=64m tmpfs "$DATA_DIR" || fail "cannot mount a tmpfs over $DATA_DIR"
    "$SERVICES" start kafka >"$WORK_DIR/kafka-start.log" 2>&1 || fail "the broker did not start on the tmpfs: $(tail -n 3 "$WORK_DIR/kafka-start.log")"
    fault_on() {
        local avail
        avail=$(df -k --output=avail "$DATA_DIR" | tail -n 1)
        fallocate -l $((avail * 1024)) "$DATA_DIR/filler" # the next page the broker needs fails
    }
    fault_off() {
        rm -f "$DATA_DIR/filler"
        "$SERVICES" start kafka >"$WORK_DIR/kafka-start.log" 2>&1
    }
    restore_broker() {
        "$SERVICES" stop kafka >/dev/null 2>&1
        umount "$DATA_DIR" || echo "resource_faults: could not unmount $DATA_DIR" >&2
        "$SERVICES" start kafka >/dev/null 2>&1 || echo "resource_faults: WARNING: the local broker did not start again" >&2
    }
    ;;
*) fail "unknown fault: $CASE" ;;
esac
[[ "$CASE" == broker_disk_full ]] || restore_broker() { :; }
# Whatever happened, the fault is cleared (the services are shared with other tests).
FAULT_ON=0
clear_fault() {
    ((FAULT_ON)) || return 0
    fault_off >/dev/null 2>&1 || echo "resource_faults: could not clear the fault" >&2
}
trap 'finish clear_fault restore_broker drop_scratch' EXIT

# --- observing ----------------------------------------------------------------------------------
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
alive() {
    producer_ok
    kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "the processor exited (it must ride out the fault)"
}
readyz() { curl -s --max-time 2 "$(http_base)/readyz"; }
readyz_code() { curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$(http_base)/readyz"; }
# fault_seen: the log line, /readyz 503 naming the fault, and the gauge above 0.
fault_seen() {
    alive
    grep -qE "$FAULT_LOG" "$PROCESSOR_LOG" || return 1
    [[ "$(readyz_code)" == 503 ]] && readyz | jq -e "$FAULT_REASON" >/dev/null || return 1
    awk -v v="$(metric "$FAULT_METRIC")" "BEGIN { exit !($METRIC_ON) }"
}
ready_again() {
    alive
    [[ "$(readyz_code)" == 200 ]] && awk -v v="$(metric "$FAULT_METRIC")" "BEGIN { exit !($METRIC_OFF) }"
}
applied_commands() {
    curl -s "$(http_base)/metrics" | awk '/^allocation_commands_total\{.*outcome="applied"/ { n += $2 } END { print n + 0 }'
}
topic_count() { timeout 20 kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC_PREFIX.events.$1" -o beginning -e -q -f '%o\n' 2>/dev/null | wc -l; }
counts() {
    echo "commands applied $(applied_commands) (offsets committed $(committed_records)), events on topics: allocated $(topic_count allocated), batch_quantity_changed $(topic_count batch_quantity_changed); outbox $(outbox_rows) row(s)"
}
quantity_changes_beyond() {
    alive
    (($(topic_count batch_quantity_changed) > $1))
}

# --- the run ------------------------------------------------------------------------------------
make_stream
declare -A GATE=([$((CHUNKS / 3))]=fault-on [$((CHUNKS * 2 / 3))]=fault-off)
DATABASE_URL="$PROCESSOR_URL" start_processor
PID_AT_START=$PROCESSOR_PID
kcat_produce <"$WORK_DIR/creates.tsv" || fail "producing the CreateBatch commands"
PRODUCER_PID=""
producer_loop &
PRODUCER_PID=$!
wait_for "a third of the stream produced" 120 chunks_at_least $((CHUNKS / 3))
wait_for "the outbox to drain before the fault" 60 outbox_empty
note "before the fault: $(counts)"

log_lines_before=$(wc -l <"$PROCESSOR_LOG")
t0=$(now)
FAULT_ON=1
fault_on || fail "cannot set up the fault $CASE"
note "fault $CASE on (set up in $(since "$t0") s)"
t_on=$(now)
open_gate fault-on
wait_for "the processor to report the fault ($CASE) in its log, /readyz and /metrics" "$DETECT_S" fault_seen
DETECT=$(since "$t_on")
note "detected in $DETECT s: /readyz $(readyz | jq -c '.reasons')"
if [[ "$CASE" == message_size ]]; then
    # Only the Allocated topic refuses: the other events keep flowing meanwhile.
    changes=$(topic_count batch_quantity_changed)
    wait_for "quantity changes delivered while Allocated events wait" 60 quantity_changes_beyond "$changes"
fi
((STREAM_DURING_FAULT == 0)) ||
    wait_for "two thirds of the stream produced during the fault" 120 chunks_at_least $((CHUNKS * 2 / 3))
[[ "$(readyz_code)" == 503 ]] || fail "/readyz answers $(readyz_code) while the fault holds"
note "during the fault: $(counts)"

t1=$(now)
fault_off || fail "cannot clear the fault $CASE"
FAULT_ON=0
t_off=$(now)
note "fault cleared (in $(since "$t1") s)"
open_gate fault-off
wait_for "/readyz to answer 200 again, the gauge back to 0" "$RESUME_S" ready_again
RESUME=$(since "$t_off")
note "ready again in $RESUME s"

wait_for "the whole stream produced" 120 chunks_at_least "$CHUNKS"
wait "$PRODUCER_PID" || fail "the producer loop failed: $(cat "$WORK_DIR/failed" 2>/dev/null)"
PRODUCER_PID=""
committed_progress() { alive; all_records_committed; }
wait_for "every record committed" 120 committed_progress
wait_for "the outbox to drain" 120 outbox_empty
DRAINED=$(since "$t_off")
note "after: $(counts); drained $DRAINED s after clearing"

# --- checks -------------------------------------------------------------------------------------
[[ "$PROCESSOR_PID" == "$PID_AT_START" ]] && kill -0 "$PROCESSOR_PID" 2>/dev/null ||
    fail "the processor is not the one started at the beginning"
said=$(grep -cE "$FAULT_LOG" "$PROCESSOR_LOG" || true)
[[ "$said" -eq 1 ]] || fail "the fault was logged $said times, expected once: $(grep -E "$FAULT_LOG" "$PROCESSOR_LOG" | head -n 3)"
during=$(($(wc -l <"$PROCESSOR_LOG") - log_lines_before))
((during <= 40)) || fail "$during log lines from the fault to the end: a flood"
check_applied_once "$SKUS" "$ALLOCS" "$COUNTERS"
check_stream_delivered
parked=$(sql "select count(*) from outbox_parked where topic like '$TOPIC_PREFIX.%'")
[[ "$parked" -eq 0 ]] || fail "$parked outbox row(s) parked"
if [[ "$CASE" == message_size ]]; then
    # Per sku, the Allocated events' first deliveries follow the commands' order.
    cut -d' ' -f2- "$WORK_DIR/got.allocated" | jq -r '"\(.batchref) \(.orderid)"' | awk '!seen[$0]++' |
        sed -E 's/-o([0-9]+)$/ \1/' | awk '{ if ($3 <= last[$1]) { print "out of order: " $0; exit 1 } last[$1] = $3 }' \
        >"$WORK_DIR/order.allocated" || fail "Allocated events $(cat "$WORK_DIR/order.allocated") (per-sku order lost)"
    note "relay: $(metric allocation_relay_refused_total) refusal(s) counted, $(metric allocation_relay_delivery_failures_total) failed report(s)"
fi
note "figures: fault=$CASE detect_s=$DETECT resume_s=$RESUME drained_s=$DRAINED log_lines=$during commands=$((CREATES + COMMANDS)) applied=$applied"
stop_processor TERM
pass
