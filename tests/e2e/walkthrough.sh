#!/usr/bin/env bash
# The README's walkthrough, as a person does it: start the processor, produce commands with
# kcat, read the read model with the CLI. Also: rejected and undecodable input is skipped
# without blocking the partition, and SIGTERM ends the processor with exit code 0.
source "$(dirname "$0")/lib.sh"
require_services

SKU="$RUN_ID-RED-CHAIR"
start_processor

produce "$SKU" <<JSON
{"type":"CreateBatch","ref":"$RUN_ID-b1","sku":"$SKU","qty":100,"eta":null}
{"type":"Allocate","orderid":"$RUN_ID-o1","sku":"$SKU","qty":10}
JSON

allocated() { "$AP_BIN" allocations "$RUN_ID-o1" >"$WORK_DIR/out" 2>/dev/null; }
wait_for "order o1 in the read model" 30 allocated
expected="[{\"sku\":\"$SKU\",\"batchref\":\"$RUN_ID-b1\"}]"
[[ "$(cat "$WORK_DIR/out")" == "$expected" ]] || fail "allocations printed $(cat "$WORK_DIR/out"), expected $expected"

# An unknown order: exit 1 and "not found".
rc=0
"$AP_BIN" allocations "$RUN_ID-nobody" >"$WORK_DIR/out" 2>"$WORK_DIR/err" || rc=$?
[[ $rc -eq 1 ]] || fail "allocations of an unknown order exited $rc, expected 1"
grep -qx "not found" "$WORK_DIR/err" || fail "expected 'not found' on stderr, got: $(cat "$WORK_DIR/err")"

# Garbage, a refused command and a command of the wrong shape, then a good one on the same
# partition (same key): the good one is applied, so nothing blocked the partition.
produce "$SKU" <<JSON
this is not json
{"type":"Allocate","orderid":"$RUN_ID-o2","sku":"$RUN_ID-NO-SUCH-SKU","qty":1}
{"type":"Allocate","orderid":"$RUN_ID-o3","sku":"$SKU","qty":"ten"}
{"type":"ChangeBatchQuantity","ref":"$RUN_ID-b1","qty":-5}
{"type":"Allocate","orderid":"$RUN_ID-o4","sku":"$SKU","qty":5}
JSON
allocated_o4() { "$AP_BIN" allocations "$RUN_ID-o4" >/dev/null 2>&1; }
wait_for "order o4 after the bad input" 30 allocated_o4
wait_for "every record committed" 30 all_records_committed
[[ "$(committed_records)" -eq 7 ]] || fail "expected 7 committed records, got $(committed_records)"
# What was skipped was reported, where a consumer of ours reads it: the garbage on the
# dead-letter topic as it came, three rejections on the rejections topic.
wait_for "the outbox relayed" 30 outbox_empty
[[ "$(topic_lines "$TOPIC_PREFIX.dead_letter" '%s\n')" == "this is not json" ]] ||
    fail "expected the undecodable record on the dead-letter topic, got: $(topic_lines "$TOPIC_PREFIX.dead_letter" '%s\n')"
topic_lines "$TOPIC_PREFIX.events.command_rejected" '%R%s' | "$AP_BIN" decode >"$WORK_DIR/rejected.json"
rejected() { jq -r "select(.reason == \"$1\") | .message" "$WORK_DIR/rejected.json"; }
[[ "$(rejected invalid_sku)" == "Invalid sku $RUN_ID-NO-SUCH-SKU" ]] ||
    fail "expected one invalid_sku rejection, got: $(cat "$WORK_DIR/rejected.json")"
[[ "$(rejected invalid_command | wc -l)" -eq 2 && "$(wc -l <"$WORK_DIR/rejected.json")" -eq 3 ]] ||
    fail "expected two invalid_command rejections and no others, got: $(cat "$WORK_DIR/rejected.json")"
[[ "$(sql "select count(*) from allocations_view where orderid like '$RUN_ID-%'")" -eq 2 ]] ||
    fail "expected exactly 2 rows in the read model"
# One version per accepted change: the batch and two allocations.
[[ "$(sql "select version_number from products where sku = '$SKU'")" -eq 3 ]] ||
    fail "expected version 3, got $(sql "select version_number from products where sku = '$SKU'")"

stop_processor TERM
pass
