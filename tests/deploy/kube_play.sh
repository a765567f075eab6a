#!/usr/bin/env bash
# The Helm chart really runs: `helm template` with ci/podman-values.yaml, then the RENDERED
# manifests run with `podman kube play` on the image deploy/local/test has just built
# (AP_TEST_IMAGE, its ID; else whatever $AP_IMAGE names), against the test Kafka and Postgres:
#   1. the migration hook: the rendered Job's pod template, played as a Pod (podman 4.3 plays
#      Pods and Deployments, not Jobs), must exit 0 having migrated a fresh database;
#   2. the rendered ConfigMap + Deployment (2 replicas): both pods must hold command-topic
#      partitions, disjoint, all of them between the two (each pod's assigned/revoked log
#      lines), and every partition must be claimed in consumer_offsets;
#   3. the README's kcat walkthrough, produced to this run's topics, and `allocations o1` asked
#      through `podman exec` in pod 0 then pod 1 (kubectl exec in the README) answers b1, b2;
#   4. where the image serves HTTP, each pod's /healthz and /readyz answer 200 (podman cannot
#      run the chart's probes, see below);
#   5. `podman kube down`; pods, containers, the Secret, the volume and the tag are gone.
#
# What podman 4.3.1 kube play cannot run from the rendered chart, and how it is covered:
# - Secrets in the YAML: it reads secretKeyRef from its own store, where a secret's data is a
#   JSON map key -> base64 value; the test creates one per run (podman secret create).
# - Jobs and hooks: the migrate Job's pod template is played as a Pod, before the Deployment.
# - Service, ServiceAccount, PodDisruptionBudget, the `helm test` Pod: no podman equivalent;
#   tests/helm/check.sh validates them strictly.
# - containerPort: podman 4.3 publishes each on the host (hostPort defaults to it): two
#   replicas collide, and with hostNetwork it refuses port mappings. The Deployment is played
#   without its `ports` (the http port, nothing else, checked), so also no Service routing.
# - The networking: pods in their own network cannot reach a broker advertising 127.0.0.1, so
#   the ci values use hostNetwork and give each replica a free loopback HTTP port
#   (http.addr=127.0.0.1:0). envFrom wins over env in podman 4.3 (the reverse of Kubernetes),
#   hence a chart value, not an extraEnv entry.
# - Probes: startup and readiness probes are ignored; the liveness probe becomes a healthcheck
#   `curl -f http://localhost:0/healthz` (a named port reads as 0, and the image has no curl),
#   scheduled by systemd timers that do not exist here. The test GETs /healthz and /readyz of
#   each pod itself, on the port each logged.
# - terminationGracePeriodSeconds: podman stops with its own 10 s timeout; the pods are
#   stopped before kube down and must exit 0 (SIGTERM handled).
# - Resource requests, topologySpreadConstraints, the emptyDir sizeLimit: not enforced (the
#   emptyDir is a named podman volume, "tmp", removed at the end).
source "$(dirname "$0")/../e2e/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/deploy/local/lib.sh"
. "$ROOT/deploy/container/lib.sh"
CHART="$ROOT/deploy/helm/allocation-processor"

if ! ap_podman_works; then
    # CI has podman: there a missing container engine is a failure, never a skip.
    [[ "${CI:-}" != true ]] || fail "podman does not work here (CI=true: no skipping)"
    echo "SKIP: podman does not work here (no image, no kube play)"
    exit 77
fi
require_services
t_start=$SECONDS

# --- the image, the database, the Secret -------------------------------------------------------
image_id=${AP_TEST_IMAGE:-$(podman image inspect --format '{{.Id}}' "$AP_IMAGE" 2>/dev/null || true)}
[[ -n "$image_id" ]] || fail "no processor image: run deploy/container/build.sh (deploy/local/test does)"
RELEASE="kp-$$-$(date +%s | tail -c 5)"
IMAGE_REPO=localhost/allocation-processor
IMAGE_TAG="$RELEASE"
SECRET="$RELEASE-credentials"
DB="kube_play_${RELEASE//-/_}"
ADMIN_URL="${DATABASE_URL%/*}/postgres"
export DATABASE_URL="${DATABASE_URL%/*}/$DB"
OUT="$WORK_DIR/rendered"
mkdir -p "$OUT"

teardown() {
    local rc=$?
    if [[ -f "$OUT/deployment.yaml" ]]; then
        podman kube down "$OUT/deployment.yaml" >/dev/null 2>&1 || true
        podman kube down "$OUT/migrate.yaml" >/dev/null 2>&1 || true
    fi
    podman volume rm tmp >/dev/null 2>&1 || true
    podman secret rm "$SECRET" >/dev/null 2>&1 || true
    podman untag "$image_id" "$IMAGE_REPO:$IMAGE_TAG" >/dev/null 2>&1 || true
    cleanup
    psql "$ADMIN_URL" -qAtX -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    exit "$rc"
}
trap teardown EXIT

