#!/usr/bin/env bash
# Authenticated and encrypted connections (issue 13, section 1).
#
# The processor runs against the broker's SASL_SSL listener (SCRAM-SHA-512, certificate verified
# against the test authority, host name checked) and a Postgres of the test's own that takes only
# TLS with a scram-sha-256 password (sslmode=verify-full); the secrets come from files
# (DATABASE_URL_FILE, KAFKA_SASL_PASSWORD_FILE). Commands go in over SASL_SSL, the read model and
# the events come out, and every Postgres session of the processor is encrypted.
#
# Then each refusal, one processor each: a wrong Kafka password, a broker certificate signed by an
# authority the processor does not trust, a wrong Postgres password, a Postgres certificate of an
# untrusted authority. Each must show in /readyz (503, a reason naming authentication or TLS) and
# in one ERROR line of the log, while the processor stays up and keeps retrying; the one-shot
# commands (migrate, allocations) exit 1 with the same reason.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_secure.sh"
require_services
require_secure_kafka
trap 'finish stop_secure_pg' EXIT

PG_PORT=${AP_SECURE_PG_PORT:-$(secure_pg_port 1)}
SKU="$RUN_ID-SKU"
SECURE_KAFKA_USER="$RUN_ID-proc"
SECURE_KAFKA_PASSWORD="kafka-pw-$RUN_ID"
DB_USER=ap_secure DB_NAME=allocation_secure DB_PASSWORD="pg-pw-$RUN_ID"
BAD_CA=$(untrusted_ca)

kafka_scram_user "$SECURE_KAFKA_USER" "$SECURE_KAFKA_PASSWORD"
secure_pg_start "$PG_PORT" "$DB_USER" "$DB_PASSWORD" "$DB_NAME"
PG_PORT=$SECURE_PG_PORT
note "SCRAM user on $SECURE_KAFKA_BOOTSTRAP_SERVERS; TLS-only Postgres on 127.0.0.1:$PG_PORT"

GOOD_URL=$(secret_file db-url "$(secure_url "$DB_USER" "$DB_PASSWORD" "$PG_PORT" "$DB_NAME")")
GOOD_KAFKA_PW=$(secret_file kafka-pw "$SECURE_KAFKA_PASSWORD")

