#!/usr/bin/env bash
# Usage: tests/fuzz/run.sh [--seconds N | --runs N] [SECONDS] [HARNESS...]
#        tests/fuzz/run.sh --build | --report [HARNESS...]
#
# Builds the fuzz tree (build/fuzz: clang, -DAP_FUZZ=ON, libFuzzer + ASan + UBSan) and runs
# each harness (all of HARNESSES below, or the HARNESSes named, e.g. fuzz_config) one after
# the other, on one core: for SECONDS (default 30; `--seconds N` is the same), or with
# `--runs N` until it has executed N inputs (the long run: `nice tests/fuzz/run.sh --runs
# 10000000`). Seeds: tests/fuzz/corpus/<harness>/ (checked in) and the Avro values the
# encoder makes (fuzz-avro-seeds, into build/fuzz/seeds/); what a run learns is kept in
# build/fuzz/corpus/<harness>/ and seeds the next run. A crash, leak or UBSan report leaves
# its input in build/fuzz/artifacts/<harness>/ and the log in build/fuzz/logs/<harness>.log.
# Prints a table: executions, exec/s, seconds, coverage (cov: edges and ft: features from
# libFuzzer's last status line, corpus size) per harness; exits 1 if any harness failed.
# AP_FUZZ_BUILD=DIR builds and runs in DIR instead of build/fuzz.
# --build only builds (deploy/local/test does, so a compile error shows up early); --report
# only prints the table of the last runs' logs (one still running shows as unfinished).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src=$root/tests/fuzz
build=${AP_FUZZ_BUILD:-$root/build/fuzz}
bin=$build/tests/fuzz
HARNESSES=(fuzz_json_command fuzz_avro_command fuzz_decode_stream fuzz_config fuzz_http_body
           fuzz_registry_answer fuzz_http_request)

log() { printf '[fuzz] %s\n' "$*" >&2; }

# row HARNESS SECONDS RC: the table's row of a run from its log (FAILED, with the findings on
# stderr, when RC is not 0 or the log holds a sanitizer's or libFuzzer's report); false when
# it failed.
row() {
    local h=$1 took=$2 rc=$3 logfile=$build/logs/$1.log execs speed status cov ft units verdict=ok
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logfile" | tail -n 1)
    status=$(grep -E '^#[0-9]+' "$logfile" | grep ' cov: ' | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    units=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
    if ((rc != 0)) || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$logfile"; then
        verdict=FAILED
        grep -E 'ERROR:|runtime error:|SUMMARY:|Test unit written to' "$logfile" | head -n 5 >&2 || true
    elif [ -z "$execs" ]; then
        verdict=unfinished
    fi
    [ "$took" = "?" ] && [ -n "$execs" ] && ((${speed:-0} > 0)) && took=$((execs / speed))
    results+=("$(printf '%-22s %12s %8s %7s %6s %7s %6s  %s' "$h" "${execs:-?}" "${speed:-?}" \
        "$took" "${cov:-?}" "${ft:-?}" "${units:-?}" "$verdict")")
    [ "$verdict" != FAILED ]
}

table() {
    printf '%-22s %12s %8s %7s %6s %7s %6s  %s\n' harness executions exec/s seconds cov ft \
        corpus result
    printf '%s\n' "${results[@]}"
}

build_only=0
report=0
seconds=30
runs=
while (($#)); do
    case $1 in
    --build) build_only=1 ;;
    --report) report=1 ;;
    --seconds) seconds=${2:-}; shift ;;
    --runs) runs=${2:-}; shift ;;
    --*) log "unknown option $1"; exit 2 ;;
    *) break ;;
    esac
    shift
done
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
[[ $seconds =~ ^[0-9]+$ ]] || { log "SECONDS must be a whole number, not '$seconds'"; exit 2; }
[[ -z $runs || $runs =~ ^[0-9]+$ ]] || { log "--runs takes a whole number, not '$runs'"; exit 2; }
(($#)) && HARNESSES=("$@")

results=()
if ((report)); then
    for h in "${HARNESSES[@]}"; do
        [ -f "$build/logs/$h.log" ] && { row "$h" "?" 0 || true; }
    done
    table
    exit 0
fi

command -v clang >/dev/null || { log "clang not found (deploy/local/deps.sh installs it)"; exit 2; }
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAP_FUZZ=ON -DAP_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target "${HARNESSES[@]}" fuzz-avro-seeds >"$build/build.log" 2>&1 \
    || { cat "$build/build.log" >&2; log "building the fuzz tree failed"; exit 1; }
((build_only)) && { log "built ${HARNESSES[*]} in $build"; exit 0; }

rm -rf "$build/seeds"
mkdir -p "$build/seeds" "$build/logs"
"$bin/fuzz-avro-seeds" "$build/seeds"

# Leaks are reported at the end of a run (and by libFuzzer after an input that leaked);
# UBSan's findings abort (-fno-sanitize-recover) so libFuzzer saves the input.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=0
for h in "${HARNESSES[@]}"; do
    [ -x "$bin/$h" ] || { log "no such harness: $h"; exit 2; }
    corpus=$build/corpus/$h
    mkdir -p "$corpus" "$build/artifacts/$h"
    dirs=("$corpus")
    [ -d "$src/corpus/$h" ] && dirs+=("$src/corpus/$h")
    [ -d "$build/seeds/${h#fuzz_}" ] && dirs+=("$build/seeds/${h#fuzz_}")
    if [ -n "$runs" ]; then
        limit=(-runs="$runs")
        what="$runs runs"
    else
        limit=(-max_total_time="$seconds")
        what="$seconds s"
    fi
    opts=("${limit[@]}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
          -artifact_prefix="$build/artifacts/$h/")
    case $h in
    fuzz_config) opts+=(-dict="$src/config.dict") ;;
    fuzz_json_command | fuzz_http_body | fuzz_registry_answer) opts+=(-dict="$src/json.dict") ;;
    fuzz_http_request) opts+=(-dict="$src/http.dict") ;;
    esac
    logfile=$build/logs/$h.log
    log "$h: $what (log $logfile)"
    rc=0
    started=$SECONDS
    "$bin/$h" "${opts[@]}" "${dirs[@]}" </dev/null >"$logfile" 2>&1 || rc=$?
    took=$((SECONDS - started))
    row "$h" "$took" "$rc" || failed=1
done

table
exit "$failed"
