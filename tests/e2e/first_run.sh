#!/usr/bin/env bash
# The README's first command, as a new user meets it: `deploy/local/run` in the background
# (it installs what is missing, starts or reuses the services, builds build/release and runs
# the processor), then the README's walkthrough, read from README.md between its
# `<!-- walkthrough: ... -->` markers and run as written, each output the README shows
# checked; then SIGTERM, which must end the program with exit code 0.
#
# So that runs never see each other's data, three things differ from a user's terminal: the
# processor gets a fresh database (AP_DATABASE) and its own topic prefix and group, and the
# walkthrough's `-t allocation.` and broker address are rewritten to those. The commands and
# the outputs are the README's.
source "$(dirname "$0")/lib.sh"
require_services

ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
SMOKE_DB="first_run_${RUN_ID//[^a-zA-Z0-9]/_}"
ADMIN_URL="${DATABASE_URL%/*}/postgres"
export DATABASE_URL="${DATABASE_URL%/*}/$SMOKE_DB"

drop_smoke_db() {
    cleanup
    psql "$ADMIN_URL" -qAtX -c "DROP DATABASE IF EXISTS \"$SMOKE_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap drop_smoke_db EXIT

mapfile -t steps < <(readme_walkthrough "$ROOT/README.md")
checks=0
for step in "${steps[@]}"; do [[ "${step#*$'\t'}" ]] && checks=$((checks + 1)); done
# A guard against a README cut short: both blocks, each ending with a checked output.
((${#steps[@]} >= 6 && checks >= 2)) || fail "the README's walkthrough has ${#steps[@]} commands and $checks outputs; expected at least 6 and 2"

AP_DATABASE="$SMOKE_DB" bash "$ROOT/deploy/local/run" >>"$PROCESSOR_LOG" 2>&1 &
PROCESSOR_PID=$!
# The first run on a machine builds build/release: minutes, not seconds.
wait_for "deploy/local/run to be consuming" 600 processor_owns_partitions

run_step() {
    local command=$1
    command=${command//127.0.0.1:9092/$KAFKA_BOOTSTRAP_SERVERS}
    command=${command//-t allocation./-t $TOPIC_PREFIX.}
    (cd "$ROOT" && bash -o pipefail -c "$command") >"$WORK_DIR/out" 2>"$WORK_DIR/err"
}
printed() { [[ "$(cat "$WORK_DIR/out")" == "$1" ]]; }
step_prints() { run_step "$1" && printed "$2"; }

for step in "${steps[@]}"; do
    command=${step%%$'\t'*} expected=${step#*$'\t'}
    echo "\$ $command"
    if [[ -z "$expected" ]]; then
        run_step "$command" || fail "'$command' failed: $(cat "$WORK_DIR/err")"
    else
        # The processor applies commands as they arrive: ask until the answer is the README's.
        deadline=$((SECONDS + 30))
        until step_prints "$command" "$expected"; do
            ((SECONDS < deadline)) ||
                fail "'$command' printed '$(cat "$WORK_DIR/out")' for 30 s, the README shows '$expected'"
            sleep 0.2
        done
        echo "# $(cat "$WORK_DIR/out")"
    fi
done

wait_for "every record committed" 30 all_records_committed
stop_processor TERM
# Nothing refused or dead-lettered, and the database holds just what the walkthrough made.
[[ -z "$(topic_lines "$TOPIC_PREFIX.events.command_rejected" '%o\n')" ]] || fail "a command was rejected"
[[ -z "$(topic_lines "$TOPIC_PREFIX.dead_letter" '%o\n')" ]] || fail "a command was dead-lettered"
[[ "$(sql "select string_agg(reference || '=' || purchased_quantity, ',' order by reference) from batches")" == "b1=5,b2=50" ]] ||
    fail "batches are $(sql "select string_agg(reference || '=' || purchased_quantity, ',' order by reference) from batches")"
pass
