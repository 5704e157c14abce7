#!/usr/bin/env bash
# Runs every fuzz target of BUILD (a build with ATTNFLOW_FUZZ=ON, see `make fuzz`) for SECONDS
# each, starting from the committed seeds fuzz/corpus/<target>. New interesting inputs go to
# BUILD/fuzz-corpus/<target> (the committed corpus is never modified); a crash writes
# fuzz/crashes/<target>-crash-<sha1> and stops with a non-zero status. To keep a crash as a
# regression input, fix it and copy the file into fuzz/corpus/<target>/ (then `make test`
# replays it on every machine). Usage: fuzz/run.sh BUILD SECONDS [TARGET...]
set -euo pipefail
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy config model checkpoint)
mkdir -p "$here/crashes"
for t in "${targets[@]}"; do
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  echo "fuzz: $t for ${seconds}s"
  # -rss_limit_mb: a parser must never need more; -timeout: nor hang on one input.
  OMP_NUM_THREADS=1 "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$here/crashes/$t-" "$work" "$here/corpus/$t" 2>&1 | tail -n 12
done
