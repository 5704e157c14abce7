#!/usr/bin/env bash
# MPI on the 16-core GPU machine (issue: strong scaling beyond this 2-core VM), with the bundle
# of scripts/mpi-bundle.sh (carry [".mpi-deps"]):
#   1. the bundle's OpenMPI runs and the CLI build matching the CPU starts;
#   2. attention (n = 16384) and a fixed-work OT solve on 1 process and on 4 and 16 ranks give
#      byte-identical outputs;
#   3. bench/mpi_scaling.py over 1, 2, 4, 8, 16 ranks of one thread (attention n = 131072,
#      entropic OT n = m = 16384 with 20 iterations), 2 repeats: the table for docs/usage/mpi.md.
# Writes $OUT/mpi_check.log and $OUT/mpi_scaling.md (or /tmp/mpi-check without $OUT). About 2 min.
# Knobs (a quick check elsewhere): MPI_CHECK_IDENTITY="4 16" (rank counts compared with one
# process), MPI_CHECK_RANKS=1,2,4,8,16, MPI_CHECK_N=131072, MPI_CHECK_OT_N=16384; PYTHON (python3,
# with NumPy).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OUT:-/tmp/mpi-check}"
mkdir -p "$out"
[ -f .mpi-deps/env.sh ] || { echo "mpi-check: .mpi-deps missing: run scripts/mpi-bundle.sh here and carry it"; exit 2; }
. .mpi-deps/env.sh
exec > >(tee "$out/mpi_check.log") 2>&1
flags=(--allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none --bind-to none
       -x OMP_NUM_THREADS=1)
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "== $(mpirun --version | head -1); CLI $ATTNFLOW_CLI"
"$ATTNFLOW_CLI" --version
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -c "
import numpy as np
r = np.random.default_rng(1)
np.save('$tmp/x.npy', r.normal(size=(16384, 3)) * 0.3)
np.save('$tmp/ox.npy', r.normal(size=(4096, 2)))
np.save('$tmp/oy.npy', r.normal(size=(4096, 2)) + 1.0)"
identity="${MPI_CHECK_IDENTITY:-4 16}"
echo "== byte-identical on 1 process and on ${identity// /, } ranks"
"$ATTNFLOW_CLI" attention --x "$tmp/x.npy" --out "$tmp/a1.npy" --threads 1 >/dev/null
ot=(ot --x "$tmp/ox.npy" --y "$tmp/oy.npy" --eps 0.01 --no-eps-scaling --tol 1e-300 --max-iter 10 --threads 1)
"$ATTNFLOW_CLI" "${ot[@]}" --out "$tmp/ot1" >/dev/null
for p in $identity; do
  mpirun -np "$p" "${flags[@]}" "$ATTNFLOW_CLI" attention --x "$tmp/x.npy" --out "$tmp/a$p.npy" --threads 1 >/dev/null
  # (cmp in an if: under set -e a failing cmp in an && list would pass unnoticed)
  if cmp "$tmp/a1.npy" "$tmp/a$p.npy"; then echo "attention -np $p: identical"; else echo "attention -np $p: DIFFERENT"; exit 1; fi
  mpirun -np "$p" "${flags[@]}" "$ATTNFLOW_CLI" "${ot[@]}" --out "$tmp/ot$p" >/dev/null
  for f in f.npy g.npy; do
    if ! cmp "$tmp/ot1/$f" "$tmp/ot$p/$f"; then echo "ot -np $p: $f DIFFERENT"; exit 1; fi
  done
  echo "ot -np $p: identical potentials"
done
echo "== strong scaling"
PYTHONUNBUFFERED=1 "${PYTHON:-python3}" bench/mpi_scaling.py "$ATTNFLOW_CLI" --ranks "${MPI_CHECK_RANKS:-1,2,4,8,16}" --repeat 2 \
  --n "${MPI_CHECK_N:-131072}" --ot-n "${MPI_CHECK_OT_N:-16384}" | tee "$out/mpi_scaling.md"
echo "mpi-check: done"
