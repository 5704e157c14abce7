#!/usr/bin/env bash
# Everything still to be measured on the lent GPU machine, in one device call (at most 600 s),
# in this order, each step capped so that the later ones keep their share:
#   1. scripts/gpu-check.sh: the build, the GPU tests, the sanitizers and the benchmark rows
#      named by WINDOW_SECTIONS (default "phase": the published phase diagram per d);
#   2. scripts/ot1e6-gpu.sh: the n = m = 10^6 OT solve (float64, over-relaxed);
#   3. scripts/mpi-device-check.sh: MPI on the machine's 16 cores (only when .mpi-deps is there),
#      at sizes that fit what is left (attention n = 65536, OT n = m = 8192).
# Device-tool call: command "bash scripts/device-window.sh", carry [".gpu-deps", ".mpi-deps"],
# timeout_s 600. Each step's output goes to the screen and to <step>.txt. The device tool brings
# back only a few files from $OUT (on 2026-11-27 eight of fifteen came back, the 10^6 result
# not among them), so the steps write into a scratch folder, and $OUT receives
# device-window.tgz (every log and table), the steps' <step>.txt and their tables.
#   WINDOW_SECONDS   the whole run (default 585)
#   WINDOW_MPI       seconds kept for step 3 (default 80; 0 skips it)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
final="${OUT:-$root/device-window-out}"
mkdir -p "$final"
out="$(mktemp -d)"
export OUT="$out"
pack() {  # everything into one archive, and the few files one reads first beside it
  tar czf "$final/device-window.tgz" -C "$out" . 2>/dev/null
  for f in gpu-check.txt ot1e6-gpu.txt mpi-check.txt table.md mpi_scaling.md; do
    [ -f "$out/$f" ] && cp "$out/$f" "$final/$f"
  done
  rm -rf "$out"
}
trap pack EXIT
total="${WINDOW_SECONDS:-585}"
mpi_keep="${WINDOW_MPI:-80}"
[ -f .mpi-deps/env.sh ] || mpi_keep=0
left() { echo $((total - SECONDS)); }

step() {  # step NAME SECONDS COMMAND...: runs COMMAND under a time limit, output teed to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "##### $name: at most $limit s (at $SECONDS s)"
  timeout --signal=TERM --kill-after=5 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "##### $name: rc $rc (at $SECONDS s)"
}

check_limit=$(( $(left) - mpi_keep - 200 ))
[ $check_limit -gt 260 ] && check_limit=260
step gpu-check "$check_limit" env GPU_CHECK_SECTIONS="${WINDOW_SECTIONS:-phase}" \
  GPU_CHECK_DEADLINE=$((check_limit - 15)) bash scripts/gpu-check.sh

ot_limit=$(( $(left) - mpi_keep - 5 ))
step ot1e6-gpu "$ot_limit" env OT1E6_SECONDS=$((ot_limit - 20)) bash scripts/ot1e6-gpu.sh

if [ "$mpi_keep" -gt 0 ]; then
  step mpi-check "$(( $(left) - 2 ))" env MPI_CHECK_N="${MPI_CHECK_N:-65536}" \
    MPI_CHECK_OT_N="${MPI_CHECK_OT_N:-8192}" bash scripts/mpi-device-check.sh
fi
echo "##### device-window: done at $SECONDS s"
