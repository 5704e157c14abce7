#!/usr/bin/env bash
# make test: build, run every CTest entry, then fuzz each parser for a few seconds.
# Usage: scripts/test.sh BUILD JOBS FUZZ_BUILD FUZZ_SECONDS
# The fuzz build (clang, a second build of the library) starts at once in the background under
# `nice -n 19`: it takes only the CPU the main build and the tests leave idle (link steps, the
# tail of a long compile, single-threaded tests), then finishes alone; its output goes to
# FUZZ_BUILD/build.log and is printed if it fails. An interrupted make test stops it too.
set -euo pipefail
build=$1
jobs=$2
fuzz_build=$3
fuzz_seconds=$4
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

mkdir -p "$fuzz_build"
fuzz_log="$fuzz_build/build.log"
# setsid: its own process group, so that stopping it stops its compilers too.
setsid -w nice -n 19 make --no-print-directory fuzz-build FUZZ_BUILD="$fuzz_build" JOBS="$jobs" \
  > "$fuzz_log" 2>&1 &
fuzz_pid=$!
trap 'kill -- -"$fuzz_pid" 2>/dev/null || true' EXIT INT TERM

fail=0
cmake --build "$build" -j "$jobs"
(cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 900) || fail=1

echo "make test: waiting for the fuzz build (log: $fuzz_log)"
if ! wait "$fuzz_pid"; then
  tail -n 60 "$fuzz_log"
  echo "make test: the fuzz build failed (log: $fuzz_log)" >&2
  exit 1
fi
trap - EXIT INT TERM
FUZZ_JOBS="$jobs" fuzz/run.sh "$fuzz_build" "$fuzz_seconds" || fail=1
exit "$fail"
