#!/usr/bin/env python3
"""Side-by-side entropic OT: attnflow (`attnflow ot`) vs POT ot.sinkhorn(method="sinkhorn_log").

Same data in one run: n = m points uniform in [0, 1]^3 (seed 0), uniform weights,
eps = 0.01 * max cost (squared Euclidean), stop at marginal violation 1e-6, 2 threads.
Usage:
    OMP_NUM_THREADS=2 /usr/bin/python3 bench/ot_compare.py --cli build/attnflow [--n 4000]
        [--overrelax 1.5 --scaling 0.5]   (attnflow over-relaxed: docs/usage/ot.md)
Stopping rules differ slightly: attnflow stops when sum_i |sum_j pi_ij - a_i| <= tol (L1, its
columns are exact); POT when ||sum_i pi_ij - b_j||_2 <= tol, checked every 10 iterations. Both
are reported, with each plan's L1 violations measured here by the same code. Speed is printed,
never asserted. POT is needed only by this script, never by the library or its tests.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
import numpy as np  # noqa: E402
import ot  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("build", nargs="?", default=None, help="build directory (uses BUILD/attnflow)")
    p.add_argument("--cli", default=None, help="path of the attnflow executable")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--skip-pot", action="store_true", help="attnflow only (sizes POT cannot hold)")
    p.add_argument("--overrelax", type=float, default=1.0, help="attnflow's --overrelax (1: plain Sinkhorn)")
    p.add_argument("--scaling", type=float, default=None, help="attnflow's eps-scaling factor (default its own)")
    args = p.parse_args()
    if args.cli is None:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        args.cli = os.path.join(args.build or os.path.join(root, "build"), "attnflow")

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.n, 3))
    y = rng.uniform(size=(args.n, 3))
    a = np.full(args.n, 1.0 / args.n)
    # Max squared distance without the n x n matrix (x, y in the unit cube): exact, by blocks.
    max_cost = max(float(ot.dist(x[i:i + 1000], y).max()) for i in range(0, args.n, 1000))
    eps = 0.01 * max_cost
    print(f"n = m = {args.n}, d = 3, eps = {eps:.6g} (0.01 * max cost {max_cost:.6g}), tol = {args.tol}, "
          f"threads = {args.threads}")

    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x)
        np.save(f"{tmp}/y.npy", y)
        cmd = [args.cli, "ot", "--x", f"{tmp}/x.npy", "--y", f"{tmp}/y.npy", "--eps", repr(eps),
               "--tol", repr(args.tol), "--max-iter", "100000", "--threads", str(args.threads),
               "--overrelax", repr(args.overrelax), "--out", f"{tmp}/out"]
        if args.scaling is not None:
            cmd += ["--scaling", repr(args.scaling)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        with open(f"{tmp}/out/report.json") as fh:
            rep = json.load(fh)
    print(f"attnflow (overrelax {rep['overrelax']:g}, eps-scaling factor {rep['eps_scaling']:g}): "
          f"{rep['seconds']:.3f} s solve ({wall:.3f} s process), {rep['iterations']} iterations, "
          f"cost {rep['cost']:.12g}, L1 row violation {rep['marginal_error']:.3g}, converged {rep['converged']}")
    if args.skip_pot:
        return
    cost = ot.dist(x, y)
    t0 = time.perf_counter()
    plan, log = ot.sinkhorn(a, a, cost, eps, method="sinkhorn_log", numItermax=100000,
                            stopThr=args.tol, log=True)
    t_pot = time.perf_counter() - t0
    pot_cost = float((plan * cost).sum())
    viol = np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - a).sum()
    print(f"POT     : {t_pot:.3f} s, {log.get('niter', '?')} iterations, cost {pot_cost:.12g}, "
          f"L1 violation (rows + cols) {viol:.3g}")
    rel = abs(rep["cost"] - pot_cost) / abs(pot_cost)
    print(f"speedup POT / attnflow (solve): {t_pot / rep['seconds']:.1f}x; relative cost difference {rel:.2e}")
    # Same tolerance in attnflow's terms: ||v||_1 <= sqrt(n) ||v||_2, so POT's L2 threshold
    # tol / sqrt(n) guarantees an L1 violation <= tol.
    thr = args.tol / np.sqrt(args.n)
    t0 = time.perf_counter()
    plan, log = ot.sinkhorn(a, a, cost, eps, method="sinkhorn_log", numItermax=100000, stopThr=thr, log=True)
    t_pot2 = time.perf_counter() - t0
    pot_cost2 = float((plan * cost).sum())
    viol = np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - a).sum()
    rel2 = abs(rep["cost"] - pot_cost2) / abs(pot_cost2)
    print(f"POT, L1-equivalent stopThr {thr:.3g}: {t_pot2:.3f} s, {log.get('niter', '?')} iterations, "
          f"cost {pot_cost2:.12g}, L1 violation {viol:.3g}")
    print(f"speedup POT / attnflow (solve, same L1 tolerance): {t_pot2 / rep['seconds']:.1f}x; "
          f"relative cost difference {rel2:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
