#!/usr/bin/python3
"""Side-by-side training-step throughput: attnflow (bench/model_bench) vs PyTorch float64 autograd.

Same model: 4 residual attention layers, 2 heads, d = 16, head dim 8, softmax (and Sinkhorn with
3 iterations), weights uniform, loss mean_b sum_i w_i |G(mu_b, x_i) - y_i|^2, Adam step.
Usage: /usr/bin/python3 bench/model_compare.py BUILD_DIR [--threads 2]
"""
import argparse
import json
import subprocess
import time

import torch


def torch_step_rate(norm, n=256, batch=32, d=16, dk=8, heads=2, layers=4, iters=3, seconds=5.0):
    g = torch.Generator().manual_seed(0)
    dt = torch.float64
    params = []
    for _ in range(layers):
        layer = [torch.randn(heads, dk, d, generator=g, dtype=dt) * 0.5 / d ** 0.5 for _ in range(3)]
        layer.append(torch.randn(heads, d, dk, generator=g, dtype=dt) * 0.5 / dk ** 0.5)
        params += [p.requires_grad_() for p in layer]
    x = torch.randn(batch, n, d, generator=g, dtype=dt)
    y = torch.randn(batch, n, d, generator=g, dtype=dt)
    logw = torch.full((batch, 1, 1, n), -torch.log(torch.tensor(float(n), dtype=dt)))
    opt = torch.optim.Adam(params, lr=1e-3)

    def forward(x):
        for l in range(layers):
            q, k, v, w = params[4 * l: 4 * l + 4]
            u = torch.einsum("bnd,hkd->bhnk", x, q)
            kk = torch.einsum("bnd,hkd->bhnk", x, k)
            vv = torch.einsum("bnd,hkd->bhnk", x, v)
            s = u @ kk.transpose(-1, -2) + logw  # (b, h, n, n)
            if norm == "sinkhorn":  # same iterations as normalize.cpp: f, then (g, f) pairs
                gpot = torch.zeros_like(logw)
                f = -torch.logsumexp(s + gpot, dim=-1, keepdim=True)
                for _ in range(iters - 1):
                    gpot = -torch.logsumexp(s + f + logw.transpose(-1, -2) - logw, dim=-2, keepdim=True)
                    f = -torch.logsumexp(s + gpot, dim=-1, keepdim=True)
                s = s + gpot
            p = torch.softmax(s, dim=-1)
            a = p @ vv  # (b, h, n, dk)
            x = x + torch.einsum("bhnk,hdk->bnd", a, w)
        return x

    def step():
        opt.zero_grad()
        out = forward(x)
        loss = ((out - y) ** 2).sum(-1).mean(-1).mean()
        loss.backward()
        opt.step()

    step()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    env = {"OMP_NUM_THREADS": str(a.threads)}
    r = subprocess.run([f"{a.build}/bench/model_bench", "--benchmark_format=json",
                        "--benchmark_filter=TrainStep", "--benchmark_min_time=3"],
                       capture_output=True, text=True, env=env, check=True)
    ours = {b["name"].split("/")[0]: b["steps_per_s"] for b in json.loads(r.stdout)["benchmarks"]}
    print(f"threads = {a.threads}; 4 layers, 2 heads, d = 16, n = 256, batch 32, Adam step")
    print(f"{'normalization':<14}{'attnflow steps/s':>18}{'PyTorch steps/s':>18}{'ratio':>8}")
    for norm, name in [("softmax", "BM_TrainStepSoftmax"), ("sinkhorn", "BM_TrainStepSinkhorn")]:
        t = torch_step_rate(norm)
        print(f"{norm:<14}{ours[name]:>18.2f}{t:>18.2f}{ours[name] / t:>8.2f}")


if __name__ == "__main__":
    main()
