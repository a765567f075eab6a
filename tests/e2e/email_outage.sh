#!/usr/bin/env bash
# The mail server goes down and comes back: emails written meanwhile stay in email_outbox,
# retried with backoff, and are all sent once it is back; nothing lost, nothing twice.
source "$(dirname "$0")/lib_mail.sh"
require_services

# out_of_stock N: a batch of 1 for sku N and an order of 2 for it, so one OutOfStock each.
out_of_stock() {
    local sku="$RUN_ID-S$1"
    produce "$sku" <<JSON
{"type":"CreateBatch","ref":"$RUN_ID-b$1","sku":"$sku","qty":1,"eta":null}
{"type":"Allocate","orderid":"$RUN_ID-o$1","sku":"$sku","qty":2}
JSON
}
tried_at_least() {
    [[ "$(sql "select count(*) from email_outbox where origin = '$TOPIC_PREFIX' and attempts >= $1")" -eq 3 ]]
}

start_mailpit
start_processor
out_of_stock 1
wait_for "the first email" 60 mail_count_is 1

stop_mailpit
for n in 2 3 4; do out_of_stock "$n"; done
wait_for "three emails waiting" 60 email_rows_are 3
# Each has been tried and failed more than once: the sender keeps retrying.
wait_for "every waiting email tried twice" 60 tried_at_least 2
# ... and each row says why its last attempt failed.
[[ "$(sql "select count(*) from email_outbox where origin = '$TOPIC_PREFIX' and coalesce(last_error, '') <> ''")" -eq 3 ]] ||
    fail "the failed attempts left no last_error on their rows"

start_mailpit
wait_for "the three emails, once the server is back" 60 mail_count_at_least 4
wait_for "the email rows deleted" 30 email_rows_are 0
kill -0 "$PROCESSOR_PID" || fail "the processor died"
stop_processor TERM

# Exactly one email per out-of-stock sku, each with its own Message-ID.
mail_list >"$WORK_DIR/mails"
[[ "$(wc -l <"$WORK_DIR/mails")" -eq 4 ]] || fail "expected 4 emails, got: $(cat "$WORK_DIR/mails")"
cut -d' ' -f4- "$WORK_DIR/mails" | sort >"$WORK_DIR/subjects"
printf 'Out of stock: %s\n' "$RUN_ID-S1" "$RUN_ID-S2" "$RUN_ID-S3" "$RUN_ID-S4" | sort >"$WORK_DIR/expected"
diff "$WORK_DIR/expected" "$WORK_DIR/subjects" >&2 || fail "the emails' subjects differ from the out-of-stock skus"
[[ "$(cut -d' ' -f1 "$WORK_DIR/mails" | sort -u | wc -l)" -eq 4 ]] || fail "Message-IDs repeat: $(cat "$WORK_DIR/mails")"
pass
