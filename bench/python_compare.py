#!/usr/bin/env python3
"""Side-by-side timing of the Python package: attnflow.attention / attnflow.sinkhorn called
from Python vs PyTorch (dense softmax attention, float64) and POT (ot.sinkhorn_log, float64
dense cost), same thread count, one run on one machine; plus the per-call overhead of the
binding on a tiny input.

Usage: bench/python_compare.py [BUILD_DIR] [--threads 2]
Prints markdown rows for the README performance table. Needs python3-torch and python3-pot
for the peers (attnflow itself never uses them).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def best_of(f, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(a.build) / "python"))
    import attnflow

    attnflow.set_num_threads(a.threads)
    rows = []
    rng = np.random.default_rng(1)
    import torch

    torch.set_num_threads(a.threads)
    for n, d in ((4096, 64), (16384, 3)):
        x = rng.standard_normal((n, d)) / d ** 0.5
        y = rng.standard_normal((n, d))
        ours = best_of(lambda: attnflow.attention(x, y), 3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        peer = best_of(lambda: torch.softmax(tx @ ty.T, dim=1) @ ty, 3)
        rows.append(f"| softmax attention from Python, n = m = {n}, d = {d} | attnflow.attention "
                    f"{ours * 1e3:.1f} ms | torch dense {peer * 1e3:.1f} ms | {a.threads} |")
    tiny = rng.standard_normal((8, 3))
    calls = 20000
    t0 = time.perf_counter()
    for _ in range(calls):
        attnflow.attention(tiny)
    ours = (time.perf_counter() - t0) / calls
    tt = torch.from_numpy(tiny)
    t0 = time.perf_counter()
    for _ in range(calls):
        torch.softmax(tt @ tt.T, dim=1) @ tt
    peer = (time.perf_counter() - t0) / calls
    rows.append(f"| per-call overhead, attention of 8 points in R^3 | {ours * 1e6:.1f} us | "
                f"torch {peer * 1e6:.1f} us | {a.threads} |")
    try:
        import ot
    except ImportError:
        ot = None
    if ot is not None:
        n = 2000
        x, y = rng.standard_normal((n, 2)), rng.standard_normal((n, 2)) + 1.0
        w = np.full(n, 1.0 / n)
        eps = 0.1
        r = attnflow.sinkhorn(x, y, eps=eps, tol=1e-6)
        ours = best_of(lambda: attnflow.sinkhorn(x, y, eps=eps, tol=1e-6), 2)
        c = ot.dist(x, y)  # squared Euclidean, dense (n, n)
        peer = best_of(lambda: ot.sinkhorn(w, w, c, eps, method="sinkhorn_log", stopThr=1e-6,
                                           numItermax=100000), 2)
        rows.append(f"| entropic OT from Python, n = m = {n}, eps = {eps} (|x-y|^2), tol 1e-6 | "
                    f"attnflow.sinkhorn {ours * 1e3:.0f} ms ({r.iterations} it.) | "
                    f"POT sinkhorn_log {peer * 1e3:.0f} ms | {a.threads} |")
    print(f"machine: {os.cpu_count()} cores; threads = {a.threads}")
    print("| workload | attnflow | peer | threads |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