# run_secure LOG DB_URL_FILE KAFKA_PASSWORD_FILE KAFKA_CA [COMMAND...]: the processor with the
# secure settings, its log (stderr) to LOG; `run` in the background (pid in LAST_PID) unless
# COMMAND is given, which runs in the foreground with its output on stdout.
run_secure() {
    local log=$1 url=$2 pw=$3 ca=$4
    shift 4
    local -a settings
    mapfile -t settings < <(secure_kafka_env "$SECURE_KAFKA_USER" "$pw" "$ca")
    if (($#)); then
        env -u DATABASE_URL DATABASE_URL_FILE="$url" "${settings[@]}" "$AP_BIN" "$@" 2>>"$log"
    else
        env -u DATABASE_URL DATABASE_URL_FILE="$url" "${settings[@]}" "$AP_BIN" run >>"$log" 2>&1 &
        LAST_PID=$!
    fi
}

secure_sql() { secure_pg_admin -d "$DB_NAME" -At -c "$1"; }

# ---------------------------------------------------------------- the secure path works
run_secure "$PROCESSOR_LOG" "$GOOD_URL" "$GOOD_KAFKA_PW" "$CA_FILE"
PROCESSOR_PID=$LAST_PID
wait_for "the secure processor to be ready" 90 ready_200
note "ready over SASL_SSL and verify-full"

secure_kcat -P -t "$COMMAND_TOPIC" -k "$SKU" <<EOF_CMDS
{"type":"CreateBatch","ref":"$RUN_ID-b1","sku":"$SKU","qty":50,"eta":null}
{"type":"Allocate","orderid":"$RUN_ID-o1","sku":"$SKU","qty":20}
EOF_CMDS
allocated() {
    run_secure "$WORK_DIR/cli.log" "$GOOD_URL" "$GOOD_KAFKA_PW" "$CA_FILE" allocations "$RUN_ID-o1" \
        >"$WORK_DIR/alloc.json" &&
        jq -e --arg b "$RUN_ID-b1" 'any(.[]; .batchref == $b)' <"$WORK_DIR/alloc.json" >/dev/null
}
wait_for "the allocation in the TLS database's read model" 60 allocated
event_out() {
    secure_kcat -C -t "$TOPIC_PREFIX.events.allocated" -o beginning -e -q -f '%R%s' 2>/dev/null |
        "$AP_BIN" decode 2>/dev/null | grep -q "\"$RUN_ID-o1\""
}
wait_for "the Allocated event, read over SASL_SSL" 60 event_out
plain=$(secure_sql "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid) where a.usename = '$DB_USER' and not s.ssl")
encrypted=$(secure_sql "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid) where a.usename = '$DB_USER' and s.ssl")
[[ "$plain" -eq 0 && "$encrypted" -ge 2 ]] || fail "the processor's Postgres sessions: $encrypted encrypted, $plain plain"
stop_processor TERM
note "commands in and events out over SASL_SSL; $encrypted Postgres sessions, all TLS"

# ---------------------------------------------------------------- each refusal is said
# metric_line LOG LINE: the processor writing LOG has LINE, exactly, on /metrics.
metric_line() { curl -s "$(http_base "$1")/metrics" | grep -qxF "$2"; }

# expect_refusal NAME SERVICE WORDS DB_URL_FILE KAFKA_PW_FILE KAFKA_CA [FAULT_LABEL]
expect_refusal() {
    local name=$1 service=$2 words=$3 log="$WORK_DIR/$1.log" lines
    run_secure "$log" "$4" "$5" "$6"
    local pid=$LAST_PID
    PROCESSOR_PID=$pid   # cleanup kills it if the test fails here
    wait_for "/readyz to give the $name reason" 60 readyz_reason "$service" "$words" "$log" "$pid"
    kill -0 "$pid" 2>/dev/null || fail "$name: the processor exited instead of retrying"
    lines=$(grep -c "error $service: refuses the connection: $words" "$log" || true)
    [[ "$lines" -eq 1 ]] || { tail -n 30 "$log" >&2; fail "$name: expected one ERROR line saying '$words', found $lines"; }
    curl -s "$(http_base "$log")/readyz" | jq -c '.reasons' >"$WORK_DIR/$name.reason"
    # The same refusal on /metrics: Postgres's as its fault label, Kafka's as kafka_up 0.
    local metric='allocation_kafka_up 0'
    [[ "$service" == postgres ]] && metric="allocation_postgres_fault{fault=\"$7\"} 1"
    wait_for "$name on /metrics ($metric)" 15 metric_line "$log" "$metric"
    note "$name: 503 $(cut -c1-160 "$WORK_DIR/$name.reason")"
    PROCESSOR_LOG=$log
    stop_processor TERM
    PROCESSOR_LOG="$WORK_DIR/processor.log"
}
WRONG_KAFKA_PW=$(secret_file kafka-pw-wrong "not-the-password")
WRONG_URL=$(secret_file db-url-wrong "$(secure_url "$DB_USER" "not-the-password" "$PG_PORT" "$DB_NAME")")
BAD_CA_URL=$(secret_file db-url-bad-ca "$(secure_url "$DB_USER" "$DB_PASSWORD" "$PG_PORT" "$DB_NAME" "$BAD_CA")")

expect_refusal kafka-password kafka "authentication failed" "$GOOD_URL" "$WRONG_KAFKA_PW" "$CA_FILE"
grep -q "SASL authentication error" "$WORK_DIR/kafka-password.reason" || fail "the Kafka reason does not name SASL: $(cat "$WORK_DIR/kafka-password.reason")"
expect_refusal kafka-certificate kafka "TLS failed" "$GOOD_URL" "$GOOD_KAFKA_PW" "$BAD_CA"
grep -q "certificate verify failed" "$WORK_DIR/kafka-certificate.reason" || fail "the Kafka reason does not name verification: $(cat "$WORK_DIR/kafka-certificate.reason")"
expect_refusal pg-password postgres "authentication failed" "$WRONG_URL" "$GOOD_KAFKA_PW" "$CA_FILE" authentication
grep -q "password authentication failed for user" "$WORK_DIR/pg-password.reason" || fail "the Postgres reason: $(cat "$WORK_DIR/pg-password.reason")"
expect_refusal pg-certificate postgres "TLS failed" "$BAD_CA_URL" "$GOOD_KAFKA_PW" "$CA_FILE" tls
grep -q "certificate verify failed" "$WORK_DIR/pg-certificate.reason" || fail "the Postgres reason: $(cat "$WORK_DIR/pg-certificate.reason")"

# The one-shot commands: exit 1 at once, with the reason.
rc=0
run_secure "$WORK_DIR/migrate-wrong.log" "$WRONG_URL" "$GOOD_KAFKA_PW" "$CA_FILE" migrate >/dev/null || rc=$?
[[ $rc -eq 1 ]] || fail "migrate with a wrong password exited $rc, expected 1"
grep -q "refuses the connection: authentication failed" "$WORK_DIR/migrate-wrong.log" || fail "migrate's error: $(cat "$WORK_DIR/migrate-wrong.log")"
rc=0
run_secure "$WORK_DIR/allocations-bad-ca.log" "$BAD_CA_URL" "$GOOD_KAFKA_PW" "$CA_FILE" allocations "$RUN_ID-o1" >/dev/null || rc=$?
[[ $rc -eq 1 ]] || fail "allocations with an untrusted certificate exited $rc, expected 1"
grep -q "refuses the connection: TLS failed" "$WORK_DIR/allocations-bad-ca.log" || fail "allocations' error: $(cat "$WORK_DIR/allocations-bad-ca.log")"
note "migrate and allocations exit 1 naming the refusal"
pass
