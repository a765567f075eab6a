#!/usr/bin/env bash
# Probes (issue 10, section 3): /readyz flips to 503 naming "postgres" while Postgres is
# stopped under the running processor, and back to 200 when it returns; /healthz stays 200
# throughout (the loops are alive, waiting); a command posted meanwhile gets 503.
#
# It stops the shared local Postgres (deploy/local/services.sh), so it runs alone (RUN_SERIAL);
# Postgres is running again when it ends, whatever the outcome.
source "$(dirname "$0")/lib.sh"
require_services

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICES="$REPO/deploy/local/services.sh"
finish() {
    local rc=$?
    set +e
    cleanup
    if ! "$SERVICES" status >/dev/null 2>&1; then
        "$SERVICES" start >&2 || echo "http_readiness: WARNING: $SERVICES start failed" >&2
    fi
    exit "$rc"
}
trap finish EXIT

status_of() { curl -s -o "$WORK_DIR/body" -w '%{http_code}' "$BASE$1"; }
ready_is() { [[ "$(status_of /readyz)" == "$1" ]]; }

start_processor
BASE=$(http_base)
wait_for "readiness" 30 ready_is 200
jq -e '.status == "ready" and .postgres and .kafka and .consumer_group' "$WORK_DIR/body" >/dev/null ||
    fail "a ready /readyz body: $(cat "$WORK_DIR/body")"
echo "ok: ready"

"$SERVICES" stop pg >"$WORK_DIR/stop-pg.log" 2>&1 || { cat "$WORK_DIR/stop-pg.log" >&2; fail "services.sh stop pg failed"; }
wait_for "/readyz to say Postgres is not ready" 30 ready_is 503
jq -e '.status == "not ready" and (.not_ready | index("postgres")) and (.postgres | not)' "$WORK_DIR/body" >/dev/null ||
    fail "the /readyz body does not name postgres: $(cat "$WORK_DIR/body")"
[[ "$(status_of /healthz)" == 200 ]] || fail "/healthz during the outage: $(cat "$WORK_DIR/body")"
got=$(curl -s -o "$WORK_DIR/body" -w '%{http_code}' -X POST --data-binary \
    "{\"ref\":\"$RUN_ID-b1\",\"sku\":\"$RUN_ID-S\",\"qty\":5,\"eta\":null}" "$BASE/add_batch")
[[ "$got" == 503 ]] || fail "a command while Postgres is down: $got $(cat "$WORK_DIR/body")"
metrics=$(curl -s "$BASE/metrics") # not piped into grep -q: pipefail would see curl's SIGPIPE
grep -q '^allocation_postgres_up 0' <<<"$metrics" || fail "allocation_postgres_up is not 0 during the outage"
echo "ok: not ready while Postgres is stopped"

"$SERVICES" start pg >"$WORK_DIR/start-pg.log" 2>&1 || { cat "$WORK_DIR/start-pg.log" >&2; fail "services.sh start pg failed"; }
wait_for "/readyz to be ready again" 60 ready_is 200
[[ "$(status_of /healthz)" == 200 ]] || fail "/healthz after the outage"
got=$(curl -s -o "$WORK_DIR/body" -w '%{http_code}' -X POST --data-binary \
    "{\"ref\":\"$RUN_ID-b1\",\"sku\":\"$RUN_ID-S\",\"qty\":5,\"eta\":null}" "$BASE/add_batch")
[[ "$got" == 201 ]] || fail "a command after the outage: $got $(cat "$WORK_DIR/body")"
metrics=$(curl -s "$BASE/metrics")
grep -q '^allocation_postgres_up 1' <<<"$metrics" || fail "allocation_postgres_up is not 1 after the outage"
echo "ok: ready again"

stop_processor
pass
