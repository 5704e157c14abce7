#!/usr/bin/env bash
# The GPU check, run on the bare GPU machine (CUDA toolkit, CMake, PyTorch; none of
# our Debian packages, no network) from the repository root:
#   1. builds the CUDA backend, cuda_tests and cuda_bench (scripts/gpu-check/CMakeLists.txt)
#      against the dependencies bundled by scripts/gpu-bundle.sh in .gpu-deps/;
#   2. runs cuda_tests (GPU vs CPU, determinism, bad input), cuda_wiring_tests (set_device
#      followed by attention, Sinkhorn, flows and ensembles, against the CPU) and small
#      cuda_tests under compute-sanitizer memcheck and racecheck;
#   3. runs bench/cuda_compare.py (attnflow vs PyTorch on the same card) and prints one table.
# Logs and the table go to $OUT (the device tool's folder) or ./gpu-check-out. Budget: under
# 10 minutes: build about 2, tests at most 2 + 1.5 (wiring), sanitizer at most 2, benchmarks whatever is left
# of 560 s (they need about 4); typically 6 in all.
#   GPU_CHECK_QUICK=1   small benchmark sizes (smoke test of the script)
#   GPU_CHECK_JOBS=N    build jobs (default: all cores)
#   GPU_CHECK_ARCH=90   CUDA architectures (default 90: H100 / H200)
#   GPU_CHECK_DEADLINE=S  end by S seconds (default 560; the benchmarks get what is left)
#   GPU_CHECK_BIG_SECONDS=S  time limit of the n = 1e6 fp32 Sinkhorn row (default 300; 0 skips it)
#   GPU_CHECK_BUILD_ONLY=1   stop after the build (scripts/ot1e6-gpu.sh builds through this)
#   GPU_CHECK_SECTIONS=...   benchmark rows (default attention,sinkhorn,phase,big; e.g. "phase"
#                            for a quick re-check of the batched ensemble after a fix)
# Device-tool call (docs/usage/gpu.md): command "bash scripts/gpu-check.sh", carry [".gpu-deps"].
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-check-out}"
mkdir -p "$out"
deps="$root/.gpu-deps"
build="$root/build-gpu"
jobs="${GPU_CHECK_JOBS:-$(nproc)}"
arch="${GPU_CHECK_ARCH:-90}"
status=0
t_start=$SECONDS
phase() { echo; echo "=== $* ($((SECONDS - t_start)) s)"; }

phase "machine"
nvidia-smi -L || echo "gpu-check: nvidia-smi failed"
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
command -v nvcc >/dev/null || { echo "gpu-check: no nvcc on PATH or in /usr/local/cuda/bin"; exit 2; }
nvcc --version | tail -2
cmake --version | head -1
c++ --version | head -1 || true
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
if [ ! -f "$deps/PACKAGES" ]; then
  echo "gpu-check: $deps missing: run scripts/gpu-bundle.sh on the build machine and carry .gpu-deps"
  exit 2
fi

phase "configure + build (-j $jobs, sm_$arch)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
rm -rf "$build"
if ! cmake -S scripts/gpu-check -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
    >"$out/build.log" 2>&1 ||
   ! cmake --build "$build" -j "$jobs" >>"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo "gpu-check: BUILD FAILED (log: build.log)"
  exit 1
fi
grep -E "gpu-check:|CUDA backend" "$out/build.log" || true
[ "${GPU_CHECK_BUILD_ONLY:-0}" = 1 ] && exit 0
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$jobs}"

phase "cuda_tests"
timeout 120 "$build/cuda_tests" --gtest_output="xml:$out/cuda_tests.xml" >"$out/cuda_tests.log" 2>&1
rc=$?
grep -E "^\[  (FAILED|PASSED)|^float32 error|Failure|needs a CUDA|error:|Expected|Which is|actual" "$out/cuda_tests.log" | head -60
tail -3 "$out/cuda_tests.log"
if [ $rc -ne 0 ]; then echo "gpu-check: cuda_tests FAILED (rc $rc)"; status=1; fi

phase "cuda_wiring_tests (set_device through attention, Sinkhorn, flows, ensembles)"
timeout 90 "$build/cuda_wiring_tests" --gtest_output="xml:$out/cuda_wiring_tests.xml" \
  >"$out/cuda_wiring_tests.log" 2>&1
rc=$?
grep -E "^\[  (FAILED|PASSED)|float32 relative error|Failure|needs a CUDA|error:|Expected|Which is|actual" \
  "$out/cuda_wiring_tests.log" | head -40
tail -3 "$out/cuda_wiring_tests.log"
if [ $rc -ne 0 ]; then echo "gpu-check: cuda_wiring_tests FAILED (rc $rc)"; status=1; fi

phase "compute-sanitizer (memcheck, racecheck) on small cuda_tests and the batched ensemble"
san="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
small='Cuda.ZeroWeightKeysAreIgnored:Cuda.LseOnlyAndOutOnly:Cuda.BadInputIsRejected'
: >"$out/sanitizer.log"
for tool in memcheck racecheck; do
  if [ -x "$san" ]; then
    timeout 60 "$san" --tool "$tool" --error-exitcode 3 "$build/cuda_tests" --gtest_filter="$small" \
      >>"$out/sanitizer.log" 2>&1
    rc=$?
    # The batched ensemble's block algorithm (phases between barriers: racecheck sees a phase
    # that reads what another thread writes in the same phase).
    timeout 60 "$san" --tool "$tool" --error-exitcode 3 "$build/cuda_wiring_tests" \
      --gtest_filter='DeviceWiring.BatchedEnsembleSmallForSanitizers' >>"$out/sanitizer.log" 2>&1
    rc2=$?
    [ $rc -eq 0 ] && rc=$rc2
    echo "compute-sanitizer $tool: rc $rc"
    if [ $rc -ne 0 ]; then status=1; grep -E "ERROR SUMMARY|Invalid|Race|hazard" "$out/sanitizer.log" | head -10; fi
  else
    echo "compute-sanitizer not found"
  fi
done

phase "benchmarks (attnflow CUDA vs PyTorch)"
quick=()
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
# Whatever the steps before took, end by the deadline (the device call's limit is 600).
left=$((${GPU_CHECK_DEADLINE:-560} - (SECONDS - t_start)))
[ $left -lt 60 ] && left=60
echo "benchmarks get at most $left s"
PYTHONUNBUFFERED=1 timeout $left python3 bench/cuda_compare.py --bench "$build/cuda_bench" \
  --library-bench "$build/cuda_library_bench" --ensemble-bench "$build/cuda_ensemble_bench" \
  --out "$out/table.md" --deadline $((left - 10)) \
  --big-seconds "${GPU_CHECK_BIG_SECONDS:-300}" --sections "${GPU_CHECK_SECTIONS:-attention,sinkhorn,phase,big}" \
  "${quick[@]}" >"$out/bench.log" 2>&1
rc=$?
cat "$out/bench.log"
[ $rc -ne 0 ] && [ -f "$out/table.md" ] && { echo "(table so far)"; cat "$out/table.md"; }
if [ $rc -ne 0 ]; then echo "gpu-check: benchmarks FAILED (rc $rc)"; status=1; fi

phase "done: status $status"
exit $status
