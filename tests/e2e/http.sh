#!/usr/bin/env bash
# The HTTP API (issue 10, sections 1, 2, 4, 6, 7): the book's API tests and more, against the
# running processor with real Kafka and Postgres, driven with curl.
#   - the happy path (add_batch 201, allocate 202 with batchref, GET allocations) and the
#     unhappy path (400 "Invalid sku X"); 404 for an order with no allocations;
#   - a repeated Idempotency-Key answers the first outcome and is applied once; a kcat
#     command carrying an id already used is skipped too (one exactly-once path);
#   - every kind of bad request: bad JSON, missing field, wrong type, qty <= 0, a bad
#     Idempotency-Key (400 naming it), 413, 405, 404;
#   - /metrics moves as commands flow and passes `promtool check metrics`;
#   - with LOG_FORMAT=json, lines about a command carry its correlation and message ids;
#   - a pending answer (HTTP_COMMAND_WAIT_MS=0) followed by GET /commands/{id};
#   - HTTP_AUTH_TOKEN_FILE: commands need the bearer token, probes and metrics stay open.
source "$(dirname "$0")/lib.sh"
require_services
command -v promtool >/dev/null || fail "promtool not found (Debian package prometheus; deploy/local/deps.sh)"
export LOG_FORMAT=json

SKU="$RUN_ID-LAMP"
BATCH="$RUN_ID-b1"

# request METHOD PATH [BODY [curl args...]]: prints "<status> <body>".
request() {
    local method="$1" path="$2" body="${3:-}"
    shift 3 2>/dev/null || shift $#
    local args=(-s -o "$WORK_DIR/body" -w '%{http_code}' -X "$method" "$BASE$path")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    local status
    status=$(curl "${args[@]}" "$@") || fail "curl $method $path failed"
    echo "$status $(cat "$WORK_DIR/body")"
}

# expect WHAT GOT WANT: GOT must equal WANT.
expect() {
    [[ "$2" == "$3" ]] || fail "$1: expected '$3', got '$2'"
}

# expect_400 WHAT BODY FIELD: a 400 whose message names FIELD.
expect_400() {
    local got
    got=$(request POST /allocate "$2")
    [[ "$got" == 400\ * ]] || fail "$1: expected 400, got '$got'"
    grep -q "$3" <<<"$got" || fail "$1: the message does not name '$3': $got"
}

start_processor
BASE=$(http_base)

