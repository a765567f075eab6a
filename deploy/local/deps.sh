#!/usr/bin/env bash
# Usage: deploy/local/deps.sh [--tests]
#
# Installs what building and running need, and only what is missing: Debian packages (apt, as
# root) and an Apache Kafka 3.9 broker's jars; with --tests (deploy/local/test) also the schema
# registry of the tests, Apicurio Registry. Both from Maven Central, cached outside the checkout
# in $AP_CACHE_DIR. Takes about a second when everything is already there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WITH_TESTS=0
case "${1:-}" in
    -h|--help) sed -n 2p "$0" | sed 's/^# //'; exit 0 ;;
    --tests) WITH_TESTS=1 ;;
    "") ;;
    *) ap_die "unexpected argument '$1' (usage: deploy/local/deps.sh [--tests])" ;;
esac

PACKAGES=(
    build-essential cmake ninja-build pkg-config               # toolchain
    clang libclang-rt-14-dev                                   # the second compiler CI builds with
    librdkafka-dev libavro-dev libpq-dev libjansson-dev        # libraries the program links
    libcurl4-openssl-dev libmicrohttpd-dev libjemalloc-dev
    libcmocka-dev uthash-dev                                   # and its tests
    postgresql-15 postgresql-client-15                         # local database
    openjdk-17-jdk-headless maven                              # local Kafka broker, registry
    kcat jq                                                    # tests and humans poking at topics
    python3 iproute2 procps curl                               # what the scripts and tests call
    openssl                                                    # the test CA and certificates (tls.sh)
    podman runc mmdebstrap                                     # images (deploy/container/build.sh)
    prometheus                                                 # promtool checks the /metrics text
    catatonit                                                  # the pause process of podman kube play pods
)

# --- Debian packages --------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        ap_die "missing Debian packages: ${missing[*]}
  install them as root:  apt-get update && apt-get install -y ${missing[*]}"
    fi
    ap_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt may be running (unattended upgrades, a colleague): wait for its lock, never
    # break it. Lock::Timeout covers dpkg's lock; the loop covers apt-get update's list lock.
    apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    deadline=$((SECONDS + 600))
    until apt-get "${apt_opts[@]}" update -qq; do
        ((SECONDS < deadline)) || ap_die "apt-get update kept failing for 10 minutes"
        ap_log "apt-get update failed (apt busy?); retrying in 5 s"
        sleep 5
    done
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Kafka broker jars ------------------------------------------------------------------------
kafka_jars() {
    command -v mvn >/dev/null || ap_die "mvn not found (package maven)"
    ap_log "fetching Kafka $AP_KAFKA_VERSION jars from Maven Central into $AP_KAFKA_LIBS"
    mkdir -p "$AP_KAFKA_HOME"
    local tmp
    tmp=$(mktemp -d "$AP_KAFKA_HOME/libs.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    mvn -q -B -Dstyle.color=never -f "$AP_KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp"
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || ap_die "maven finished but no kafka_2.13 jar in $tmp"
    # Swap the folder in whole, so a broken download never looks complete.
    rm -rf "$AP_KAFKA_LIBS"
    mv "$tmp" "$AP_KAFKA_LIBS"
    chmod 755 "$AP_KAFKA_LIBS"
    sha256sum "$AP_KAFKA_POM" | cut -d' ' -f1 >"$AP_KAFKA_MARKER"
    ap_log "Kafka jars ready: $(find "$AP_KAFKA_LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$AP_KAFKA_LIBS" | cut -f1)"
    trap - EXIT
}
ap_kafka_libs_ready || kafka_jars

# --- the schema registry of the tests ------------------------------------------------------
# Apicurio Registry from Maven Central, made runnable by Quarkus's build (deploy/local/apicurio/
# README.md says why it takes a build and a stand-in artifact). A few minutes, once; only for
# the tests, so a first deploy/local/run does not wait for it.
apicurio() {
    command -v mvn >/dev/null || ap_die "mvn not found (package maven)"
    ap_log "building Apicurio Registry $AP_APICURIO_VERSION from Maven Central into $AP_APICURIO_HOME"
    local tmp log
    mkdir -p "$AP_APICURIO_HOME"
    tmp=$(mktemp -d "$AP_APICURIO_HOME/build.tmp.XXXXXX")
    log="$AP_APICURIO_HOME/build.log"
    trap 'rm -rf "$tmp"' EXIT
    # The stand-in for the deployment artifact Central lacks, into the local repository.
    mkdir "$tmp/empty"
    jar cf "$tmp/stub.jar" -C "$tmp/empty" .
    mvn -q -B -Dstyle.color=never install:install-file -Dfile="$tmp/stub.jar" \
        -DpomFile="$AP_APICURIO_SRC/config-index-deployment/pom.xml" >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; ap_die "installing the config-index stand-in failed (log $log)"; }
    mvn -B -Dstyle.color=never -f "$AP_APICURIO_SRC/pom.xml" package -DskipTests \
        -Dapicurio.out="$tmp/out" >>"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; ap_die "building Apicurio Registry failed (log $log)"; }
    [ -f "$tmp/out/$(basename "$AP_APICURIO_JAR")" ] || ap_die "maven finished but no runner jar in $tmp/out"
    rm -rf "$AP_APICURIO_HOME/app"
    mv "$tmp/out" "$AP_APICURIO_HOME/app"
    ap_apicurio_sources_sum >"$AP_APICURIO_MARKER"
    rm -rf "$tmp"
    trap - EXIT
    ap_log "Apicurio Registry ready: $(du -sh "$AP_APICURIO_HOME/app" | cut -f1)"
}
((WITH_TESTS == 0)) || ap_apicurio_ready || apicurio
