#!/usr/bin/env bash
# The processor is killed (SIGKILL) while emails wait unsent (the mail server is down): they
# survive in email_outbox and are sent once it restarts, exactly those, each once, with the
# Message-ID derived from its row's event id.
source "$(dirname "$0")/lib_mail.sh"
require_services

export KAFKA_SESSION_TIMEOUT_MS=6000 KAFKA_HEARTBEAT_INTERVAL_MS=1000
EMAILS=5

start_mailpit
start_processor
stop_mailpit

for ((n = 1; n <= EMAILS; n++)); do
    sku="$RUN_ID-S$n"
    produce "$sku" <<JSON
{"type":"CreateBatch","ref":"$RUN_ID-b$n","sku":"$sku","qty":3,"eta":null}
{"type":"Allocate","orderid":"$RUN_ID-o$n","sku":"$sku","qty":4}
JSON
done
tried_once() {
    [[ "$(sql "select count(*) from email_outbox where origin = '$TOPIC_PREFIX' and attempts >= 1")" -eq "$EMAILS" ]]
}
wait_for "$EMAILS emails waiting, each tried" 60 tried_once
sql "select event_id || '@example.com' from email_outbox where origin = '$TOPIC_PREFIX' order by 1" >"$WORK_DIR/expected"

stop_processor KILL
email_rows_are "$EMAILS" || fail "rows lost with the processor: $(email_rows) left"

start_mailpit
start_processor
wait_for "the $EMAILS emails after the restart" 60 mail_count_at_least "$EMAILS"
wait_for "the email rows deleted" 30 email_rows_are 0
stop_processor TERM

mail_list | cut -d' ' -f1 | sort >"$WORK_DIR/received"
diff "$WORK_DIR/expected" "$WORK_DIR/received" >&2 ||
    fail "the Message-IDs received differ from the rows' event ids (above: expected vs received)"
pass