# --- the book's API tests -------------------------------------------------------------------
expect "add_batch" "$(request POST /add_batch "{\"ref\":\"$BATCH\",\"sku\":\"$SKU\",\"qty\":100,\"eta\":null}")" '201 {"message":"OK"}'
expect "add_batch with an eta" "$(request POST /add_batch "{\"ref\":\"$RUN_ID-b2\",\"sku\":\"$SKU\",\"qty\":100,\"eta\":\"2011-01-02\"}")" '201 {"message":"OK"}'
expect "allocate (happy path)" "$(request POST /allocate "{\"orderid\":\"$RUN_ID-o1\",\"sku\":\"$SKU\",\"qty\":3}")" "202 {\"batchref\":\"$BATCH\"}"
expect "allocate (unhappy path)" "$(request POST /allocate "{\"orderid\":\"$RUN_ID-o2\",\"sku\":\"$RUN_ID-NOPE\",\"qty\":3}")" "400 {\"message\":\"Invalid sku $RUN_ID-NOPE\"}"
expect "GET allocations" "$(request GET "/allocations/$RUN_ID-o1")" "200 [{\"sku\":\"$SKU\",\"batchref\":\"$BATCH\"}]"
expect "GET allocations of an unknown order" "$(request GET "/allocations/$RUN_ID-none" | cut -d' ' -f1)" 404
echo "ok: the book's API tests"

# --- idempotency ----------------------------------------------------------------------------
KEY="$RUN_ID-key-1"
before=$(sql "select version_number from products where sku = '$SKU'")
first=$(request POST /allocate "{\"orderid\":\"$RUN_ID-o3\",\"sku\":\"$SKU\",\"qty\":2}" -H "Idempotency-Key: $KEY")
second=$(request POST /allocate "{\"orderid\":\"$RUN_ID-o3\",\"sku\":\"$SKU\",\"qty\":2}" -H "Idempotency-Key: $KEY")
expect "a repeated Idempotency-Key" "$second" "$first"
expect "the first answer" "$first" "202 {\"batchref\":\"$BATCH\"}"
after=$(sql "select version_number from products where sku = '$SKU'")
expect "versions moved by the keyed command" "$((after - before))" 1
got=$(request GET "/commands/$KEY")
expect "GET /commands/{key}" "$got" "200 {\"message_id\":\"$KEY\",\"command\":\"Allocate\",\"outcome\":\"applied\",\"status\":202,\"body\":{\"batchref\":\"$BATCH\"}}"
expect "GET /commands/{unknown}" "$(request GET "/commands/$RUN_ID-unknown" | cut -d' ' -f1)" 404
# The same id on a kcat command: skipped, whichever way it came. A command without an id
# follows it at once, often into the same batch, whose first attempt meets the stored id only
# when its outcome collides on the table's key; the batch is then rolled back and retried,
# and the new command must still be applied exactly once.
dup_before=$(metric 'allocation_commands_total{type="Allocate",outcome="duplicate"}')
before=$(sql "select version_number from products where sku = '$SKU'")
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o4\",\"sku\":\"$SKU\",\"qty\":1}" | produce "$SKU" -H "message-id=$KEY"
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o7\",\"sku\":\"$SKU\",\"qty\":1}" | produce "$SKU"
dup_counted() { [[ $(metric 'allocation_commands_total{type="Allocate",outcome="duplicate"}') == $((dup_before + 1)) ]]; }
wait_for "the kcat duplicate to be counted" 30 dup_counted
o7_applied() { [[ $(request GET "/allocations/$RUN_ID-o7" | cut -d' ' -f1) == 200 ]]; }
wait_for "the command after the duplicate to be applied" 30 o7_applied
expect "the kcat duplicate applied nothing" "$(request GET "/allocations/$RUN_ID-o4" | cut -d' ' -f1)" 404
after=$(sql "select version_number from products where sku = '$SKU'")
expect "versions moved by the duplicate and the command after it" "$((after - before))" 1
# No batch before had met a stored id, so that one was not looked up first: its outcome's key
# caught it, and its batch was retried once. Having met it, the consumer looks ids up first
# for its next batches: after a batch without ids, the same id again is skipped without
# another failed attempt.
id_retries() { grep -c "a message id applied before); retrying" "$PROCESSOR_LOG" || true; }
expect "batches retried on the stored id" "$(id_retries)" 1
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o8\",\"sku\":\"$SKU\",\"qty\":1}" | produce "$SKU"
o8_applied() { [[ $(request GET "/allocations/$RUN_ID-o8" | cut -d' ' -f1) == 200 ]]; }
wait_for "the command without an id to be applied" 30 o8_applied
echo "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o9\",\"sku\":\"$SKU\",\"qty\":1}" | produce "$SKU" -H "message-id=$KEY"
dup_counted_again() { [[ $(metric 'allocation_commands_total{type="Allocate",outcome="duplicate"}') == $((dup_before + 2)) ]]; }
wait_for "the same id again to be counted a duplicate" 30 dup_counted_again
expect "the same id again applied nothing" "$(request GET "/allocations/$RUN_ID-o9" | cut -d' ' -f1)" 404
expect "batches retried on the stored id, after it came again" "$(id_retries)" 1
# A new id on two records in a row (one produce call: one fetch, most often one batch): the
# first is applied, the second is a duplicate of it, whether the batch check or the table
# catches it.
dup_before=$(metric 'allocation_commands_total{type="Allocate",outcome="duplicate"}')
printf '%s\n' "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o5\",\"sku\":\"$SKU\",\"qty\":1}" \
    "{\"type\":\"Allocate\",\"orderid\":\"$RUN_ID-o6\",\"sku\":\"$SKU\",\"qty\":1}" |
    produce "$SKU" -H "message-id=$RUN_ID-key-2"
wait_for "the second record to be counted a duplicate" 30 dup_counted
expect "the first record of the pair" "$(request GET "/allocations/$RUN_ID-o5" | cut -d' ' -f1)" 200
expect "the second record of the pair" "$(request GET "/allocations/$RUN_ID-o6" | cut -d' ' -f1)" 404
echo "ok: a repeated key is applied once and answers the first outcome"

# --- bad requests ---------------------------------------------------------------------------
expect_400 "bad JSON" '{"orderid":' "invalid JSON"
expect_400 "not an object" '[1,2]' "JSON object"
expect_400 "a missing field" "{\"orderid\":\"o\",\"qty\":1}" "sku"
expect_400 "a wrong type" "{\"orderid\":\"o\",\"sku\":\"$SKU\",\"qty\":\"1\"}" "qty"
expect_400 "a string too long" "{\"orderid\":\"$(printf 'x%.0s' {1..300})\",\"sku\":\"$SKU\",\"qty\":1}" "orderid"
expect_400 "a zero quantity" "{\"orderid\":\"o\",\"sku\":\"$SKU\",\"qty\":0}" "qty"
expect_400 "a negative quantity" "{\"orderid\":\"o\",\"sku\":\"$SKU\",\"qty\":-5}" "qty"
got=$(request POST /add_batch "{\"ref\":\"$RUN_ID-b9\",\"sku\":\"$SKU\",\"qty\":5,\"eta\":\"tomorrow\"}")
[[ "$got" == 400\ *eta* ]] || fail "a bad eta: $got"
got=$(request POST /allocate "{\"orderid\":\"o\",\"sku\":\"$SKU\",\"qty\":1}" -H "Idempotency-Key: has space")
[[ "$got" == 400\ *Idempotency-Key* ]] || fail "a bad Idempotency-Key: $got"
head -c 70000 /dev/zero | tr '\0' 'x' >"$WORK_DIR/big"
got=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$WORK_DIR/big" "$BASE/allocate")
expect "a body over 64 KiB" "$got" 413
got=$(curl -s -D "$WORK_DIR/headers" -o /dev/null -w '%{http_code}' "$BASE/allocate")
expect "GET /allocate" "$got" 405
grep -qi '^Allow: POST' "$WORK_DIR/headers" || fail "405 without Allow: POST"
expect "POST /metrics" "$(request POST /metrics '{}' | cut -d' ' -f1)" 405
expect "an unknown path" "$(request GET /nowhere | cut -d' ' -f1)" 404
echo "ok: bad requests"

# --- metrics --------------------------------------------------------------------------------
applied=$(metric 'allocation_commands_total{type="Allocate",outcome="applied"}')
requests=$(metric 'allocation_http_requests_total{route="/allocate",code="202"}')
aged=$(metric 'allocation_batch_command_age_seconds_count')
for i in 1 2 3; do
    request POST /allocate "{\"orderid\":\"$RUN_ID-m$i\",\"sku\":\"$SKU\",\"qty\":1}" >/dev/null
done
expect "commands applied, counted" "$(metric 'allocation_commands_total{type="Allocate",outcome="applied"}')" $((applied + 3))
expect "HTTP requests, counted" "$(metric 'allocation_http_requests_total{route="/allocate",code="202"}')" $((requests + 3))
# The three commands came in one batch or more, and each batch observes its oldest command's age.
aged_now=$(metric 'allocation_batch_command_age_seconds_count')
[ "$aged_now" -gt "$aged" ] || fail "allocation_batch_command_age_seconds_count did not move ($aged -> $aged_now)"
curl -s "$BASE/metrics" >"$WORK_DIR/metrics.txt"
promtool check metrics <"$WORK_DIR/metrics.txt" || fail "promtool check metrics refused the exposition"
for family in allocation_commands_total allocation_batch_commands allocation_batch_duration_seconds \
    allocation_batch_command_age_seconds \
    allocation_event_delivery_latency_seconds allocation_outbox_backlog_rows allocation_outbox_oldest_age_seconds \
    allocation_relay_delivered_total allocation_relay_parked_total allocation_consumer_lag_messages \
    allocation_backpressure_active allocation_postgres_up allocation_kafka_up allocation_http_requests_total \
    allocation_build_info process_resident_memory_bytes process_cpu_seconds_total; do
    grep -q "^# TYPE $family " "$WORK_DIR/metrics.txt" || fail "/metrics lacks $family"
done
wait_for "the lag to be 0" 10 bash -c "curl -s '$BASE/metrics' | grep -q '^allocation_consumer_lag_messages{topic=\"$COMMAND_TOPIC\",partition=\"0\"} 0'"
echo "ok: metrics move and pass promtool"

# --- logs -----------------------------------------------------------------------------------
request POST /allocate "{\"orderid\":\"$RUN_ID-o5\",\"sku\":\"$RUN_ID-GONE\",\"qty\":1}" -H "Idempotency-Key: $RUN_ID-log" -H "X-Correlation-ID: $RUN_ID-corr" >/dev/null
wait_for "the rejection's log line" 10 grep -q "rejected (invalid_sku)" "$PROCESSOR_LOG"
line=$(grep "rejected (invalid_sku)" "$PROCESSOR_LOG" | grep "$RUN_ID-GONE" | tail -n 1)
jq -e --arg c "$RUN_ID-corr" --arg m "$RUN_ID-log" '.correlation_id == $c and .message_id == $m' <<<"$line" >/dev/null ||
    fail "the rejection's log line lacks its ids: $line"
echo "ok: JSON log lines carry correlation and message ids"

# --- pending, then /commands/{id} ---------------------------------------------------------
stop_processor
PROCESSOR_LOG="$WORK_DIR/processor-pending.log" # a fresh log: start_processor waits on it
HTTP_COMMAND_WAIT_MS=0 start_processor
BASE=$(http_base)
got=$(curl -s -D "$WORK_DIR/headers" -o "$WORK_DIR/body" -w '%{http_code}' -X POST \
    --data-binary "{\"orderid\":\"$RUN_ID-o6\",\"sku\":\"$SKU\",\"qty\":1}" "$BASE/allocate")
expect "an answer not known in time" "$got" 202
id=$(jq -r .message_id "$WORK_DIR/body")
expect "the pending body" "$(jq -r .status "$WORK_DIR/body")" pending
grep -qi "^Location: /commands/$id" "$WORK_DIR/headers" || fail "no Location: /commands/$id"
wait_for "the pending command's outcome" 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$BASE/commands/$id') == 200 ]]"
expect "its outcome" "$(curl -s "$BASE/commands/$id" | jq -c .body)" "{\"batchref\":\"$BATCH\"}"
echo "ok: pending, then /commands/{id}"

# --- access ---------------------------------------------------------------------------------
stop_processor
echo "s3cret-$RUN_ID" >"$WORK_DIR/token"
PROCESSOR_LOG="$WORK_DIR/processor-token.log"
HTTP_AUTH_TOKEN_FILE="$WORK_DIR/token" start_processor
BASE=$(http_base)
body="{\"ref\":\"$RUN_ID-b3\",\"sku\":\"$SKU\",\"qty\":1,\"eta\":null}"
expect "no token" "$(request POST /add_batch "$body" | cut -d' ' -f1)" 401
expect "a wrong token" "$(request POST /add_batch "$body" -H "Authorization: Bearer s3cret" | cut -d' ' -f1)" 401
expect "the token" "$(request POST /add_batch "$body" -H "Authorization: Bearer s3cret-$RUN_ID" | cut -d' ' -f1)" 201
expect "healthz stays open" "$(request GET /healthz | cut -d' ' -f1)" 200
expect "metrics stay open" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")" 200
expect "queries stay open" "$(request GET "/allocations/$RUN_ID-o1" | cut -d' ' -f1)" 200
grep -q "s3cret" "$PROCESSOR_LOG" && fail "the token appears in the log"
echo "ok: bearer token"

stop_processor
pass
