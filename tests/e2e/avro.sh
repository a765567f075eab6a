#!/usr/bin/env bash
# Avro in and out, with a real schema registry (Apicurio Registry's Confluent-compatible API,
# which deploy/local/services.sh runs): the processor runs with AVRO_WIRE_FORMAT=confluent,
# registers its event schemas, accepts commands in both Avro framings (and JSON), frames its
# events with registry ids, and dead-letters Avro it cannot read (an unknown fingerprint, a
# truncated body) byte for byte.
source "$(dirname "$0")/lib.sh"
require_services
: "${AP_TOOLS:?AP_TOOLS must point to the folder of test-encode-command}"
: "${TEST_SCHEMA_REGISTRY_URL:?TEST_SCHEMA_REGISTRY_URL must name the registry (deploy/local/services.sh env)}"

export SCHEMA_REGISTRY_URL="$TEST_SCHEMA_REGISTRY_URL"
curl -fsS -m 10 -o /dev/null "$SCHEMA_REGISTRY_URL/subjects" || fail "no schema registry at $SCHEMA_REGISTRY_URL"
export AVRO_WIRE_FORMAT=confluent
SKU="$RUN_ID-DESK"

# (That it registered its event schemas shows below: its events carry registry ids that
# decode through the registry.)
start_processor

encode() { "$AP_TOOLS/test-encode-command" "$@"; }
echo "{\"type\":\"CreateBatch\",\"ref\":\"$RUN_ID-b1\",\"sku\":\"$SKU\",\"qty\":10,\"eta\":\"2030-05-06\"}" |
    encode >"$WORK_DIR/create.avro"
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o1\",\"sku\":\"$SKU\",\"qty\":4}" |
    encode --confluent "$SCHEMA_REGISTRY_URL" "$COMMAND_TOPIC-value" >"$WORK_DIR/allocate.avro"
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o2\",\"sku\":\"$SKU\",\"qty\":1}" |
    encode --break fingerprint >"$WORK_DIR/unknown.avro"
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o3\",\"sku\":\"$SKU\",\"qty\":1}" |
    encode --break truncate >"$WORK_DIR/truncated.avro"
[[ "$(head -c 2 "$WORK_DIR/create.avro" | od -An -tx1 | tr -d ' ')" == "c301" ]] || fail "not single-object framed"
[[ "$(head -c 1 "$WORK_DIR/allocate.avro" | od -An -tx1 | tr -d ' ')" == "00" ]] || fail "not confluent framed"

for f in create allocate unknown truncated; do
    produce "$SKU" "$WORK_DIR/$f.avro"
done
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o4\",\"sku\":\"$SKU\",\"qty\":1}" | produce "$SKU"

allocated() { "$AP_BIN" allocations "$1" >/dev/null 2>&1; }
wait_for "o1 (Avro, confluent) allocated" 30 allocated "$RUN_ID-o1"
wait_for "o4 (JSON, after the bad Avro) allocated" 30 allocated "$RUN_ID-o4"
wait_for "every record committed" 30 all_records_committed
for o in o2 o3; do
    allocated "$RUN_ID-$o" && fail "$o came from damaged Avro and should not be allocated"
done

# Events are framed with registry ids and decode through the registry.
has_allocated() {
    topic_lines "$TOPIC_PREFIX.events.allocated" '%R%s' >"$WORK_DIR/events" && [[ -s "$WORK_DIR/events" ]] &&
        "$AP_BIN" decode <"$WORK_DIR/events" >"$WORK_DIR/events.json" &&
        grep -q "\"$RUN_ID-o4\"" "$WORK_DIR/events.json"
}
wait_for "Allocated events on their topic" 30 has_allocated
[[ "$(head -c 5 "$WORK_DIR/events" | tail -c 1 | od -An -tx1 | tr -d ' ')" == "00" ]] ||
    fail "events should be framed confluent (0x00)"
jq -c "select(.orderid == \"$RUN_ID-o1\" and .qty == 4 and .batchref == \"$RUN_ID-b1\")" "$WORK_DIR/events.json" | grep -q . ||
    fail "Allocated(o1) not decoded: $(cat "$WORK_DIR/events.json")"

# Both damaged values are dead letters, byte for byte.
dead_letters() { [[ "$(topic_lines "$TOPIC_PREFIX.dead_letter" '%o\n' | wc -l)" -eq 2 ]]; }
wait_for "two dead letters" 30 dead_letters
topic_lines "$TOPIC_PREFIX.dead_letter" '%s' >"$WORK_DIR/dlq.bin"
cat "$WORK_DIR/unknown.avro" "$WORK_DIR/truncated.avro" | cmp -s - "$WORK_DIR/dlq.bin" ||
    fail "dead letters are not the input bytes"
stop_processor TERM
pass
