#!/usr/bin/env bash
# Events out: the book's reallocation scenario, out of stock, a rejection and a dead letter,
# each read back from its Kafka topic (decoded with `allocation-processor decode`), with the
# headers docs/topics.md promises.
source "$(dirname "$0")/lib.sh"
require_services

SKU="$RUN_ID-TABLE"
start_processor

# The book: two orders fill batch b1, b1 shrinks, the later order moves to the shipment b2.
produce "$SKU" -H "message-id=$RUN_ID-m1" -H "correlation-id=$RUN_ID-c1" \
    -H "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" <<JSON
{"type":"CreateBatch","ref":"$RUN_ID-b1","sku":"$SKU","qty":50,"eta":null}
JSON
produce "$SKU" <<JSON
{"type":"CreateBatch","ref":"$RUN_ID-b2","sku":"$SKU","qty":50,"eta":"2031-01-02"}
{"type":"Allocate","orderid":"$RUN_ID-o1","sku":"$SKU","qty":20}
{"type":"Allocate","orderid":"$RUN_ID-o2","sku":"$SKU","qty":20}
{"type":"ChangeBatchQuantity","ref":"$RUN_ID-b1","qty":25}
{"type":"Allocate","orderid":"$RUN_ID-o3","sku":"$SKU","qty":1000}
{"type":"Allocate","orderid":"$RUN_ID-o4","sku":"$RUN_ID-NOPE","qty":1}
JSON
printf 'definitely not a command' | produce "$SKU" -H "x-origin=e2e"

reallocated() {
    decoded_events allocated >"$WORK_DIR/allocated"
    jq -c --arg o "$RUN_ID-o2" --arg b "$RUN_ID-b2" \
        'select(.orderid == $o and .batchref == $b)' "$WORK_DIR/allocated" | grep -q .
}
wait_for "Allocated(o2 -> b2) on the allocated topic" 60 reallocated
# Exactly: o1 -> b1, o2 -> b1, then o2 -> b2, in that order (one sku, one partition).
jq -r --arg p "$RUN_ID-" 'select(.orderid | startswith($p)) | "\(.orderid)>\(.batchref)"' \
    "$WORK_DIR/allocated" | sed "s/$RUN_ID-//g" | paste -sd' ' >"$WORK_DIR/order"
[[ "$(cat "$WORK_DIR/order")" == "o1>b1 o2>b1 o2>b2" ]] || fail "allocated events: $(cat "$WORK_DIR/order")"

# (jq -e succeeds on empty input, so look for a line of output instead.)
# The read model followed: o2 now lives in b2.
"$AP_BIN" allocations "$RUN_ID-o2" >"$WORK_DIR/o2"
[[ "$(cat "$WORK_DIR/o2")" == "[{\"sku\":\"$SKU\",\"batchref\":\"$RUN_ID-b2\"}]" ]] ||
    fail "allocations o2 printed $(cat "$WORK_DIR/o2")"

has_event() { decoded_events "$1" | jq -c "$2" | grep -q .; }
wait_for "Deallocated(o2 from b1)" 30 has_event deallocated \
    "select(.orderid == \"$RUN_ID-o2\" and .batchref == \"$RUN_ID-b1\" and .qty == 20)"
wait_for "BatchQuantityChanged(b1 = 25)" 30 has_event batch_quantity_changed \
    "select(.ref == \"$RUN_ID-b1\" and .qty == 25 and .sku == \"$SKU\")"
wait_for "BatchCreated(b2, eta 2031-01-02)" 30 has_event batch_created \
    "select(.ref == \"$RUN_ID-b2\" and .eta == \"2031-01-02\" and .qty == 50)"
wait_for "OutOfStock($SKU)" 30 has_event out_of_stock "select(.sku == \"$SKU\")"
wait_for "CommandRejected(Invalid sku)" 30 has_event command_rejected \
    "select(.reason == \"invalid_sku\" and .message == \"Invalid sku $RUN_ID-NOPE\" and .command_type == \"Allocate\")"
# Without SMTP_URL the email sender writes the email to the log (email*.sh test SMTP).
logged_email() {
    grep -q "SMTP_URL is not set): to=stock@made.com subject=\"Out of stock: $SKU\" body=\"Out of stock for $SKU\"" "$PROCESSOR_LOG"
}
wait_for "the out-of-stock email for $SKU in the log" 30 logged_email

# Headers: event-id, event-type, and the command's provenance carried on.
created_headers() { topic_lines "$TOPIC_PREFIX.events.batch_created" '%h\n' | grep "$RUN_ID-c1" >"$WORK_DIR/h"; }
wait_for "BatchCreated(b1) headers" 30 created_headers
h="$(cat "$WORK_DIR/h")"
for want in "event-type=BatchCreated" "correlation-id=$RUN_ID-c1" "causation-id=$RUN_ID-m1" \
    "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"; do
    [[ ",$h," == *",$want,"* ]] || fail "BatchCreated headers lack $want: $h"
done
[[ "$h" =~ event-id=[0-9a-f]{8}-[0-9a-f]{4}- ]] || fail "no event-id header: $h"
topic_lines "$TOPIC_PREFIX.events.allocated" '%k %h\n' | grep "^$SKU " | grep -q "causation-id=$COMMAND_TOPIC/" ||
    fail "events of commands without a message-id should name the record as their causation"

# The dead letter: key, value and headers unchanged, plus the dlq-* headers.
dead_lettered() { topic_lines "$TOPIC_PREFIX.dead_letter" '%k|%s|%h\n' >"$WORK_DIR/dlq" && [[ -s "$WORK_DIR/dlq" ]]; }
wait_for "the dead letter" 30 dead_lettered
IFS='|' read -r key value headers <"$WORK_DIR/dlq"
[[ "$key" == "$SKU" && "$value" == "definitely not a command" ]] || fail "dead letter: $(cat "$WORK_DIR/dlq")"
for want in "x-origin=e2e" "dlq-source-topic=$COMMAND_TOPIC" "dlq-source-partition=" "dlq-source-offset=7" "dlq-reason="; do
    [[ "$headers" == *"$want"* ]] || fail "dead-letter headers lack $want: $headers"
done

wait_for "the outbox to drain" 30 outbox_empty
stop_processor TERM
pass
