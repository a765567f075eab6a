#!/usr/bin/env bash
# No secret leaks (issue 13, section 1): every command runs with known, distinctive secrets (the
# Postgres password, the SASL password, the HTTP token, the SMTP user and password and a password
# in SMTP_URL), and none of them may appear in anything the processor says: log lines (at debug,
# in text and in JSON, with librdkafka's own security and configuration debugging on), error
# messages, HTTP answers, /metrics, the email it sends, or the headers (and keys and values) of
# what it writes to Kafka, the dead-letter topic first of all.
#
# Covered: `run` over SASL_SSL and verify-full (commands that apply, one rejected, one dead-
# lettered, one out of stock so an email goes out with SMTP credentials, HTTP calls that succeed
# and fail: 401, 400, 404, 405, 413), `migrate`, `allocations` (found and not found), `decode`
# (good and bad input), refusals (wrong passwords: they are secrets too), and bad configurations
# of every kind, from the environment and from --config files.
source "$(dirname "$0")/lib_mail.sh"
source "$(dirname "$0")/lib_secure.sh"
require_services
require_secure_kafka
trap 'finish stop_mailpit stop_secure_pg' EXIT

PG_PORT=${AP_LEAK_PG_PORT:-$(secure_pg_port 2)}
TAG=$(date +%s%N | tail -c 8)
# Distinctive: none of them can turn up by chance in a log line.
PG_PASSWORD="pgQx7Leak$TAG"
PG_WRONG_PASSWORD="pgWrongQx7Leak$TAG"
KAFKA_PASSWORD="kfQx7Leak$TAG"
KAFKA_WRONG_PASSWORD="kfWrongQx7Leak$TAG"
TOKEN="tkQx7Leak$TAG"
SMTP_USER="smtpUserQx7Leak$TAG"
SMTP_PW="smtpPwQx7Leak$TAG"
SMTP_URL_PW="smtpUrlQx7Leak$TAG"
SECRETS=("$PG_PASSWORD" "$PG_WRONG_PASSWORD" "$KAFKA_PASSWORD" "$KAFKA_WRONG_PASSWORD" "$TOKEN"
         "$SMTP_USER" "$SMTP_PW" "$SMTP_URL_PW")
OUT="$WORK_DIR/out"   # everything the processor said, one file per source
mkdir -p "$OUT"

SECURE_KAFKA_USER="$RUN_ID-leak"
SECURE_KAFKA_PASSWORD=$KAFKA_PASSWORD
DB_USER=ap_leak DB_NAME=allocation_leak
kafka_scram_user "$SECURE_KAFKA_USER" "$KAFKA_PASSWORD"
secure_pg_start "$PG_PORT" "$DB_USER" "$PG_PASSWORD" "$DB_NAME"
PG_PORT=$SECURE_PG_PORT
start_mailpit

URL=$(secure_url "$DB_USER" "$PG_PASSWORD" "$PG_PORT" "$DB_NAME")
URL_FILE=$(secret_file db-url "$URL")
KAFKA_PW_FILE=$(secret_file kafka-pw "$KAFKA_PASSWORD")
TOKEN_FILE=$(secret_file token "$TOKEN")
SMTP_PW_FILE=$(secret_file smtp-pw "$SMTP_PW")
mapfile -t KAFKA_SETTINGS < <(secure_kafka_env "$SECURE_KAFKA_USER" "$KAFKA_PW_FILE")

# `with_secrets COMMAND...` runs COMMAND with every secret set, from files and from the
# environment (env execs it: in the background, $! is the processor itself).
SECRET_ENV=(-u DATABASE_URL DATABASE_URL_FILE="$URL_FILE" "${KAFKA_SETTINGS[@]}"
            HTTP_AUTH_TOKEN_FILE="$TOKEN_FILE" SMTP_USERNAME="$SMTP_USER" SMTP_PASSWORD_FILE="$SMTP_PW_FILE"
            SMTP_URL="smtp://mailer:$SMTP_URL_PW@127.0.0.1:$SMTP_PORT")
with_secrets() { env "${SECRET_ENV[@]}" "$@"; }

