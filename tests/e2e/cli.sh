#!/usr/bin/env bash
# The command line's contract: help, version, usage and configuration errors (one line,
# exit 2, naming the problem, never a secret), and migrate being safe to repeat.
source "$(dirname "$0")/lib.sh"
require_services

# expect_exit CODE PATTERN COMMAND...: the exit code, and one stderr line matching PATTERN.
expect_exit() {
    local code="$1" pattern="$2" rc=0
    shift 2
    "$@" >"$WORK_DIR/out" 2>"$WORK_DIR/err" || rc=$?
    [[ $rc -eq $code ]] || fail "'$*' exited $rc, expected $code; stderr: $(cat "$WORK_DIR/err")"
    if [[ -n "$pattern" ]]; then
        [[ $(wc -l <"$WORK_DIR/err") -eq 1 ]] || fail "'$*' printed more than one line: $(cat "$WORK_DIR/err")"
        grep -qE "$pattern" "$WORK_DIR/err" || fail "'$*' printed: $(cat "$WORK_DIR/err"), expected /$pattern/"
    fi
}

expect_exit 0 "" "$AP_BIN" --help
grep -q "Usage: allocation-processor" "$WORK_DIR/out" || fail "--help printed no usage"
expect_exit 0 "" "$AP_BIN" --version
grep -qE "^allocation-processor [0-9]+\.[0-9]+\.[0-9]+$" "$WORK_DIR/out" || fail "--version printed $(cat "$WORK_DIR/out")"

expect_exit 2 "unknown option --bogus" "$AP_BIN" --bogus run
expect_exit 2 "unknown command frobnicate" "$AP_BIN" frobnicate
expect_exit 2 "missing command" "$AP_BIN"
expect_exit 2 "allocations ORDERID" "$AP_BIN" allocations
expect_exit 2 "LOG_LEVEL" env LOG_LEVEL=loud "$AP_BIN" run
expect_exit 2 "LOG_FORMAT" env LOG_FORMAT=xml "$AP_BIN" run
expect_exit 2 "TOPIC_PARTITIONS" env TOPIC_PARTITIONS=zero "$AP_BIN" run
expect_exit 2 "AVRO_WIRE_FORMAT" env AVRO_WIRE_FORMAT=protobuf "$AP_BIN" run
expect_exit 2 "SCHEMA_REGISTRY_URL" env AVRO_WIRE_FORMAT=confluent "$AP_BIN" run
expect_exit 2 "KAFKA_NOT_A_PROPERTY" env KAFKA_NOT_A_PROPERTY=1 "$AP_BIN" run
expect_exit 2 "COMMAND_TOPICS" env 'COMMAND_TOPICS=bad topic!' "$AP_BIN" run
expect_exit 2 "DATABASE_URL" env 'DATABASE_URL=postgresql://u:s3cr3t@host:notaport:x/db?bogus=1' "$AP_BIN" run
grep -q s3cr3t "$WORK_DIR/err" && fail "the password leaked into the error"
expect_exit 2 "config file .*: No such file" "$AP_BIN" --config "$WORK_DIR/missing.env" run
printf 'LOG_LEVEL=debug\nNOT_A_KEY=1\n' >"$WORK_DIR/bad.env"
expect_exit 2 "line 2: unknown key NOT_A_KEY" "$AP_BIN" --config "$WORK_DIR/bad.env" run

# A config file is read, and the environment wins over it.
printf '# comment\nLOG_LEVEL=warn\nLOG_FORMAT=json\n' >"$WORK_DIR/good.env"
expect_exit 0 "" env -u LOG_LEVEL "$AP_BIN" --config "$WORK_DIR/good.env" migrate
[[ ! -s "$WORK_DIR/err" ]] || fail "LOG_LEVEL=warn from the file should silence info logs: $(cat "$WORK_DIR/err")"
expect_exit 0 "" env LOG_LEVEL=info "$AP_BIN" --config "$WORK_DIR/good.env" migrate
head -n 1 "$WORK_DIR/err" | jq -c 'select(.level == "info" and .component == "main")' | grep -q . ||
    fail "expected JSON log lines, got: $(cat "$WORK_DIR/err")"

# migrate twice in a row, and twice at once: both succeed.
expect_exit 0 "" "$AP_BIN" migrate
"$AP_BIN" migrate 2>"$WORK_DIR/m1" & p1=$!
"$AP_BIN" migrate 2>"$WORK_DIR/m2" & p2=$!
wait $p1 || fail "concurrent migrate 1 failed: $(cat "$WORK_DIR/m1")"
wait $p2 || fail "concurrent migrate 2 failed: $(cat "$WORK_DIR/m2")"
grep -q "0 migration(s) applied" "$WORK_DIR/m1" || fail "a repeated migrate applied something: $(cat "$WORK_DIR/m1")"
pass
