#!/usr/bin/env bash
# A stream of commands with the processor killed (SIGKILL) and stopped (SIGTERM) in the
# middle of it: afterwards every command is applied exactly once. Allocations show that none
# was lost; ChangeBatchQuantity bumps its product's version on every application, so that
# version counts applications and shows that none was applied twice.
source "$(dirname "$0")/lib.sh"
require_services

# A killed member holds its partitions until its session times out: keep that short (and
# exercise the KAFKA_<NAME> pass-through while at it).
export KAFKA_SESSION_TIMEOUT_MS=6000 KAFKA_HEARTBEAT_INTERVAL_MS=1000

SKUS=5
ALLOCS_PER_PHASE=1500
CHANGES=600
COUNTER_SKU="$RUN_ID-COUNTER"

# commands FIRST LAST: allocations FIRST..LAST spread over the skus, interleaved with
# quantity changes of the counter batch (keyed by its sku, so they stay in order).
commands() {
    local i
    for ((i = $1; i <= $2; i++)); do
        local sku="$RUN_ID-S$((i % SKUS))"
        printf '%s\t{"type":"Allocate","orderid":"%s-o%d","sku":"%s","qty":1}\n' "$sku" "$RUN_ID" "$i" "$sku"
        if ((i % 4 == 0 && i / 4 <= CHANGES)); then
            printf '%s\t{"type":"ChangeBatchQuantity","ref":"%s-counter","qty":%d}\n' "$COUNTER_SKU" "$RUN_ID" "$((i / 4))"
        fi
    done
}

{
    for ((s = 0; s < SKUS; s++)); do
        printf '%s\t{"type":"CreateBatch","ref":"%s-b%d","sku":"%s","qty":100000}\n' "$RUN_ID-S$s" "$RUN_ID" "$s" "$RUN_ID-S$s"
    done
    printf '%s\t{"type":"CreateBatch","ref":"%s-counter","sku":"%s","qty":0}\n' "$COUNTER_SKU" "$RUN_ID" "$COUNTER_SKU"
    commands 1 "$ALLOCS_PER_PHASE"
} | produce_keyed


start_processor
wait_for "some records committed" 60 committed_at_least 100
stop_processor KILL
killed_at=$(committed_records)

# More arrives while it is down; the restarted processor is stopped (SIGTERM) in the middle.
commands $((ALLOCS_PER_PHASE + 1)) $((ALLOCS_PER_PHASE + 500)) | produce_keyed
start_processor
wait_for "more records committed" 60 committed_at_least $((killed_at + 100))
stop_processor TERM
termed_at=$(committed_records)

# The rest of the stream arrives while the processor is down, and after it is back.
commands $((ALLOCS_PER_PHASE + 501)) $((2 * ALLOCS_PER_PHASE - 50)) | produce_keyed
start_processor
commands $((2 * ALLOCS_PER_PHASE - 49)) $((2 * ALLOCS_PER_PHASE)) | produce_keyed
wait_for "every record committed" 180 all_records_committed
stop_processor TERM

total=$((2 * ALLOCS_PER_PHASE))
echo "killed after $killed_at, stopped after $termed_at committed records; $(produced_records) produced in all"
got=$(sql "select count(*) from allocations a join batches b on b.id = a.batch_id where b.sku like '$RUN_ID-S%'")
[[ "$got" -eq "$total" ]] || fail "expected $total allocations, found $got"
got=$(sql "select count(distinct orderid) from allocations_view where orderid like '$RUN_ID-o%'")
[[ "$got" -eq "$total" ]] || fail "expected $total orders in the read model, found $got"
got=$(sql "select sum(version_number) from products where sku like '$RUN_ID-S%'")
[[ "$got" -eq $((SKUS + total)) ]] || fail "expected versions to sum to $((SKUS + total)), got $got"
got=$(sql "select version_number from products where sku = '$COUNTER_SKU'")
[[ "$got" -eq $((1 + CHANGES)) ]] || fail "ChangeBatchQuantity applied $((got - 1)) times, expected $CHANGES"
got=$(sql "select purchased_quantity from batches where reference = '$RUN_ID-counter'")
[[ "$got" -eq "$CHANGES" ]] || fail "the counter batch holds $got, expected $CHANGES"
pass