# ---------------------------------------------------------------- run, with everything flowing
LOG="$OUT/run.log"
env "${SECRET_ENV[@]}" LOG_LEVEL=debug KAFKA_DEBUG=security,conf,broker "$AP_BIN" run >>"$LOG" 2>&1 &
PROCESSOR_PID=$!
PROCESSOR_LOG=$LOG
wait_for "the processor to be ready" 90 ready_200
BASE=$(http_base)
SKU="$RUN_ID-SKU"
secure_kcat -P -t "$COMMAND_TOPIC" -k "$SKU" <<CMDS
{"type":"CreateBatch","ref":"$RUN_ID-b1","sku":"$SKU","qty":10,"eta":null}
{"type":"Allocate","orderid":"$RUN_ID-o1","sku":"$SKU","qty":4}
{"type":"Allocate","orderid":"$RUN_ID-o2","sku":"$SKU","qty":400}
{"type":"Allocate","orderid":"$RUN_ID-o3","sku":"","qty":-1}
this is not a command
CMDS
# HTTP: each answer kept, right and wrong.
http() { # NAME ARGS...
    curl -s -D "$OUT/http-$1.headers" -o "$OUT/http-$1.body" -w '%{http_code}\n' "${@:2}" >>"$OUT/http-$1.status"
}
body="{\"ref\":\"$RUN_ID-b2\",\"sku\":\"$SKU-2\",\"qty\":5,\"eta\":null}"
http no-token -X POST --data-binary "$body" "$BASE/add_batch"
http wrong-token -X POST --data-binary "$body" -H "Authorization: Bearer nope" "$BASE/add_batch"
http token -X POST --data-binary "$body" -H "Authorization: Bearer $TOKEN" "$BASE/add_batch"
http bad-json -X POST --data-binary '{"ref":' -H "Authorization: Bearer $TOKEN" "$BASE/allocate"
http not-found "$BASE/nowhere"
http wrong-method -X DELETE "$BASE/allocate"
head -c 70000 /dev/zero | tr '\0' x >"$WORK_DIR/big"
http too-big -X POST --data-binary @"$WORK_DIR/big" -H "Authorization: Bearer $TOKEN" "$BASE/allocate"
http allocations "$BASE/allocations/$RUN_ID-o1"
http readyz "$BASE/readyz"
http healthz "$BASE/healthz"
grep -q '^401$' "$OUT/http-no-token.status" && grep -q '^401$' "$OUT/http-wrong-token.status" &&
    grep -q '^201$' "$OUT/http-token.status" && grep -q '^413$' "$OUT/http-too-big.status" ||
    fail "HTTP answers: $(tail -n +1 "$OUT"/http-*.status | tr '\n' ' ')"

dead_lettered() { [[ -n "$(secure_kcat -C -t "$TOPIC_PREFIX.dead_letter" -o beginning -e -q -f '%h\n' 2>/dev/null)" ]]; }
wait_for "the dead letter" 60 dead_lettered
wait_for "the out-of-stock email" 60 mail_count_at_least 1
rejected() { [[ -n "$(secure_kcat -C -t "$TOPIC_PREFIX.events.command_rejected" -o beginning -e -q -f '%h\n' 2>/dev/null)" ]]; }
wait_for "the rejection" 60 rejected
curl -s "$BASE/metrics" >"$OUT/metrics.txt"
grep -q '^allocation_' "$OUT/metrics.txt" || fail "no metrics scraped"
# Every topic of this run: keys, headers and values.
for topic in $(secure_kcat -L -J | jq -r --arg p "$TOPIC_PREFIX." '.topics[].topic | select(startswith($p))'); do
    secure_kcat -C -t "$topic" -o beginning -e -q -f 'key=%k headers=%h value=%s\n' >"$OUT/topic-$topic.txt" 2>/dev/null
done
grep -q 'headers=..' "$OUT/topic-$TOPIC_PREFIX.dead_letter.txt" ||
    fail "the dead letter has no headers: $(cat "$OUT/topic-$TOPIC_PREFIX.dead_letter.txt")"
for id in $(mail_list | cut -d' ' -f1); do
    { mail_headers "$id"; mail_text "$id"; } >>"$OUT/mail.txt"
done
kill -TERM "$PROCESSOR_PID"; wait "$PROCESSOR_PID" || fail "run exited $? after SIGTERM"
PROCESSOR_PID=""
note "run: $(wc -l <"$LOG") log lines at debug, $(ls "$OUT" | grep -c '^topic-') topics, $(mail_count) email(s)"

# The same in JSON, briefly.
env "${SECRET_ENV[@]}" LOG_LEVEL=debug LOG_FORMAT=json "$AP_BIN" run >>"$OUT/run-json.log" 2>&1 &
PROCESSOR_PID=$!
PROCESSOR_LOG="$OUT/run-json.log"
LOG=$PROCESSOR_LOG
wait_for "the JSON-logging processor to be ready" 90 ready_200
kill -TERM "$PROCESSOR_PID"; wait "$PROCESSOR_PID" || fail "run (json) exited $? after SIGTERM"
PROCESSOR_PID=""

# ---------------------------------------------------------------- the one-shot commands
with_secrets env LOG_LEVEL=debug "$AP_BIN" migrate >"$OUT/migrate.out" 2>&1 || fail "migrate failed"
with_secrets "$AP_BIN" allocations "$RUN_ID-o1" >"$OUT/allocations.out" 2>&1 || fail "allocations failed"
with_secrets "$AP_BIN" allocations "$RUN_ID-nope" >"$OUT/allocations-none.out" 2>&1 && fail "allocations of nothing succeeded"
secure_kcat -C -t "$TOPIC_PREFIX.events.allocated" -o beginning -e -q -f '%R%s' 2>/dev/null |
    with_secrets "$AP_BIN" decode >"$OUT/decode.out" 2>&1 || fail "decode of good events failed"
printf '\0\0\0\5hello' | with_secrets "$AP_BIN" decode >"$OUT/decode-bad.out" 2>&1 && fail "decode of garbage succeeded"
with_secrets "$AP_BIN" --help >"$OUT/help.out" 2>&1
with_secrets "$AP_BIN" nosuchcommand >"$OUT/unknown.out" 2>&1 && fail "an unknown command succeeded"

