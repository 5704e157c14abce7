#!/usr/bin/python3
"""Side-by-side benchmark of the SA flow: attnflow's Euler step (one streaming kernel pass)
vs the dense NumPy Euler step (the published code's dense computation: exp(beta X X^T), row-normalize, multiply;
project, Euler, renormalize), in one run on one machine, plus the n = 1e5 large run.

Usage: bench/flow_compare.py [BUILD_DIR] [--threads 2] [--skip-large]
Prints a markdown table (the README's performance rows) and writes bench/results/flow.json.
Needs NumPy for the peer; attnflow itself does not use it.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _threads_arg():
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return "2"


# OpenBLAS reads its thread count when NumPy is imported: same thread count as attnflow.
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads_arg())
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def flow_bench(build, threads, filt, extra=()):
    """Runs build/bench/flow_bench in a child; returns {name: result}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [str(build / "bench" / "flow_bench"), f"--benchmark_filter={filt}",
           "--benchmark_format=json", *extra]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, text=True, check=True).stdout
    return {b["name"]: b for b in json.loads(out)["benchmarks"]}


def numpy_step(x, beta, dt):
    a = np.exp(beta * x @ x.T)
    a /= a.sum(axis=1, keepdims=True)
    v = a @ x
    x = x + dt * (v - np.sum(x * v, axis=1, keepdims=True) * x)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_time(n, d, threads, reps):
    """Median wall and CPU time of `reps` steps (after one warm-up step)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    numpy_step(x, 1.0, 0.1)
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        numpy_step(x, 1.0, 0.1)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-large", action="store_true", help="skip the n = 1e5 run")
    a = ap.parse_args()
    build = Path(a.build)
    rows, results = [], {}

    # Both sides measured in alternation, `rounds` times: this VM's speed drifts by 10-30%
    # in phases longer than one side's measurement, so measuring one side after the other
    # would give the ratio of two phases. Each round times attnflow
    # (median of 5 repetitions) and then NumPy (median of 5 steps); the table gives the
    # medians over the rounds and the median of the per-round ratios.
    rounds = 9
    ours_l, ours_cpu_l, peer_l, peer_cpu_l, ratio_l = [], [], [], [], []
    for _ in range(rounds):
        fb = flow_bench(build, a.threads, "SaEulerStep/4096/3",
                        ["--benchmark_min_time=0.1", "--benchmark_repetitions=5"])
        b = fb["BM_SaEulerStep/4096/3/real_time_median"]
        ours_l.append(b["real_time"] / 1e3)  # ms -> s
        ours_cpu_l.append(b["cpu_time"] / 1e3)
        w, c = numpy_time(4096, 3, a.threads, reps=5)
        peer_l.append(w)
        peer_cpu_l.append(c)
        ratio_l.append(w / ours_l[-1])
    med = lambda v: float(np.median(v))  # noqa: E731
    ours, ours_cpu, peer, peer_cpu = med(ours_l), med(ours_cpu_l), med(peer_l), med(peer_cpu_l)
    ratio = med(ratio_l)
    results["sa_euler_step_4096x3"] = dict(
        attnflow_s=ours, numpy_s=peer, speedup=ratio, attnflow_cpu_s=ours_cpu,
        numpy_cpu_s=peer_cpu, rounds=rounds, per_round_speedup=ratio_l,
        per_round_attnflow_s=ours_l, per_round_numpy_s=peer_l)
    rows.append(f"| SA, one Euler step, n = 4096, d = 3 ({rounds} alternating rounds, medians) | "
                f"{ours * 1e3:.1f} ms | {peer * 1e3:.0f} ms | {ratio:.1f}x (rounds "
                f"{min(ratio_l):.1f}-{max(ratio_l):.1f}x) | dense peer holds a 134 MB n x n "
                f"matrix |")
    if a.threads == 1:
        # On a shared, oversubscribed machine wall time measures the queue; with one thread on
        # each side CPU time is the work done (Google Benchmark's cpu_time, process_time()).
        rows.append(f"| same, CPU time (1 thread) | {ours_cpu * 1e3:.1f} ms | {peer_cpu * 1e3:.0f} ms "
                    f"| {peer_cpu / ours_cpu:.1f}x | |")
    if not a.skip_large:
        steps = 100
        fb = flow_bench(build, a.threads, "SaRun/100000/100")
        b = fb["BM_SaRun/100000/100/iterations:1/real_time"]
        rss = b["peak_rss_mb"]  # the program's own high-water mark (VmHWM)
        secs = b["real_time"]  # seconds (benchmark unit)
        results["sa_run_100000x3"] = dict(attnflow_s=secs, steps=steps, peak_rss_mb=rss)
        rows.append(f"| SA, n = 100000, d = 3, {steps} Euler steps | {secs:.0f} s | cannot (dense "
                    f"matrix 80 GB) | - | peak RSS {rss:.0f} MB |")
    print(f"machine: {os.cpu_count()} cores visible, {a.threads} threads")
    print("| benchmark | attnflow | NumPy (dense, float64) | ratio | note |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "flow.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
