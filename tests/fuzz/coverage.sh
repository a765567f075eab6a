#!/usr/bin/env bash
# Usage: tests/fuzz/coverage.sh [HARNESS...]
#
# Source coverage of what the fuzzers found: builds the harnesses once more with clang's
# source-based coverage (build/fuzz-cov), replays each harness's corpus through it (libFuzzer
# -runs=0: every input once, no mutation) and prints llvm-cov's report of the files that
# harness is about, with a TOTAL line of regions, functions and lines covered. The corpus is
# what run.sh keeps (build/fuzz/corpus/<harness>/, or $AP_FUZZ_BUILD's) and the checked-in
# seeds; run run.sh first, the longer the better.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src=$root/tests/fuzz
fuzz=${AP_FUZZ_BUILD:-$root/build/fuzz}
build=$root/build/fuzz-cov
bin=$build/tests/fuzz

log() { printf '[fuzz-cov] %s\n' "$*" >&2; }

# The files each harness is about (the decoder and what it calls of ours).
declare -A FILES=(
    [fuzz_json_command]="processor/adapters/json_command.c processor/domain/messages.c"
    [fuzz_avro_command]="processor/adapters/avro_decode.c processor/adapters/avro_check.c processor/adapters/avro_codec.c"
    [fuzz_decode_stream]="processor/entrypoints/decode_stream.c processor/adapters/avro_decode.c"
    [fuzz_config]="processor/config.c processor/secret.c"
    [fuzz_http_body]="processor/adapters/json_command.c processor/entrypoints/http_routes.c"
    [fuzz_http_request]="processor/entrypoints/http_routes.c"
    [fuzz_registry_answer]="processor/adapters/registry_client.c processor/adapters/avro_decode.c processor/adapters/avro_check.c"
)
# Where a file holds more than the harness reaches, the functions it is about (shown each).
declare -A FUNCS=(
    [fuzz_http_body]="ap_http_parse_command|ap_command_decode_json"
    [fuzz_http_request]="ap_http_read_command|ap_http_parse_command|authorised|id_header|valid_id|ap_http_token_equal"
    [fuzz_registry_answer]="ap_registry_answer_[a-z]*|writer_from_json|writer_by_id"
)
HARNESSES=(fuzz_json_command fuzz_avro_command fuzz_decode_stream fuzz_config fuzz_http_body
           fuzz_http_request fuzz_registry_answer)
(($#)) && HARNESSES=("$@")

command -v llvm-cov >/dev/null && command -v llvm-profdata >/dev/null \
    || { log "llvm-cov and llvm-profdata not found (package llvm)"; exit 2; }
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAP_FUZZ=ON -DAP_TESTS=OFF \
        -DCMAKE_C_FLAGS="-fprofile-instr-generate -fcoverage-mapping" \
        -DCMAKE_EXE_LINKER_FLAGS="-fprofile-instr-generate" >/dev/null
fi
cmake --build "$build" --target "${HARNESSES[@]}" >"$build/build.log" 2>&1 \
    || { cat "$build/build.log" >&2; log "building the coverage tree failed"; exit 1; }

export ASAN_OPTIONS=detect_leaks=0
mkdir -p "$build/profiles"
for h in "${HARNESSES[@]}"; do
    [ -n "${FILES[$h]:-}" ] || { log "no such harness: $h"; exit 2; }
    dirs=()
    for d in "$fuzz/corpus/$h" "$src/corpus/$h" "$fuzz/seeds/${h#fuzz_}"; do
        [ -d "$d" ] && dirs+=("$d")
    done
    ((${#dirs[@]})) || { log "$h: no corpus (run tests/fuzz/run.sh first)"; continue; }
    rm -f "$build/profiles/$h".*
    LLVM_PROFILE_FILE="$build/profiles/$h.%p.profraw" \
        "$bin/$h" -runs=0 "${dirs[@]}" </dev/null >"$build/profiles/$h.log" 2>&1 \
        || { log "$h: replaying its corpus failed (see $build/profiles/$h.log)"; exit 1; }
    llvm-profdata merge -sparse -o "$build/profiles/$h.profdata" "$build/profiles/$h".*.profraw
    inputs=$(find "${dirs[@]}" -type f | wc -l)
    printf '\n== %s (%d inputs)\n' "$h" "$inputs"
    files=()
    for f in ${FILES[$h]}; do files+=("$root/$f"); done
    llvm-cov report "$bin/$h" -instr-profile="$build/profiles/$h.profdata" "${files[@]}" \
        | sed "s|$root/||"
    if [ -n "${FUNCS[$h]:-}" ]; then
        llvm-cov report -show-functions "$bin/$h" -instr-profile="$build/profiles/$h.profdata" \
            "${files[@]}" | grep -E "^Name|^([^ ]*:)?(${FUNCS[$h]})( |$)" || true
    fi
done