podman tag "$image_id" "$IMAGE_REPO:$IMAGE_TAG"
psql "$ADMIN_URL" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB\"" >/dev/null
# The Secret the chart reads (secret.existingSecret): podman 4.3 takes secretKeyRef from its own
# store, the secret's data being a JSON object of key -> base64 value (a Secret's `data`).
printf '{"DATABASE_URL":"%s"}' "$(printf %s "$DATABASE_URL" | base64 -w0)" |
    podman secret create "$SECRET" - >/dev/null

# --- render ---------------------------------------------------------------------------------------
helm=$(bash "$ROOT/tests/helm/helm.sh")
"$helm" template "$RELEASE" "$CHART" -f "$CHART/ci/podman-values.yaml" \
    --set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" \
    --set kafka.bootstrapServers="$KAFKA_BOOTSTRAP_SERVERS" \
    --set kafka.topicPrefix="$TOPIC_PREFIX" --set kafka.groupId="$KAFKA_GROUP_ID" \
    --set secret.existingSecret="$SECRET" >"$OUT/all.yaml" || fail "helm template failed"
python3 "$ROOT/tests/deploy/split_rendered.py" "$OUT/all.yaml" "$OUT" || fail "splitting the rendered YAML failed"
info() { jq -r "$1" "$OUT/info.json"; }
DEPLOYMENT=$(info .deployment)
[[ "$(info .replicas)" == 2 ]] || fail "the podman values render $(info .replicas) replicas, expected 2"
[[ "$(info '.secrets | tostring')" == "{\"$SECRET\":[\"DATABASE_URL\"]}" ]] ||
    fail "the pods read secrets $(info '.secrets | tostring'), expected $SECRET/DATABASE_URL only"
[[ "$(info '[.removed_ports[] | .name] | join(",")')" == http ]] ||
    fail "ports removed for podman: $(info '.removed_ports | tostring'), expected the http port alone"
[[ "$(info .hook)" == *pre-install* ]] || fail "the migration Job is not a pre-install hook"
echo "rendered $DEPLOYMENT (image $IMAGE_REPO:$IMAGE_TAG = ${image_id#sha256:}), secret $SECRET"

# --- 1. the migration hook -------------------------------------------------------------------------
MIGRATE_CT="$(info .migrate_pod)-migrate"
podman kube play "$OUT/migrate.yaml" >"$WORK_DIR/play-migrate.out" 2>&1 ||
    fail "podman kube play of the migration pod: $(cat "$WORK_DIR/play-migrate.out")"
rc=$(timeout 120 podman wait "$MIGRATE_CT") || fail "the migration pod did not finish in 120 s"
podman logs "$MIGRATE_CT" >"$WORK_DIR/migrate.log" 2>&1 || true
[[ "$rc" == 0 ]] || fail "the migration exited $rc: $(tail -n 5 "$WORK_DIR/migrate.log")"
grep -q 'migration(s) applied' "$WORK_DIR/migrate.log" || fail "the migration logged no migrations: $(cat "$WORK_DIR/migrate.log")"
[[ "$(sql "select count(*) from consumer_offsets")" == 0 ]] || fail "the migrated database is not empty"
podman kube down "$OUT/migrate.yaml" >/dev/null 2>&1
echo "migration hook: $(grep -o '[0-9]* migration(s) applied' "$WORK_DIR/migrate.log"), exit 0"

# --- 2. two replicas share the partitions ----------------------------------------------------------
podman kube play "$OUT/deployment.yaml" >"$WORK_DIR/play.out" 2>&1 ||
    fail "podman kube play of the Deployment: $(cat "$WORK_DIR/play.out")"
