#!/usr/bin/env bash
# Extra input topics through COMMAND_TOPICS: a topic named <prefix>.commands.<type> implies
# its command type, a `command-type` header names it explicitly, and topics the processor
# creates get TOPIC_PARTITIONS partitions.
source "$(dirname "$0")/lib.sh"
require_services

export TOPIC_PARTITIONS=4
ALLOCATE_TOPIC="$TOPIC_PREFIX.commands.allocate"
export COMMAND_TOPICS="$COMMAND_TOPIC,$ALLOCATE_TOPIC"
SKU="$RUN_ID-LAMP"

start_processor
for topic in "$COMMAND_TOPIC" "$ALLOCATE_TOPIC"; do
    n=$(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -t "$topic" -J | jq '.topics[0].partitions | length')
    [[ "$n" -eq 4 ]] || fail "$topic has $n partitions, expected 4"
done

echo "{\"type\":\"CreateBatch\",\"ref\":\"$RUN_ID-b1\",\"sku\":\"$SKU\",\"qty\":10}" | produce "$SKU"
batch_exists() { [[ "$(sql "select count(*) from batches where reference = '$RUN_ID-b1'")" -eq 1 ]]; }
wait_for "the batch" 30 batch_exists

# No "type" at all: the typed topic says it is an Allocate.
echo "{\"orderid\":\"$RUN_ID-o1\",\"sku\":\"$SKU\",\"qty\":2}" |
    kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$ALLOCATE_TOPIC" -k "$SKU"
# A header wins over the body's type.
echo "{\"type\":\"CreateBatch\",\"orderid\":\"$RUN_ID-o2\",\"sku\":\"$SKU\",\"qty\":3}" |
    produce "$SKU" -H command-type=Allocate

allocated() { "$AP_BIN" allocations "$1" >/dev/null 2>&1; }
wait_for "o1 allocated from the typed topic" 30 allocated "$RUN_ID-o1"
wait_for "o2 allocated by its header" 30 allocated "$RUN_ID-o2"
[[ "$(sql "select sum(next_offset) from consumer_offsets where group_id = '$KAFKA_GROUP_ID' and topic = '$ALLOCATE_TOPIC' and next_offset > 0")" -eq 1 ]] ||
    fail "the typed topic's offset was not stored"
stop_processor TERM
pass
