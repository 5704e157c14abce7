#!/usr/bin/env python3
"""Side-by-side benchmark of softmax attention: attnflow's streaming kernel vs dense PyTorch
softmax(beta X Y^T) V (float64, same thread count), in one run on one machine.

Usage: bench/attention_compare.py [BUILD_DIR] [--threads 2] [--quick]
Prints a markdown table (the README's performance rows) and writes bench/results/attention.json.
Needs python3-torch (Debian) for the peer; attnflow itself does not use it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def kernel_bench(build, threads, filt):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(build / "bench" / "kernel_bench"), f"--benchmark_filter={filt}",
                          "--benchmark_format=json", "--benchmark_min_time=1"],
                         capture_output=True, text=True, env=env, check=True)
    return {b["name"]: b for b in json.loads(out.stdout)["benchmarks"]}


def torch_time(n, d, threads, reps):
    import torch
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, dtype=torch.float64, generator=g) / d ** 0.5
    y = torch.randn(n, d, dtype=torch.float64, generator=g)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = torch.softmax(x @ y.T, dim=1) @ y
        best = min(best, time.perf_counter() - t0)
        del out
    return best


def cli_peak_memory(build, n, d, threads):
    """Runs `attnflow attention` on n points in a child process; returns (seconds, peak RSS MB)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x)
        # /usr/bin/time reports the peak RSS of the exec'ed program itself (a forked child's
        # own rusage would include this Python process's pages, torch's included, before exec).
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", str(build / "attnflow"), "attention",
                               "--x", f"{tmp}/x.npy", "--beta", "1", "--out", f"{tmp}/o.npy",
                               "--threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              check=True)
        seconds = time.perf_counter() - t0
        peak_kb = float(proc.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip the 131072-point run")
    a = ap.parse_args()
    build = Path(a.build)
    rows, results = [], {}

    kb = kernel_bench(build, a.threads, "ExpThroughput|SoftmaxAttention/(16384|4096)/")
    # Two limits: the natural exp (one per pair is what the kernel computes) and 2^x, the form
    # its fused loop evaluates (inputs carrying log2(e); no multiply in the reduction).
    exp_rate = kb["BM_ExpThroughput/0/real_time"]["exp_per_s"]
    exp2_rate = kb["BM_ExpThroughput/1/real_time"]["exp_per_s"]
    results["exp_per_s"] = exp_rate
    results["exp2_per_s"] = exp2_rate
    for n, d in [(16384, 3), (4096, 64)]:
        b = kb[f"BM_SoftmaxAttention/{n}/{d}/real_time"]
        ours = b["real_time"] / 1e3  # ms -> s
        peer = torch_time(n, d, a.threads, reps=3)
        frac, frac2 = (n * n / ours) / exp_rate, (n * n / ours) / exp2_rate
        results[f"{n}x{d}"] = dict(attnflow_s=ours, torch_s=peer, speedup=peer / ours,
                                   exp_fraction=frac, exp2_fraction=frac2)
        rows.append(f"| softmax attention n = m = {n}, d = {d} | {ours * 1e3:.1f} ms | "
                    f"{peer * 1e3:.0f} ms | {peer / ours:.1f}x | {100 * frac:.0f}% of exp limit "
                    f"({100 * frac2:.0f}% of exp2) |")
    if not a.quick:
        secs, mb = cli_peak_memory(build, 131072, 3, a.threads)
        results["131072x3"] = dict(attnflow_s=secs, peak_rss_mb=mb)
        rows.append(f"| softmax attention n = m = 131072, d = 3 (CLI, incl. I/O) | {secs:.1f} s | "
                    f"cannot (dense matrix 137 GB) | - | peak RSS {mb:.0f} MB |")
    print(f"exp throughput limit: {exp_rate / 1e9:.2f} G exp/s, exp2 {exp2_rate / 1e9:.2f} G/s, "
          f"on {a.threads} threads")
    print("| benchmark | attnflow | PyTorch (dense, float64) | ratio | note |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "attention.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