# Refusals: a wrong password is a secret too.
WRONG_URL_FILE=$(secret_file db-url-wrong "$(secure_url "$DB_USER" "$PG_WRONG_PASSWORD" "$PG_PORT" "$DB_NAME")")
with_secrets env DATABASE_URL_FILE="$WRONG_URL_FILE" LOG_LEVEL=debug "$AP_BIN" migrate >"$OUT/migrate-wrong.out" 2>&1 &&
    fail "migrate with a wrong password succeeded"
grep -q "authentication failed" "$OUT/migrate-wrong.out" || fail "migrate's refusal: $(cat "$OUT/migrate-wrong.out")"
WRONG_KAFKA_FILE=$(secret_file kafka-pw-wrong "$KAFKA_WRONG_PASSWORD")
env "${SECRET_ENV[@]}" KAFKA_SASL_PASSWORD_FILE="$WRONG_KAFKA_FILE" LOG_LEVEL=debug KAFKA_DEBUG=security \
    "$AP_BIN" run >>"$OUT/run-wrong-kafka.log" 2>&1 &
PROCESSOR_PID=$!
wait_for "the Kafka refusal in /readyz" 60 readyz_reason kafka "authentication failed" "$OUT/run-wrong-kafka.log" "$PROCESSOR_PID"
curl -s "$(http_base "$OUT/run-wrong-kafka.log")/readyz" >"$OUT/readyz-wrong-kafka.json"
kill -TERM "$PROCESSOR_PID"; wait "$PROCESSOR_PID" || true
PROCESSOR_PID=""

# ---------------------------------------------------------------- bad configurations
# Each must fail with exit 2 and one line; the secrets are all set, and some settings hold one.
bad() { # NAME SETTING...
    local rc=0
    with_secrets env "${@:2}" "$AP_BIN" migrate >"$OUT/bad-$1.out" 2>&1 || rc=$?
    [[ $rc -eq 2 ]] || fail "bad config $1: exit $rc, expected 2: $(cat "$OUT/bad-$1.out")"
}
bad database-url-syntax DATABASE_URL_FILE= "DATABASE_URL=postgresql://ap:$PG_PASSWORD%zz@db/x"
bad database-url-option DATABASE_URL_FILE= "DATABASE_URL=host=db password=$PG_PASSWORD nosuchoption=1"
bad database-url-twice "DATABASE_URL=$URL"
bad smtp-scheme "SMTP_URL=http://u:$SMTP_URL_PW@mail.example.com"
bad smtp-twice "SMTP_PASSWORD=$SMTP_PW"
bad token-twice "HTTP_AUTH_TOKEN=$TOKEN"
bad kafka-twice "KAFKA_SASL_PASSWORD=$KAFKA_PASSWORD"
bad kafka-bad-property "KAFKA_NO_SUCH_THING=$KAFKA_PASSWORD"
bad kafka-bad-value "KAFKA_SECURITY_PROTOCOL=$KAFKA_PASSWORD"
bad kafka-bad-number "KAFKA_SOCKET_TIMEOUT_MS=$KAFKA_PASSWORD"
bad log-level "LOG_LEVEL=loud"
bad secret-file-missing "SMTP_PASSWORD_FILE=$WORK_DIR/nothing-here"
printf 'DATABASE_URL=postgresql://ap:%s@db/x\nKAFKA_SASL_PASSWORD=%s\nHTTP_AUTH_TOKEN=%s\nnot a setting\n' \
    "$PG_PASSWORD" "$KAFKA_PASSWORD" "$TOKEN" >"$WORK_DIR/bad.conf"
rc=0
env -u DATABASE_URL "$AP_BIN" --config "$WORK_DIR/bad.conf" migrate >"$OUT/bad-config-file.out" 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "a bad --config file: exit $rc"
printf 'DATABASE_URL=postgresql://ap:%s@db/x?sslmode=sometimes\n' "$PG_PASSWORD" >"$WORK_DIR/bad2.conf"
rc=0
env -u DATABASE_URL "$AP_BIN" --config "$WORK_DIR/bad2.conf" migrate >"$OUT/bad-config-file-2.out" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "a --config file with a bad sslmode succeeded"

# ---------------------------------------------------------------- the verdict
files=$(find "$OUT" -type f | wc -l)
lines=$(cat "$OUT"/* | wc -l)
leaks=0
for secret in "${SECRETS[@]}"; do
    if grep -rlF -- "$secret" "$OUT" >"$WORK_DIR/hits"; then
        leaks=$((leaks + 1))
        echo "LEAK: a secret (${secret:0:6}...) appears in: $(tr '\n' ' ' <"$WORK_DIR/hits")" >&2
        grep -rnF -- "$secret" "$OUT" | head -n 5 >&2
    fi
done
((leaks == 0)) || fail "$leaks secret(s) leaked"
note "no secret in $files outputs ($lines lines: logs, errors, HTTP answers, metrics, topics, email)"
pass
