#!/usr/bin/env bash
# Usage: deploy/local/mailpit.sh
#
# Makes sure the mailpit SMTP test server (github.com/axllent/mailpit, pinned) is built and
# cached outside the checkout, and prints the binary's path. Built once with `go install`
# (a few minutes cold on 2 cores), then reused: a second run takes milliseconds. The e2e email
# tests call it when the binary is missing, and deploy/local/test before the tests.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AP_MAILPIT_VERSION=v1.33.1
bin_dir="$AP_CACHE_DIR/bin"
bin="$bin_dir/mailpit-$AP_MAILPIT_VERSION"

if [ ! -x "$bin" ]; then
    command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null || ap_die "go not found: it builds mailpit for the email tests"
    ap_log "building mailpit $AP_MAILPIT_VERSION into $bin_dir (once)"
    mkdir -p "$bin_dir"
    tmp=$(mktemp -d "$bin_dir/mailpit.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    GOBIN="$tmp" GOFLAGS=-mod=mod nice go install "github.com/axllent/mailpit@$AP_MAILPIT_VERSION"
    # Moved in whole, so an interrupted build never looks complete.
    mv "$tmp/mailpit" "$bin"
fi
echo "$bin"
