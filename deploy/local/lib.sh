# shellcheck shell=bash disable=SC2034  # sourced; the variables are used by the sourcing script
# Shared settings and helpers for the scripts in deploy/local/. Sourced, not run.
#
# Every knob is an environment variable with a default, so two checkouts on one machine can run
# side by side (different AP_*_PORT values) and CI needs no configuration at all.

# The checkout's root, whatever the caller's working directory.
AP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
AP_LOCAL_DIR="$AP_ROOT/.local"   # service state: gitignored, per checkout

# Ports (loopback only).
AP_PG_PORT=${AP_PG_PORT:-55432}
AP_KAFKA_PORT=${AP_KAFKA_PORT:-9092}
AP_KAFKA_CONTROLLER_PORT=${AP_KAFKA_CONTROLLER_PORT:-9093}
# The broker's second, secure listener (SASL_SSL, SCRAM-SHA-512): by default two above the first.
AP_KAFKA_SECURE_PORT=${AP_KAFKA_SECURE_PORT:-$((AP_KAFKA_PORT + 2))}
AP_TLS_DIR="$AP_LOCAL_DIR/tls"   # the test certificate authority and server certificate (tls.sh)
AP_REGISTRY_PORT=${AP_REGISTRY_PORT:-$((AP_KAFKA_PORT + 3))}   # the schema registry of the tests (9095)

# The database deploy/local/run uses (created on start when missing); tests use allocation_test.
AP_DATABASE=${AP_DATABASE:-allocation}

# Kafka's jars live outside the checkout so a fresh clone does not download ~100 MB again.
AP_KAFKA_VERSION=3.9.1
AP_CACHE_DIR=${AP_CACHE_DIR:-${HOME:-/root}/.cache/allocation-processor}
AP_KAFKA_HOME="$AP_CACHE_DIR/kafka-$AP_KAFKA_VERSION"
AP_KAFKA_LIBS="$AP_KAFKA_HOME/libs"
AP_KAFKA_MARKER="$AP_KAFKA_HOME/.complete"   # holds the sha256 of the pom that filled libs/
AP_KAFKA_POM="$AP_ROOT/deploy/local/kafka/pom.xml"

# The schema registry of the tests: Apicurio Registry, built from Maven Central's artifacts by
# deps.sh (deploy/local/apicurio/) into the cache, as Kafka's jars are.
AP_APICURIO_VERSION=2.4.2.Final
AP_APICURIO_HOME="$AP_CACHE_DIR/apicurio-$AP_APICURIO_VERSION"
AP_APICURIO_SRC="$AP_ROOT/deploy/local/apicurio"
AP_APICURIO_MARKER="$AP_APICURIO_HOME/.complete"   # the sha256 of the sources that built it
AP_APICURIO_JAR="$AP_APICURIO_HOME/app/apicurio-registry-local-1-runner.jar"

# Where the Kafka broker runs: container (podman; fails when podman does not work), process (a
# JVM on the host), or auto (the container where podman works, else the host process).
AP_KAFKA_RUNTIME=${AP_KAFKA_RUNTIME:-auto}

AP_PG_BIN=${AP_PG_BIN:-/usr/lib/postgresql/15/bin}
AP_READY_TIMEOUT=${AP_READY_TIMEOUT:-90}     # seconds to wait for a service to answer

ap_log() { printf '[deploy/local] %s\n' "$*" >&2; }
ap_die() { printf '[deploy/local] error: %s\n' "$*" >&2; exit 1; }

# True when the Kafka jars in the cache were gathered from the current pom.
ap_kafka_libs_ready() {
    [ -f "$AP_KAFKA_MARKER" ] || return 1
    compgen -G "$AP_KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null || return 1
    [ "$(cat "$AP_KAFKA_MARKER")" = "$(sha256sum "$AP_KAFKA_POM" | cut -d' ' -f1)" ]
}

# The sha256 of deploy/local/apicurio/'s files: what the registry in the cache was built from.
ap_apicurio_sources_sum() {
    (cd "$AP_APICURIO_SRC" && find . -type f ! -path './target/*' -print0 | sort -z \
        | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

# True when the registry in the cache was built from the current sources.
ap_apicurio_ready() {
    [ -f "$AP_APICURIO_MARKER" ] && [ -f "$AP_APICURIO_JAR" ] || return 1
    [ "$(cat "$AP_APICURIO_MARKER")" = "$(ap_apicurio_sources_sum)" ]
}

# Configures build/release, the build deploy/local/run runs and CI compiles (build-matrix.sh):
# RelWithDebInfo, warnings as errors, the program only. Extra arguments go to cmake.
ap_configure_release() {
    cmake -S "$AP_ROOT" -B "$AP_ROOT/build/release" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DAP_WERROR=ON -DAP_TESTS=OFF "$@"
}
