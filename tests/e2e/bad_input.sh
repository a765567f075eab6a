#!/usr/bin/env bash
# Bad input never stops the processor or blocks its partition: every kind below ends as a
# dead letter (undecodable) or a CommandRejected event (a command the domain refuses), and a
# good command after all of them, on the same partition, is applied.
source "$(dirname "$0")/lib.sh"
require_services

SKU="$RUN_ID-CHAIR"
start_processor
echo "{\"type\":\"CreateBatch\",\"ref\":\"$RUN_ID-b1\",\"sku\":\"$SKU\",\"qty\":10}" | produce "$SKU"

bad="$WORK_DIR/bad"
mkdir -p "$bad"
printf '{"type":"Allocate",' >"$bad/01-invalid-json"
printf '[1,2,3]' >"$bad/02-not-an-object"
printf '{"type":"Teleport","sku":"%s"}' "$SKU" >"$bad/03-unknown-type"
: >"$bad/04-empty"
: >"$bad/04-null"
head -c 900000 /dev/zero | tr '\0' 'x' >"$bad/05-huge"
printf '{"type":"Allocate","orderid":"o\xff\xfe","sku":"%s","qty":1}' "$SKU" >"$bad/06-invalid-utf8"
printf '\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x02\x00' >"$bad/07-avro-unknown-fingerprint"
printf '\x00\x00\x0f\x42\x3f\x02' >"$bad/08-avro-unknown-schema-id"
echo "{\"type\":\"Allocate\",\"orderid\":\"x\",\"sku\":\"$SKU\",\"qty\":1}" |
    "$AP_TOOLS/test-encode-command" --break truncate >"$bad/09-avro-truncated"
undecodable=$(ls "$bad" | wc -l)
printf '{"type":"Allocate","orderid":"%s-o1","sku":"%s","qty":"ten"}' "$RUN_ID" "$SKU" >"$bad/10-wrong-type"
printf '{"type":"Allocate","orderid":"%s-o2","sku":"%s"}' "$RUN_ID" "$SKU" >"$bad/11-missing-field"
printf '{"type":"Allocate","orderid":"%s-o3","sku":"%s","qty":0}' "$RUN_ID" "$SKU" >"$bad/12-zero-qty"
printf '{"type":"CreateBatch","ref":"%s-b1","sku":"%s","qty":99}' "$RUN_ID" "$SKU" >"$bad/13-batch-exists"
printf '{"type":"ChangeBatchQuantity","ref":"%s-nope","qty":1}' "$RUN_ID" >"$bad/14-unknown-batch"
printf '{"type":"CreateBatch","ref":"%s-b9","sku":"%s","qty":1,"eta":"2026-02-30"}' "$RUN_ID" "$SKU" >"$bad/15-bad-date"
rejected=$(($(ls "$bad" | wc -l) - undecodable))

# One message per file, all keyed by the sku: one partition, in this order. kcat skips empty
# values, so the empty and the null one go through a small producer of our own.
for f in "$bad"/*; do
    case "$f" in
    *-empty) "$AP_TOOLS/test-produce" "$COMMAND_TOPIC" "$SKU" <"$f" ;;
    *-null) "$AP_TOOLS/test-produce" "$COMMAND_TOPIC" "$SKU" --null ;;
    *) produce "$SKU" "$f" ;;
    esac
done
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-good\",\"sku\":\"$SKU\",\"qty\":2}" | produce "$SKU"

good() { "$AP_BIN" allocations "$RUN_ID-good" >/dev/null 2>&1; }
wait_for "the good command after the bad ones" 60 good
wait_for "every record committed" 30 all_records_committed
count_on() { topic_lines "$1" '%o\n' | wc -l; }
all_reported() {
    [[ "$(count_on "$TOPIC_PREFIX.dead_letter")" -eq "$undecodable" &&
        "$(count_on "$TOPIC_PREFIX.events.command_rejected")" -eq "$rejected" ]]
}
wait_for "$undecodable dead letters and $rejected rejections" 60 all_reported

# The huge value survived as a dead letter, byte for byte.
topic_lines "$TOPIC_PREFIX.dead_letter" '%S\n' | grep -qx 900000 || fail "the huge value was not dead-lettered whole"
topic_lines "$TOPIC_PREFIX.events.command_rejected" '%R%s' | "$AP_BIN" decode >"$WORK_DIR/rejected.json"
for reason in invalid_command batch_exists unknown_batch; do
    jq -c "select(.reason == \"$reason\")" "$WORK_DIR/rejected.json" | grep -q . || fail "no $reason rejection"
done
[[ "$(jq -r .reason "$WORK_DIR/rejected.json" | sort | uniq -c | awk '{print $1 $2}' | paste -sd,)" == \
    "1batch_exists,4invalid_command,1unknown_batch" ]] || fail "rejections: $(cat "$WORK_DIR/rejected.json")"
kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "the processor stopped"
stop_processor TERM
pass
