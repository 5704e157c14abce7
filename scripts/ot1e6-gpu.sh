#!/usr/bin/env bash
# The n = m = 10^6 entropic OT solve of docs/usage/mpi.md on one GPU, for a device window:
# the points of bench/ot_1e6.sh (x then y from numpy.random.default_rng(0).random((10**6, 2))),
# eps = 0.02 (0.01 of the max cost 2), L1 marginal tolerance 1e-6, float64, eps-scaling with
# factor 0.5 and --overrelax 1.5, through the library's public call (attnflow::sinkhorn with
# set_device(cuda, float64): bench/cuda_library_bench.cpp). It prints the RESULT line (time,
# iterations, error, cost, converged, the host's peak RSS) and the GPU's peak memory use.
#
# Device-tool call: command "bash scripts/ot1e6-gpu.sh", carry [".gpu-deps"], timeout 590. It
# reuses build-gpu/ when scripts/gpu-check.sh built it on the same warm machine; otherwise it
# runs that script's build step alone (about 2 minutes). OT1E6_N=N solves N points instead
# (a smoke test), OT1E6_DEVICE=cpu runs the same call on the CPU (float64; no GPU needed),
# OT1E6_SECONDS=S caps the solve (default 480), PYTHON the interpreter with NumPy (python3).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OUT:-$root/ot1e6-gpu-out}"
mkdir -p "$out"
build="${OT1E6_BUILD:-$root/build-gpu}"
n="${OT1E6_N:-1000000}"
device="${OT1E6_DEVICE:-cuda}"
t_start=$SECONDS
phase() { echo; echo "=== $* ($((SECONDS - t_start)) s)"; }

bench="$build/cuda_library_bench"
if [ ! -x "$bench" ]; then
  phase "build (scripts/gpu-check.sh's, then stop)"
  GPU_CHECK_BUILD_ONLY=1 OUT="$out" bash scripts/gpu-check.sh || { echo "ot1e6-gpu: build failed"; exit 1; }
  bench="$root/build-gpu/cuda_library_bench"
fi
[ -d "$root/.gpu-deps" ] && export LD_LIBRARY_PATH="$root/.gpu-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

phase "points (n = $n, d = 2)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
${PYTHON:-python3} - "$n" "$tmp" <<'EOF' || { echo "ot1e6-gpu: could not write the points (NumPy)"; exit 1; }
import sys
import numpy as np
n, tmp = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
x = rng.random((10**6, 2))  # bench/ot_1e6.sh's draws; the first n rows when n is smaller
y = rng.random((10**6, 2))
x[:n].tofile(f"{tmp}/x.bin")
y[:n].tofile(f"{tmp}/y.bin")
EOF

phase "solve ($device, float64, eps 0.02, tol 1e-6, --factor 0.5, --overrelax 1.5)"
gpu_log="$out/gpu-memory.csv"
if [ "$device" = cuda ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$gpu_log" 2>/dev/null &
  smi=$!
fi
timeout "${OT1E6_SECONDS:-480}" "$bench" sinkhorn --device "$device" --n "$n" --dim 2 --prec f64 \
  --x "$tmp/x.bin" --y "$tmp/y.bin" --eps 0.02 --tol 1e-6 --scaling 1 --factor 0.5 --overrelax 1.5 \
  --max-iter 400 | tee "$out/result.txt"
rc=${PIPESTATUS[0]}
if [ -n "${smi:-}" ]; then
  kill "$smi" 2>/dev/null
  wait "$smi" 2>/dev/null
  echo "GPU memory used, peak: $(sort -n "$gpu_log" | tail -1) MiB (nvidia-smi, every 0.5 s, whole card)"
fi
[ $rc -eq 124 ] && echo "ot1e6-gpu: stopped by the ${OT1E6_SECONDS:-480} s limit"
phase "done: rc $rc"
exit $rc
