#!/usr/bin/env bash
# Usage: deploy/local/build-matrix.sh [NAME...]
#
# Builds the program in every configuration a user gets, each warning-free under -Werror, so a
# warning that only one optimiser level or one compiler sees fails CI rather than a user:
#   gcc-default, clang-default   no CMAKE_BUILD_TYPE, as a plain `cmake -S . -B build` does
#   gcc-relwithdebinfo           build/release, exactly as deploy/local/run builds it
#   clang-relwithdebinfo
#   gcc-release, clang-release   as a packager (and the container image) builds
#   clang-debug-sanitize         Debug + ASan/UBSan (gcc's twin is build/ci, the test build)
# Only the program and its libraries are built (tests off), with Ninja: seconds each. Each
# must keep its asserts (no -DNDEBUG), and link jemalloc unless it has the sanitizers.
# With NAMEs, builds only those. deploy/local/test runs it before the tests.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AP_ROOT"

declare -A CONFIGS=(
    [gcc-default]="gcc"
    [clang-default]="clang"
    [gcc-relwithdebinfo]="gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo"
    [clang-relwithdebinfo]="clang -DCMAKE_BUILD_TYPE=RelWithDebInfo"
    [gcc-release]="gcc -DCMAKE_BUILD_TYPE=Release"
    [clang-release]="clang -DCMAKE_BUILD_TYPE=Release"
    [clang-debug-sanitize]="clang -DCMAKE_BUILD_TYPE=Debug -DAP_SANITIZE=ON"
)
ORDER=(gcc-default gcc-relwithdebinfo gcc-release clang-default clang-relwithdebinfo
       clang-release clang-debug-sanitize)

names=("$@")
((${#names[@]})) || names=("${ORDER[@]}")

for name in "${names[@]}"; do
    [ -n "${CONFIGS[$name]:-}" ] || ap_die "unknown configuration '$name' (one of: ${ORDER[*]})"
    read -r cc flags <<<"${CONFIGS[$name]}"
    command -v "$cc" >/dev/null || ap_die "$cc not found (deploy/local/deps.sh installs it)"
    start=$SECONDS
    if [ "$name" = gcc-relwithdebinfo ]; then
        # The very build deploy/local/run makes, in the folder it uses.
        ap_configure_release >/dev/null
        dir=build/release
    else
        dir=build/matrix/$name
        # shellcheck disable=SC2086  # flags are words
        cmake -S . -B "$dir" -G Ninja -DCMAKE_C_COMPILER="$cc" -DAP_TESTS=OFF $flags >/dev/null
    fi
    cmake --build "$dir" --target allocation-processor >"$dir/build.log" 2>&1 \
        || { cat "$dir/build.log" >&2; ap_die "build $name failed"; }
    # Asserts stay in every build (CMakeLists.txt removes CMake's NDEBUG).
    ! grep -q -- '-DNDEBUG' "$dir/compile_commands.json" \
        || ap_die "build $name compiles with -DNDEBUG: its asserts are off"
    # jemalloc is the program's allocator, except beside the sanitizers' (CMakeLists.txt).
    links_jemalloc=0
    ldd "$dir/allocation-processor" | grep -q 'libjemalloc\.so' && links_jemalloc=1
    if [[ "$flags" == *AP_SANITIZE=ON* ]]; then
        ((!links_jemalloc)) || ap_die "build $name links jemalloc beside the sanitizers"
    else
        ((links_jemalloc)) || ap_die "build $name does not link jemalloc"
    fi
    ap_log "build $name: ok, warning-free with -Werror ($((SECONDS - start)) s, $dir)"
done
