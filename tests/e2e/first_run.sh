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

AP_DATABASE="$SMOKE_DB" bash "$ROOT/deploy/local/run" >>"$PROCESSOR_LOG" 2>&1 &
PROCESSOR_PID=$!
# The first run on a machine builds build/release: minutes, not seconds.
wait_for "deploy/local/run to be consuming" 600 processor_owns_partitions

play_walkthrough "$ROOT/README.md"

wait_for "every record committed" 30 all_records_committed
stop_processor TERM
# Nothing refused or dead-lettered, and the database holds just what the walkthrough made.
[[ -z "$(topic_lines "$TOPIC_PREFIX.events.command_rejected" '%o\n')" ]] || fail "a command was rejected"
[[ -z "$(topic_lines "$TOPIC_PREFIX.dead_letter" '%o\n')" ]] || fail "a command was dead-lettered"
[[ "$(sql "select string_agg(reference || '=' || purchased_quantity, ',' order by reference) from batches")" == "b1=5,b2=50" ]] ||
    fail "batches are $(sql "select string_agg(reference || '=' || purchased_quantity, ',' order by reference) from batches")"
pass
