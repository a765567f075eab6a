#!/usr/bin/env bash
# Backpressure: when the outbox holds more than BACKPRESSURE_MAX_ROWS undelivered rows, the
# processor stops consuming until the relay has caught up, then goes on; nothing is lost.
# A producer that waits 1.5 s before each send (linger) keeps the relay slow.
source "$(dirname "$0")/lib.sh"
require_services

export BACKPRESSURE_MAX_ROWS=100 KAFKA_LINGER_MS=1500 BATCH_MAX_MESSAGES=50
ORDERS=600
SKU="$RUN_ID-LAMP"
{
    printf '%s\t{"type":"CreateBatch","ref":"%s-b1","sku":"%s","qty":100000}\n' "$SKU" "$RUN_ID" "$SKU"
    for ((i = 1; i <= ORDERS; i++)); do
        printf '%s\t{"type":"Allocate","orderid":"%s-o%d","sku":"%s","qty":1}\n' "$SKU" "$RUN_ID" "$i" "$SKU"
    done
} | produce_keyed

start_processor
# The outcomes, not the log: the allocation_backpressure_active gauge and the outbox's rows.
backpressure() { metric allocation_backpressure_active; }
paused() { [[ "$(backpressure)" == 1 ]]; }
wait_for "consumption to pause (allocation_backpressure_active 1)" 60 paused
# The backlog is judged before every batch and a pause drops what was fetched, so it passes
# the limit by one batch's events at most: here one event per command (Allocated).
rows=$(outbox_rows)
bound=$((BACKPRESSURE_MAX_ROWS + BATCH_MAX_MESSAGES))
[[ "$rows" -le "$bound" ]] || fail "the outbox grew to $rows rows while paused (bound $bound)"
[[ "$rows" -lt "$ORDERS" ]] || fail "the whole stream was consumed before the pause"
[[ "$(committed_records)" -lt "$ORDERS" ]] || fail "the whole stream was committed before the pause"
resumed() { [[ "$(backpressure)" == 0 ]]; }
wait_for "consumption to resume (allocation_backpressure_active 0)" 60 resumed
wait_for "every record committed" 120 all_records_committed
wait_for "the outbox to drain" 60 outbox_empty
got=$(sql "select count(*) from allocations_view where orderid like '$RUN_ID-o%'")
[[ "$got" -eq "$ORDERS" ]] || fail "expected $ORDERS allocations, found $got"
stop_processor TERM
pass
