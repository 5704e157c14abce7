#!/usr/bin/env python3
"""Strong scaling of attnflow under mpirun (docs/usage/mpi.md): the same problem on 1 process
(no MPI launcher) and on P ranks of 1 OpenMP thread each, repeated; prints the wall times
(min-max over the repeats), the speedup of the medians and the kernel pairs per second.

Usage: bench/mpi_scaling.py BUILD/attnflow [--ranks 1,2] [--repeat 3] [--n 16384] [--ot-n 4096]
Problems: attention (softmax, n = m queries and keys in d = 3: n m pairs) and entropic OT
(sqeuclidean, n = m points in d = 2, a fixed number of Sinkhorn iterations without eps-scaling:
2 iterations' half-steps of n m pairs each, plus the final cost pass)."""
import argparse
import json
import resource
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
             "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none"]


def timed(cmd, env, report=None):
    """Wall seconds of the command, the solve's own seconds when it writes a report.json
    (excludes starting the processes and reading the inputs), and the CPU seconds of every
    process it ran (mpirun's ranks included: they are waited-for descendants)."""
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    wall = time.perf_counter() - t0
    solve = json.loads(Path(report).read_text())["seconds"] if report else wall
    return wall, solve, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--ot-n", type=int, default=4096)
    ap.add_argument("--ot-iters", type=int, default=20)
    a = ap.parse_args()
    # A parent MPI job's identity stays out; MCA settings (a bundle's component path) stay in.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PMI_")) or k.startswith(("OMPI_MCA_", "PMIX_MCA_"))}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        np.save(d / "x.npy", rng.normal(size=(a.n, 3)) * 0.3)
        np.save(d / "ox.npy", rng.normal(size=(a.ot_n, 2)))
        np.save(d / "oy.npy", rng.normal(size=(a.ot_n, 2)) + 1.0)
        problems = {
            "attention": (["attention", "--x", d / "x.npy", "--out", d / "o.npy"], a.n * a.n),
            # max_iter caps the solve at a fixed amount of work (it reports not converged).
            "ot": (["ot", "--x", d / "ox.npy", "--y", d / "oy.npy", "--eps", "0.01", "--no-eps-scaling",
                    "--tol", "1e-300", "--max-iter", str(a.ot_iters), "--out", d / "ot"],
                   (2 * a.ot_iters + 2) * a.ot_n * a.ot_n),
        }
        print(f"| problem | ranks x threads | wall s (min-max of {a.repeat}) | solve s (min-max) | "
              "speedup (median solve) | pairs/s per rank (median solve) | CPU s, all processes (min-max) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, (args, pairs) in problems.items():
            base = None
            for p in [int(x) for x in a.ranks.split(",")]:
                cmd = [a.cli] + [str(x) for x in args] + ["--threads", "1"]
                if p > 1:
                    cmd = ["mpirun", "-np", str(p)] + MPI_FLAGS + ["-x", "OMP_NUM_THREADS", "-x", "OMP_WAIT_POLICY"] + cmd
                walls, solves, cpus = [], [], []
                for _ in range(a.repeat):
                    if name == "ot":
                        subprocess.run(["rm", "-rf", str(d / "ot")])
                    w, s, c = timed(cmd, env, d / "ot/report.json" if name == "ot" else None)
                    walls.append(w)
                    solves.append(s)
                    cpus.append(c)
                med = statistics.median(solves)
                base = base or med
                print(f"| {name} ({pairs:.3g} pairs) | {p} x 1 | {min(walls):.2f}-{max(walls):.2f} | "
                      f"{min(solves):.2f}-{max(solves):.2f} | {base / med:.2f} | {pairs / med / p:.3g} | "
                      f"{min(cpus):.2f}-{max(cpus):.2f} |", flush=True)


if __name__ == "__main__":
    main()
