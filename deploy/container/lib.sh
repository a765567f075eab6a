# shellcheck shell=bash disable=SC2034  # sourced; the variables are used by the sourcing script
# Shared settings for podman calls: deploy/container/build.sh and deploy/local/services.sh source
# this (after deploy/local/lib.sh). Sourced, not run.

AP_CONTAINER_DIR="$AP_ROOT/deploy/container"
# The project's containers.conf (runc, ulimits the machine allows), unless the caller has one.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$AP_CONTAINER_DIR/containers.conf}

AP_BASE_IMAGE=docker.io/library/debian:bookworm-slim
AP_IMAGE=${AP_IMAGE:-localhost/allocation-processor:dev}
AP_KAFKA_IMAGE_REPO=localhost/allocation-kafka

# The Kafka image's tag: Kafka's version and a hash of what goes into the image (its build
# files and the pom that chose the jars), so a changed entrypoint is a new tag, an unchanged
# one is reused, and two checkouts with different files never overwrite each other's image.
ap_kafka_image() {
    local hash
    hash=$(cat "$AP_CONTAINER_DIR"/kafka/* "$AP_KAFKA_POM" | sha256sum | cut -c1-12)
    echo "$AP_KAFKA_IMAGE_REPO:$AP_KAFKA_VERSION-$hash"
}

# True when podman is installed and can run a container here (not merely installed: a missing
# runtime or a refused cgroup layout make it unusable). Cached for the calling script's life.
AP_PODMAN_WORKS=""
ap_podman_works() {
    if [ -z "$AP_PODMAN_WORKS" ]; then
        AP_PODMAN_WORKS=no
        if command -v podman >/dev/null && podman info >/dev/null 2>&1; then
            AP_PODMAN_WORKS=yes
        fi
    fi
    [ "$AP_PODMAN_WORKS" = yes ]
}
