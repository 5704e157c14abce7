#!/usr/bin/env bash
# Runs every fuzz target of BUILD (a build with ATTNFLOW_FUZZ=ON, see `make fuzz`) for SECONDS
# each, starting from the committed seeds fuzz/corpus/<target>. New interesting inputs go to
# BUILD/fuzz-corpus/<target> (the committed corpus is never modified); a crash writes
# fuzz/crashes/<target>-crash-<sha1> and stops with a non-zero status. To keep a crash as a
# regression input, fix it and copy the file into fuzz/corpus/<target>/ (then `make test`
# replays it on every machine). Usage: fuzz/run.sh BUILD SECONDS [TARGET...]
# FUZZ_JOBS=K (default 1) runs K targets at a time, each on its own core for SECONDS; their
# reports are printed in target order once each has finished.
set -euo pipefail
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy config model checkpoint)
jobs=${FUZZ_JOBS:-1}
mkdir -p "$here/crashes"

fuzz_one() {  # TARGET: fuzz it; its report (the last lines of libFuzzer's output) in its log
  local t=$1 work="$build/fuzz-corpus/$1"
  mkdir -p "$work"
  # -rss_limit_mb: a parser must never need more; -timeout: nor hang on one input.
  OMP_NUM_THREADS=1 "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$here/crashes/$t-" "$work" "$here/corpus/$t" > "$build/fuzz-$t.log" 2>&1
}

status=0
for ((first = 0; first < ${#targets[@]}; first += jobs)); do
  pids=()
  batch=("${targets[@]:first:jobs}")
  for t in "${batch[@]}"; do
    echo "fuzz: $t for ${seconds}s"
    fuzz_one "$t" &
    pids+=($!)
  done
  for k in "${!batch[@]}"; do
    rc=0
    wait "${pids[$k]}" || rc=$?
    tail -n 12 "$build/fuzz-${batch[$k]}.log"
    if [ "$rc" -ne 0 ]; then
      echo "fuzz: ${batch[$k]} failed (exit $rc; full output: $build/fuzz-${batch[$k]}.log)" >&2
      status=1
    fi
  done
done
exit "$status"
