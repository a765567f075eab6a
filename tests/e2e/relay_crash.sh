#!/usr/bin/env bash
# The processor is killed (SIGKILL) while the outbox holds committed events that Kafka has
# not acknowledged; after a restart every event is delivered, and any event delivered twice
# carries the same event-id both times.
source "$(dirname "$0")/lib.sh"
require_services

ORDERS=200
SKU="$RUN_ID-SOFA"
{
    printf '{"type":"CreateBatch","ref":"%s-b1","sku":"%s","qty":100000}\n' "$RUN_ID" "$SKU"
    for ((i = 1; i <= ORDERS; i++)); do
        printf '{"type":"Allocate","orderid":"%s-o%d","sku":"%s","qty":1}\n' "$RUN_ID" "$i" "$SKU"
    done
} | produce "$SKU"

# A producer that waits 4 s before sending anything keeps the relay's rows undelivered.
KAFKA_LINGER_MS=4000 start_processor
wait_for "every command committed" 60 all_records_committed
rows=$(outbox_rows)
[[ "$rows" -gt 0 ]] || fail "precondition: the outbox should still hold undelivered rows"
stop_processor KILL
echo "killed with $rows undelivered outbox rows"

start_processor
wait_for "the outbox to drain" 60 outbox_empty
allocated_all() {
    events_with_ids allocated >"$WORK_DIR/allocated"
    [[ "$(jq -R 'split(" ") | .[0]' "$WORK_DIR/allocated" | sort -u | wc -l)" -ge "$ORDERS" ]]
}
wait_for "every Allocated event on its topic" 60 allocated_all
stop_processor TERM

# Each event-id stands for one event: the same id never carries two different values, and
# there are exactly ORDERS of them, one per order.
ids=$(cut -d' ' -f1 "$WORK_DIR/allocated" | sort -u | wc -l)
pairs=$(sort -u "$WORK_DIR/allocated" | wc -l)
orders=$(cut -d' ' -f2- "$WORK_DIR/allocated" | jq -r .orderid | sort -u | wc -l)
total=$(wc -l <"$WORK_DIR/allocated")
echo "$total Allocated messages, $ids distinct event-ids, $orders orders"
[[ "$ids" -eq "$ORDERS" ]] || fail "expected $ORDERS distinct event-ids, got $ids"
[[ "$pairs" -eq "$ids" ]] || fail "an event-id was delivered with two different values"
[[ "$orders" -eq "$ORDERS" ]] || fail "expected $ORDERS orders allocated, got $orders"
# Per-sku order: the first delivery of each order follows the order of the commands.
cut -d' ' -f2- "$WORK_DIR/allocated" | jq -r .orderid | awk '!seen[$0]++' | sed "s/^$RUN_ID-o//" >"$WORK_DIR/seq"
seq 1 "$ORDERS" | cmp -s - "$WORK_DIR/seq" || fail "Allocated events out of command order"
pass
