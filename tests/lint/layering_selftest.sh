#!/usr/bin/env bash
# Shows that tests/lint/layering.sh catches what it claims to: on a scratch copy of the
# sources, a clean tree passes, and each planted upward include (an adapter including the
# composition root, or an entrypoint's header; the domain including libpq) fails it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failures=0

fresh_copy() {
    rm -rf "$scratch/tree"
    mkdir -p "$scratch/tree"
    # Not a git checkout: the lint falls back to find(1) for its file list.
    cp -r "$root/processor" "$root/include" "$scratch/tree/"
    mkdir -p "$scratch/tree/tests"
}

expect() { # expect pass|fail WHAT
    local want=$1 what=$2 got=pass
    bash "$here/layering.sh" "$scratch/tree" >"$scratch/out" 2>&1 || got=fail
    if [[ $got != "$want" ]]; then
        echo "selftest: $what: expected the lint to $want, it did not:" >&2
        cat "$scratch/out" >&2
        failures=$((failures + 1))
    else
        echo "selftest: $what: the lint gives $want, as it should"
    fi
}

plant() { # plant FILE LINE: appends an #include line to a file of the copy
    printf '%s\n' "$2" >>"$scratch/tree/$1"
}

fresh_copy
expect pass "the tree as it is"

fresh_copy
plant processor/adapters/pg_views.c '#include "ap/bootstrap.h"'
expect fail "an adapter including the composition root"

fresh_copy
plant processor/adapters/kafka_admin.c '#include "entrypoints/consumer.h"'
expect fail "an adapter including an entrypoint"

fresh_copy
plant processor/domain/model.c '#include <libpq-fe.h>'
expect fail "the domain including libpq"

exit $((failures > 0))
