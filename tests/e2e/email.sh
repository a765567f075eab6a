#!/usr/bin/env bash
# The book's test_out_of_stock_email, against a real SMTP server (mailpit): an Allocate that
# no batch can take sends one email, from NOTIFY_EMAIL_FROM to NOTIFY_EMAIL_TO, whose body
# says "Out of stock for <sku>", with a Message-ID derived from the email's event id. The
# SMTP credentials (here a username and a password file) never reach the log.
source "$(dirname "$0")/lib_mail.sh"
require_services

SKU="$RUN_ID-POPULAR-CURTAINS"
PASSWORD="pw-$RUN_ID-never-logged"
printf '%s\n' "$PASSWORD" >"$WORK_DIR/smtp-password"
export SMTP_USERNAME="allocations" SMTP_PASSWORD_FILE="$WORK_DIR/smtp-password"

start_mailpit
start_processor

# bus.handle(CreateBatch("batch1", sku, 9, None)); bus.handle(Allocate("order1", sku, 10))
produce "$SKU" <<JSON
{"type":"CreateBatch","ref":"$RUN_ID-batch1","sku":"$SKU","qty":9,"eta":null}
{"type":"Allocate","orderid":"$RUN_ID-order1","sku":"$SKU","qty":10}
JSON

wait_for "the out-of-stock email" 60 mail_count_at_least 1
mail_list >"$WORK_DIR/mails"
[[ "$(wc -l <"$WORK_DIR/mails")" -eq 1 ]] || fail "expected one email, got: $(cat "$WORK_DIR/mails")"
read -r message_id to from subject <"$WORK_DIR/mails"
[[ "$from" == "allocations@example.com" ]] || fail "email from $from"
[[ "$to" == "stock@made.com" ]] || fail "email to $to"
[[ "$subject" == "Out of stock: $SKU" ]] || fail "email subject: $subject"
mail_text "$message_id" >"$WORK_DIR/text"
grep -qF "Out of stock for $SKU" "$WORK_DIR/text" || fail "email body: $(cat "$WORK_DIR/text")"
# <event id>@<the sender's domain>, the id being a uuid.
[[ "$message_id" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}@example\.com$ ]] ||
    fail "Message-ID $message_id is not <uuid@example.com>"
mail_headers "$message_id" | jq -e '.["Auto-Submitted"][0] == "auto-generated"' >/dev/null ||
    fail "no Auto-Submitted header"
grep -q "sent <$message_id> to stock@made.com" "$PROCESSOR_LOG" || fail "the processor did not log the email it sent"

# The row went once the server took it; the OutOfStock event went to Kafka as before.
wait_for "the email row deleted" 30 email_rows_are 0
deliveries=$(curl -s "$(http_base)/metrics" | awk '$1 == "allocation_email_deliveries_total" {print $2}')
[[ "$deliveries" == 1 ]] || fail "allocation_email_deliveries_total is '$deliveries', expected 1"
# The relay delivers the event on its own schedule: the email can go first.
out_of_stock_on_kafka() { decoded_events out_of_stock | grep -q "\"sku\":\"$SKU\""; }
wait_for "the OutOfStock event on Kafka" 30 out_of_stock_on_kafka
# The Message-ID is the OutOfStock event's own id, the event-id header it carries on Kafka.
event_id=$(topic_lines "$TOPIC_PREFIX.events.out_of_stock" '%h\n' | grep -o 'event-id=[0-9a-f-]*' | cut -d= -f2)
[[ -n "$event_id" && "$message_id" == "$event_id@example.com" ]] ||
    fail "Message-ID $message_id is not the OutOfStock event's id ($event_id) at example.com"

# The same allocation applied (the batch grew), then nothing more is sent for it.
produce "$SKU" <<JSON
{"type":"ChangeBatchQuantity","ref":"$RUN_ID-batch1","qty":10}
{"type":"Allocate","orderid":"$RUN_ID-order1","sku":"$SKU","qty":10}
JSON
wait_for "every command committed" 60 all_records_committed
"$AP_BIN" allocations "$RUN_ID-order1" | grep -q "$RUN_ID-batch1" || fail "order1 not allocated"
stop_processor TERM
[[ "$(mail_count)" -eq 1 ]] || fail "expected still one email, got $(mail_count)"

! grep -qF "$PASSWORD" "$PROCESSOR_LOG" || fail "the SMTP password is in the log"
pass
