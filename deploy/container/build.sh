#!/usr/bin/env bash
# Usage: deploy/container/build.sh [processor|kafka|base ...]
#
# Builds the project's images with podman, never pulling from a registry (default: processor):
#   base       docker.io/library/debian:bookworm-slim, made from Debian's packages with mmdebstrap
#              and `podman import` when the machine has no such image (none can be pulled here);
#   processor  $AP_IMAGE (localhost/allocation-processor:dev) from deploy/container/Containerfile;
#   kafka      the Kafka 3.9.1 broker the tests run against (deploy/container/kafka/), from the
#              jars deploy/local/deps.sh gathered; tagged by a hash of its inputs.
# Idempotent: an existing base is kept, podman's layer cache makes an unchanged processor build
# take seconds, and a Kafka image whose tag exists is not rebuilt. Prints each image's name and
# size. Installs what is missing first (deploy/local/deps.sh: podman, runc, mmdebstrap).
#   AP_IMAGE          the processor image's name (default localhost/allocation-processor:dev)
#   AP_IMAGE_SOURCE   the image's source label (default: the git remote `origin`)
#   AP_BUILD_JOBS     parallel compile jobs in the processor build (default 2)
#   AP_IMAGE_ID_FILE  where to write the processor image's ID (podman build --iidfile): the
#                     exact image this build made, even if another checkout retags $AP_IMAGE
#   CONTAINERS_CONF   podman's settings (default deploy/container/containers.conf)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../local/lib.sh"
. "$AP_ROOT/deploy/container/lib.sh"

usage() { sed -n 2p "$0" | sed 's/^# //' >&2; exit 2; }
log() { printf '[deploy/container] %s\n' "$*" >&2; }

targets=("$@")
((${#targets[@]})) || targets=(processor)
for t in "${targets[@]}"; do
    case "$t" in base|processor|kafka) ;; -h|--help) usage ;; *) log "unknown image '$t'"; usage ;; esac
done

[ "${AP_SKIP_DEPS:-0}" = 1 ] || bash "$AP_ROOT/deploy/local/deps.sh"
ap_podman_works || { podman info >&2 || true; ap_die "podman does not work here (see above)"; }

image_size() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }

# --- base ---------------------------------------------------------------------------------------
# Like Debian's official slim image: minbase, merged /usr, no manuals, docs or translations (the dpkg settings
# stay in the image, so packages installed on top are slim too), and the security suite enabled.
build_base() {
    if podman image exists "$AP_BASE_IMAGE"; then
        log "base: $AP_BASE_IMAGE present"
        return 0
    fi
    command -v mmdebstrap >/dev/null || ap_die "mmdebstrap not found (package mmdebstrap)"
    local tmp t0=$SECONDS
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: $tmp is local
    trap "rm -rf '$tmp'" RETURN
    log "base: making $AP_BASE_IMAGE with mmdebstrap (Debian bookworm, minbase)"
    # The merged-usr hook makes /bin a link to /usr/bin as debootstrap does; without it bookworm
    # installs usrmerge, and with it perl (47 MB).
    mmdebstrap --quiet --variant=minbase --format=tar \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --aptopt='APT::Install-Recommends "false"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log' \
        bookworm "$tmp/rootfs.tar" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" \
        >"$tmp/mmdebstrap.log" 2>&1 || { tail -n 30 "$tmp/mmdebstrap.log" >&2; ap_die "base: mmdebstrap failed"; }
    # An imported tarball has no configuration: give it the official image's.
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$tmp/rootfs.tar" "$AP_BASE_IMAGE" >/dev/null
    log "base: $AP_BASE_IMAGE made in $((SECONDS - t0))s ($(image_size "$AP_BASE_IMAGE"))"
}

# --- processor ----------------------------------------------------------------------------------
build_processor() {
    local version revision source previous t0=$SECONDS
    previous=$(podman image inspect --format '{{.Id}}' "$AP_IMAGE" 2>/dev/null || true)
    version=$(sed -n 's/^project([^)]* VERSION \([0-9.]*\).*/\1/p' "$AP_ROOT/CMakeLists.txt")
    revision=$(git -C "$AP_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    # A revision with uncommitted changes in what the image compiles is not that revision.
    if [ "$revision" != unknown ] &&
        [ -n "$(git -C "$AP_ROOT" status --porcelain -- CMakeLists.txt include processor schemas)" ]; then
        revision="$revision-dirty"
    fi
    source=${AP_IMAGE_SOURCE:-$(git -C "$AP_ROOT" remote get-url origin 2>/dev/null || echo unknown)}
    log "processor: building $AP_IMAGE (version $version, revision $revision)"
    # --network host: the RUN steps reach Debian's mirror without a container network set up.
    # --label as well as the build args: podman 4.3 reuses a cached LABEL step whose ARGs changed,
    # which would leave an older revision on the image; --label is applied to the result.
    podman build --pull=never --network host --layers \
        --file "$AP_CONTAINER_DIR/Containerfile" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "SOURCE=$source" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.revision=$revision" \
        --label "org.opencontainers.image.source=$source" \
        --build-arg "JOBS=${AP_BUILD_JOBS:-2}" \
        ${AP_IMAGE_ID_FILE:+--iidfile "$AP_IMAGE_ID_FILE"} \
        --tag "$AP_IMAGE" "$AP_ROOT" >&2
    # The image the tag named before, now nameless, would pile up with each revision.
    if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$AP_IMAGE")" ]; then
        podman rmi "$previous" >/dev/null 2>&1 || true   # kept while a container uses it
    fi
    log "processor: $AP_IMAGE built in $((SECONDS - t0))s ($(image_size "$AP_IMAGE"))"
}

# --- kafka --------------------------------------------------------------------------------------
build_kafka() {
    local image ctx t0=$SECONDS
    image=$(ap_kafka_image)
    if podman image exists "$image"; then
        log "kafka: $image present"
        return 0
    fi
    ap_kafka_libs_ready || ap_die "kafka: jars missing in $AP_KAFKA_LIBS; run deploy/local/deps.sh"
    # The context: the build files and the cached jars (hard links when the cache is on the same
    # file system, so nothing is downloaded or copied twice).
    ctx=$(mktemp -d "$AP_LOCAL_DIR/kafka-image.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'" RETURN
    cp "$AP_CONTAINER_DIR"/kafka/* "$ctx/"
    cp -rl "$AP_KAFKA_LIBS" "$ctx/libs" 2>/dev/null || cp -r "$AP_KAFKA_LIBS" "$ctx/libs"
    log "kafka: building $image"
    podman build --pull=never --network host --layers \
        --build-arg "KAFKA_VERSION=$AP_KAFKA_VERSION" \
        --tag "$image" "$ctx" >&2
    log "kafka: $image built in $((SECONDS - t0))s ($(image_size "$image"))"
}

mkdir -p "$AP_LOCAL_DIR"
build_base
for t in "${targets[@]}"; do
    case "$t" in
        base) ;;
        processor) build_processor ;;
        kafka) build_kafka ;;
    esac
done
