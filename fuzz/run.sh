#!/usr/bin/env bash
# Builds fuzz/fuzz_scan.cc with the addon's own native sources under AddressSanitizer and
# UndefinedBehaviorSanitizer (any report aborts) and runs it. Rule: the harness compiles the very
# files binding.gyp lists (minus addon.cc, the N-API layer), so what is fuzzed is what ships.
# Usage: fuzz/run.sh [COUNT=100000] [SEED=1]   (CXX=clang++ to use clang)
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-100000}"
seed="${2:-1}"
out="$(mktemp -d "${TMPDIR:-/tmp}/sockwatch-fuzz.XXXXXX")"
trap 'rm -rf "$out"' EXIT
# clang++ when it can link the sanitizers (Debian's clang without libclang-rt-*-dev cannot), else g++.
cxx="${CXX:-}"
if [ -z "$cxx" ]; then
  for c in clang++ g++; do
    command -v "$c" >/dev/null || continue
    if echo 'int main() { return 0; }' | "$c" -x c++ -fsanitize=address,undefined -o "$out/probe" - 2>/dev/null; then
      cxx="$c"
      break
    fi
  done
fi
[ -n "$cxx" ] || { echo "fuzz/run.sh: no C++ compiler here links ASan + UBSan" >&2; exit 1; }
"$cxx" -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Inative -o "$out/fuzz_scan" fuzz/fuzz_scan.cc \
  native/netlink.cc native/inet_diag.cc native/scan.cc native/proc_udp.cc
ASAN_OPTIONS="abort_on_error=1:detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$out/fuzz_scan" fuzz/corpus "$count" "$seed"
