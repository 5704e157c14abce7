#!/bin/bash
# The n = m = 10^6 entropic OT solve of docs/usage/mpi.md ("the largest solve"): uniform points
# in the unit square (x then y from np.random.default_rng(0)), eps = 0.02 (0.01 of the max
# cost 2), L1 marginal tolerance 1e-6, over-relaxed (--overrelax 1.5, eps-scaling factor 0.5:
# docs/usage/ot.md), on P ranks of T threads. It checkpoints every 600 s;
# run this script again after a stop or a kill and it continues (--resume) where the last
# checkpoint left off, with any P and T: the result is the same bytes.
#
#   bench/ot_1e6.sh DIR [P] [T]     (defaults: 2 ranks of 1 thread; the attnflow CLI is
#                                    build/attnflow, or $ATTNFLOW_CLI)
#
# DIR receives x.npy, y.npy (16 MB each), out/ (f.npy, g.npy, report.json) and one log per
# segment, log.<date>, with each rank's elapsed time and peak RSS (/usr/bin/time -v). The solve
# runs niced (it takes hours on a few cores): other work on the machine keeps its speed. Under
# Linux's autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled = 1) nice counts only
# within a session: started in a session of its own (setsid), the job also needs its group
# niced, `echo 19 > /proc/$PID/autogroup`, or it takes half the machine from the others.
set -euo pipefail
dir=${1:?usage: bench/ot_1e6.sh DIR [ranks] [threads]}
ranks=${2:-2}
threads=${3:-1}
cli=$(realpath "${ATTNFLOW_CLI:-build/attnflow}")
mkdir -p "$dir"
cd "$dir"
if [ ! -f x.npy ] || [ ! -f y.npy ]; then
  /usr/bin/python3 - <<'EOF'
import numpy as np
rng = np.random.default_rng(0)
for name in ("x", "y"):
    np.save(f"{name}.tmp.npy", rng.random((10**6, 2)))
import os
for name in ("x", "y"):
    os.replace(f"{name}.tmp.npy", f"{name}.npy")
EOF
fi
resume=()
[ -f out/checkpoint.bin ] && resume=(--resume)
log="log.$(date +%Y%m%dT%H%M%S)"
echo "ot_1e6: $ranks ranks x $threads threads, log $dir/$log"
exec nice -n 19 mpirun -np "$ranks" --allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none \
  --mca mpi_yield_when_idle 1 --bind-to none -x OMP_NUM_THREADS="$threads" \
  /usr/bin/time -v "$cli" ot --x x.npy --y y.npy --eps 0.02 --tol 1e-6 --overrelax 1.5 --scaling 0.5 --checkpoint-every 600 --out out \
  "${resume[@]}" > "$log" 2>&1
