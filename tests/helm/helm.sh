#!/usr/bin/env bash
# Usage: tests/helm/helm.sh
#
# Prints the path of a Helm 4 binary, building it first when missing: `go install` from the Go
# module proxy (helm.sh/helm/v4 at HELM_VERSION below; ~2.5-4 min once on 2 cores), cached in
# $AP_CACHE_DIR/tools. AP_HELM=/path/to/helm uses a Helm 4 binary of yours instead. Used by
# tests/helm/check.sh and tests/deploy/kube_play.sh; messages go to stderr.
set -euo pipefail

HELM_VERSION=v4.3.1
cache=${AP_CACHE_DIR:-${HOME:-/root}/.cache/allocation-processor}
tools="$cache/tools"

log() { printf '[helm] %s\n' "$*" >&2; }
die() { printf '[helm] error: %s\n' "$*" >&2; exit 1; }

helm=${AP_HELM:-$tools/helm-$HELM_VERSION/helm}
if [ ! -x "$helm" ]; then
    [ -z "${AP_HELM:-}" ] || die "AP_HELM=$AP_HELM is not an executable"
    mkdir -p "$tools"
    # Two checkouts may get here at once: one builds, the other waits for it.
    exec 9>"$tools/.helm.lock"
    flock -w 900 9 || die "another build kept $tools/.helm.lock for 15 minutes"
fi
if [ ! -x "$helm" ]; then
    # The Go toolchain from go.dev usually sits in /usr/local/go, not always on PATH.
    command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null || die "go not found: Helm $HELM_VERSION is built with go install (Debian: golang-go >= 1.24, or go.dev)"
    log "building Helm $HELM_VERSION from the Go module proxy (once; a few minutes on 2 cores)"
    t0=$SECONDS
    tmp=$(mktemp -d "$tools/helm.tmp.XXXXXX")
    GOBIN="$tmp" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2 \
        || { rm -rf "$tmp"; die "go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION failed"; }
    mkdir -p "$(dirname "$helm")"
    mv "$tmp/helm" "$helm"   # only a complete binary ever sits at $helm
    rm -rf "$tmp"
    log "Helm built in $((SECONDS - t0)) s: $helm"
fi
"$helm" version --short 2>/dev/null | grep -q '^v4\.' || die "$helm is not Helm 4: $("$helm" version --short 2>&1)"
echo "$helm"
