#!/usr/bin/env python3
"""Side-by-side benchmark of in-context regression training: attnflow's SGD step vs the same
model and training loop in PyTorch (float64, autograd), same d, L, batch and thread count.

One step = draw `batch` fresh prompts (x ~ N(0, S), S_ij = 0.5^|i-j|, w ~ N(0, I),
y = <w, x> + N(0, 0.1)), softmax prediction b * sum_i softmax_i(x_i^T A x_q) y_i, loss
(1/2) mean (prediction - <w, x_q>)^2, gradient, SGD update.

Usage: bench/icl_compare.py [BUILD_DIR] [--threads 2] [--steps 30]
Prints a markdown table (the README's performance rows) and writes bench/results/icl.json.
Needs python3-torch (Debian) for the peer; attnflow itself does not use it.
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def attnflow_steps_per_s(build, threads, model):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    filt = f"IclTrainStep/{model}/5/1000/128/"
    out = subprocess.run([str(build / "bench" / "icl_bench"), f"--benchmark_filter={filt}",
                          "--benchmark_format=json", "--benchmark_min_time=3"],
                         capture_output=True, text=True, env=env, check=True)
    bench = json.loads(out.stdout)["benchmarks"][0]
    return 1e3 / bench["real_time"]  # real_time in ms


def torch_steps_per_s(threads, steps, d=5, length=1000, batch=128, linear=False):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dt = torch.float64
    idx = torch.arange(d, dtype=dt)
    cov = 0.5 ** (idx[:, None] - idx[None, :]).abs()
    chol = torch.linalg.cholesky(cov)
    theta = torch.randn(d, d, dtype=dt)
    tt = theta @ theta.T
    a = (0.5 * tt / tt.norm()).requires_grad_(True)
    b = torch.tensor(0.5, dtype=dt, requires_grad=True)
    noise_sd = 0.1 ** 0.5

    def step():
        with torch.no_grad():
            w = torch.randn(batch, d, dtype=dt)
            x = torch.randn(batch, length, d, dtype=dt) @ chol.T
            y = (x @ w[:, :, None]).squeeze(-1) + noise_sd * torch.randn(batch, length, dtype=dt)
            xq = torch.randn(batch, d, dtype=dt) @ chol.T
            target = (w * xq).sum(-1)
        q = xq @ a.T                                   # (B, d): A x_q
        scores = (x @ q[:, :, None]).squeeze(-1)       # (B, L): x_i^T A x_q
        if linear:
            pred = b * (scores * y).mean(-1)
        else:
            pred = b * (torch.softmax(scores, dim=-1) * y).sum(-1)
        loss = 0.5 * ((pred - target) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            a.sub_(0.01 * a.grad)
            b.sub_(0.01 * b.grad)
            a.grad = None
            b.grad = None

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    build = Path(a.build)
    rows, results = [], {}
    for model, name in [(0, "softmax"), (1, "linear")]:
        ours = attnflow_steps_per_s(build, a.threads, model)
        peer = torch_steps_per_s(a.threads, a.steps, linear=(model == 1))
        results[name] = {"attnflow_steps_per_s": ours, "torch_steps_per_s": peer,
                         "speedup": ours / peer}
        rows.append(f"| icl SGD step, {name}, d = 5, L = 1000, batch 128 | {a.threads} | "
                    f"{ours:.1f} steps/s | {peer:.1f} steps/s (PyTorch f64 autograd) | "
                    f"{ours / peer:.1f}x |")
    print("| benchmark | threads | attnflow | peer | speedup |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    results["threads"] = a.threads
    results["machine_cpus"] = os.cpu_count()
    (out / "icl.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