PODS=("$DEPLOYMENT-pod-0" "$DEPLOYMENT-pod-1")
CTS=("${PODS[0]}-processor" "${PODS[1]}-processor")
PROCESSOR_LOG="$WORK_DIR/pods.log"   # what fail() shows
pod_log() { podman logs "$1" 2>&1; }
# The partitions of the command topic a pod holds now: its assigned lines minus its revoked ones.
held() {
    pod_log "$1" | grep -o "\(assigned\|revoked\) $COMMAND_TOPIC \[[0-9]*\]" |
        awk '{ p = $3; gsub(/[][]/, "", p); if ($1 == "assigned") h[p] = 1; else delete h[p] }
             END { for (p in h) print p }' | sort -n | paste -sd,
}
shared() {
    local ct
    for ct in "${CTS[@]}"; do
        [[ "$(podman container inspect --format '{{.State.Status}}' "$ct" 2>/dev/null)" == running ]] ||
            { for c in "${CTS[@]}"; do pod_log "$c" | tail -n 20; done >"$PROCESSOR_LOG"; fail "$ct is not running"; }
    done
    h0=$(held "${CTS[0]}") h1=$(held "${CTS[1]}")
    [[ -n "$h0" && -n "$h1" ]] || return 1
    [[ "$(printf '%s\n%s\n' "${h0//,/$'\n'}" "${h1//,/$'\n'}" | sort -n | paste -sd,)" == 0,1,2 ]] || return 1
    [[ "$(sql "select count(*) from consumer_offsets where group_id = '$KAFKA_GROUP_ID' and topic = '$COMMAND_TOPIC'")" == 3 ]]
}
wait_for "both replicas to hold command partitions (disjoint, all 3) and claim them in consumer_offsets" 90 shared
echo "partitions of $COMMAND_TOPIC: pod 0 holds $h0, pod 1 holds $h1"
echo "consumer_offsets: $(sql "select string_agg(partition || ':epoch ' || owner_epoch, ', ' order by partition) from consumer_offsets where group_id = '$KAFKA_GROUP_ID'")"

# --- 3. the README's walkthrough through the pods ---------------------------------------------------
# The CLI runs in a pod, as `kubectl exec deploy/... -- allocation-processor` would: pod 0
# answers the first question, pod 1 the second.
in_a_pod() {
    local ct=${CTS[$(($2 % 2))]}
    echo "${1//build\/release\/allocation-processor/podman exec $ct allocation-processor}"
}
play_walkthrough "$ROOT/README.md" in_a_pod
((WALKTHROUGH_CHECKED >= 2)) || fail "the walkthrough asked $WALKTHROUGH_CHECKED questions, expected at least 2"
wait_for "every record committed" 30 all_records_committed

# --- 4. HTTP: what the chart's probes would ask ----------------------------------------------------
if podman run --rm --network none "$IMAGE_REPO:$IMAGE_TAG" --help 2>&1 | grep -q HTTP_ADDR; then
    for ct in "${CTS[@]}"; do
        port=$(pod_log "$ct" | grep -o 'listening on [^ ]* (port [0-9]*)' | tail -n 1 | grep -o '[0-9]*)$' | tr -d ')')
        [[ -n "$port" ]] || fail "$ct logged no HTTP port"
        for path in /healthz /readyz; do
            probe() { [[ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://127.0.0.1:$port$path")" == 200 ]]; }
            wait_for "$ct GET $path on port $port to answer 200" 30 probe
        done
        echo "$ct: /healthz and /readyz answer 200 on 127.0.0.1:$port"
    done
else
    echo "NOTE: this image serves no HTTP yet (no HTTP_ADDR in --help): /healthz and /readyz not asked"
fi

# --- 5. stop, down, nothing left -------------------------------------------------------------------
# (podman 4.3 complains on stderr that it cannot remove the systemd timers of the healthchecks
# it never could schedule: no systemd here.)
podman pod stop --time 60 "${PODS[@]}" >/dev/null 2>"$WORK_DIR/stop.err" || fail "podman pod stop: $(cat "$WORK_DIR/stop.err")"
for ct in "${CTS[@]}"; do
    rc=$(podman container inspect --format '{{.State.ExitCode}}' "$ct")
    [[ "$rc" == 0 ]] || fail "$ct exited $rc after SIGTERM, expected 0"
    # conmon may hand over the container's last lines a moment after it exited: ask again.
    deadline=$((SECONDS + 15))
    until pod_log "$ct" | grep -q '"stopping: applied='; do
        ((SECONDS < deadline)) || fail "$ct logged no clean stop; its last lines: $(pod_log "$ct" | tail -n 8)"
        sleep 0.5
    done
done
podman kube down "$OUT/deployment.yaml" >/dev/null 2>&1 || fail "podman kube down failed"
podman volume rm tmp >/dev/null 2>&1 || true
podman secret rm "$SECRET" >/dev/null
podman untag "$image_id" "$IMAGE_REPO:$IMAGE_TAG"
left=$( (podman pod ps --format '{{.Name}}'; podman ps -a --format '{{.Names}}';
         podman secret ls --format '{{.Name}}'; podman images --format '{{.Repository}}:{{.Tag}}') | grep -- "$RELEASE" || true)
[[ -z "$left" ]] || fail "left behind: $left"
[[ -z "$(podman volume ls -q --filter name='^tmp$')" ]] || fail "left behind: the volume tmp"
echo "podman kube down: both pods exited 0 on SIGTERM; no pod, container, secret or tag of $RELEASE left ($((SECONDS - t_start)) s)"
pass
