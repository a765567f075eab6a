# lib_mail.sh - helpers for the email tests, on top of lib.sh: a mailpit SMTP server of the
# test's own (free ports picked at run time, so parallel runs never clash; its messages kept
# in a file, so they survive a restart of the server) and its JSON API to read what it got.
#
# mailpit is built once and cached outside the checkout by deploy/local/mailpit.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAILPIT_BIN="$(bash "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local/mailpit.sh")" ||
    fail "cannot build mailpit (deploy/local/mailpit.sh)"
MAILPIT_PID=""

# A TCP port nobody listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
SMTP_PORT="$(free_port)"
MAILPIT_HTTP_PORT="$(free_port)"
MAILPIT_API="http://127.0.0.1:$MAILPIT_HTTP_PORT/api/v1"

mailpit_answers() {
    kill -0 "$MAILPIT_PID" 2>/dev/null || fail "mailpit exited early (log: $WORK_DIR/mailpit.log)"
    curl -fsS "$MAILPIT_API/messages?limit=1" >/dev/null 2>&1
}

# Starts mailpit (again) on the test's ports. It accepts any SMTP credentials, in the clear.
start_mailpit() {
    "$MAILPIT_BIN" --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
        --database "$WORK_DIR/mailpit.db" --max 0 --smtp-auth-accept-any --smtp-auth-allow-insecure \
        --smtp-disable-rdns --disable-version-check >>"$WORK_DIR/mailpit.log" 2>&1 &
    MAILPIT_PID=$!
    wait_for "mailpit to answer" 30 mailpit_answers
}

stop_mailpit() {
    [[ -n "$MAILPIT_PID" ]] || return 0
    kill -TERM "$MAILPIT_PID" 2>/dev/null || true
    wait "$MAILPIT_PID" 2>/dev/null || true
    MAILPIT_PID=""
}

cleanup_mail() {
    stop_mailpit
    cleanup
}
trap cleanup_mail EXIT

# mail_list: one line per message mailpit holds, oldest first:
# "<Message-ID without brackets> <to> <from> <subject>".
mail_list() {
    curl -fsS "$MAILPIT_API/messages?limit=1000" |
        jq -r '.messages | reverse | .[] | "\(.MessageID) \([.To[].Address] | join(",")) \(.From.Address) \(.Subject)"'
}

# mail_count: how many messages mailpit holds.
mail_count() {
    curl -fsS "$MAILPIT_API/messages?limit=1" | jq -r '.messages_count // .total'
}

mail_count_is() { [[ "$(mail_count)" -eq "$1" ]]; }
mail_count_at_least() { [[ "$(mail_count)" -ge "$1" ]]; }

# mail_text MESSAGE-ID: the plain-text body of the message with that Message-ID.
mail_text() {
    local id
    id=$(curl -fsS "$MAILPIT_API/messages?limit=1000" | jq -r --arg m "$1" '.messages[] | select(.MessageID == $m) | .ID' | head -n1)
    [[ -n "$id" ]] || return 1
    curl -fsS "$MAILPIT_API/message/$id" | jq -r '.Text'
}

# mail_headers MESSAGE-ID: the message's headers as JSON ({"Name": ["value", ...]}).
mail_headers() {
    local id
    id=$(curl -fsS "$MAILPIT_API/messages?limit=1000" | jq -r --arg m "$1" '.messages[] | select(.MessageID == $m) | .ID' | head -n1)
    [[ -n "$id" ]] || return 1
    curl -fsS "$MAILPIT_API/message/$id/headers"
}

# email_rows: this test's rows still waiting in email_outbox.
email_rows() {
    sql "select count(*) from email_outbox where origin = '$TOPIC_PREFIX'"
}
email_rows_are() { [[ "$(email_rows)" -eq "$1" ]]; }

# The processor sends to this test's mailpit; failed emails come back within a second.
export SMTP_URL="smtp://127.0.0.1:$SMTP_PORT"
export NOTIFY_EMAIL_FROM="allocations@example.com"
export NOTIFY_EMAIL_TO="stock@made.com"
export EMAIL_RETRY_MAX_MS=1000
