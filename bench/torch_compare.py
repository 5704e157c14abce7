"""A training step with attnflow.torch vs the same model in plain PyTorch autograd, side by side.

    PYTHONPATH=build/python /usr/bin/python3 bench/torch_compare.py [--sizes 256,1024,4096]
        [--threads 2] [--repeats 3]

Models (float64, CPU, same initial parameters, same data):
  attention: one head on a weighted measure, out = W (P (V v)) with P the softmax or Sinkhorn
             (3 iterations) normalization of beta <Q x_i, K y_j> against weights b; loss =
             mean |out - target|^2; one Adam step on Q, K, V, W. Plain PyTorch materializes
             the n x n scores (and, for Sinkhorn, unrolls the iterations under autograd);
             attnflow.torch streams them (kernel reductions, O(n) memory).
  ot:        OT_eps(x, y) for |x - y|^2 in R^3, eps = 0.5, tol 1e-6; one SGD step on x.
             Plain PyTorch:
             dense log-domain Sinkhorn without autograd, then the loss <f, a> + <g, b> on the
             detached potentials' plan (the envelope gradient, as GeomLoss does).
Each row: median wall time of `--repeats` steps after one warm-up, and the largest gradient
difference between the two (they compute the same function).
"""
import argparse
import statistics
import time

import numpy as np
import torch

import attnflow
import attnflow.torch as aft


def attention_models(n, d, normalization, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=g)
    b = torch.rand(n, dtype=torch.float64, generator=g) + 0.5
    target = torch.randn(n, d, dtype=torch.float64, generator=g)
    params = [torch.randn(d, d, dtype=torch.float64, generator=g) / d ** 0.5 for _ in range(4)]
    beta = 1.0
    iters = 3 if normalization == "sinkhorn" else 0

    def step_attnflow(p):
        q, k, v, w = p
        out = aft.attention(x, x, None, b, b, beta, q, k, normalization, head_v=v, head_w=w,
                            sinkhorn_iterations=iters)
        return ((out - target) ** 2).mean()

    def step_torch(p):
        q, k, v, w = p
        s = beta * (x @ q.T) @ (x @ k.T).T
        logb = torch.log(b / b.sum())
        if normalization == "softmax":
            logp = torch.log_softmax(s + logb[None, :], dim=1)
        else:  # Sinkhorn with the iteration convention of attnflow (iteration 1 = softmax)
            loga = logb
            gpot = torch.zeros_like(logb)
            f = -torch.logsumexp(s + (logb + gpot)[None, :], dim=1)
            for _ in range(iters - 1):
                gpot = -torch.logsumexp(s + (loga + f)[:, None], dim=0)
                f = -torch.logsumexp(s + (logb + gpot)[None, :], dim=1)
            logp = s + (logb + gpot)[None, :]
            logp = logp - torch.logsumexp(logp, dim=1, keepdim=True)
        out = (torch.exp(logp) @ (x @ v.T)) @ w.T
        return ((out - target) ** 2).mean()

    return params, step_attnflow, step_torch


def ot_models(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, dtype=torch.float64, generator=g)
    y = torch.randn(n, d, dtype=torch.float64, generator=g) + 0.5
    eps, tol = 0.5, 1e-6

    def step_attnflow(p):
        return aft.ot_cost(p[0], y, eps=eps, tol=tol)

    def step_torch(p):
        x = p[0]
        c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        loga = torch.full((n,), -np.log(n), dtype=torch.float64)
        with torch.no_grad():  # dense log-domain Sinkhorn to the same tolerance
            cd = c.detach()
            f, gp = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
            for _ in range(10000):
                f = -eps * torch.logsumexp((gp[None, :] - cd) / eps + loga[None, :], dim=1)
                gp = -eps * torch.logsumexp((f[:, None] - cd) / eps + loga[:, None], dim=0)
                rows = torch.exp((f[:, None] + gp[None, :] - cd) / eps + loga[:, None]
                                 + loga[None, :]).sum(1)
                if (rows - torch.exp(loga)).abs().sum() <= tol:
                    break
        plan = torch.exp((f[:, None] + gp[None, :] - c.detach()) / eps + loga[:, None] + loga[None, :])
        return (plan * c).sum()  # envelope: d/dx <pi*, C(x, y)> with pi* fixed

    return [x0], step_attnflow, step_torch


def timed_steps(params0, loss_fn, repeats, lr, adam):
    p = [q.clone().requires_grad_(True) for q in params0]
    opt = torch.optim.Adam(p, lr=lr) if adam else torch.optim.SGD(p, lr=lr)
    times, grads = [], None
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(p)
        loss.backward()
        if r == 0:
            grads = [q.grad.clone() for q in p]
        opt.step()
        if r > 0:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), grads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024,4096")
    ap.add_argument("--ot-sizes", default="500,2000")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ot-dim", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-attention", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    attnflow.set_num_threads(args.threads)
    print(f"threads {args.threads}, float64, median of {args.repeats} steps after a warm-up\n")
    print("| training step | n | attnflow.torch | plain PyTorch autograd | max grad diff |")
    print("| --- | --- | --- | --- | --- |")
    for normalization in () if args.skip_attention else ("softmax", "sinkhorn"):
        for n in [int(s) for s in args.sizes.split(",")]:
            params, fa, ft = attention_models(n, args.dim, normalization)
            ta, ga = timed_steps(params, fa, args.repeats, 1e-2, True)
            tt, gt = timed_steps(params, ft, args.repeats, 1e-2, True)
            diff = max((a - b).abs().max().item() for a, b in zip(ga, gt))
            label = "attention, softmax" if normalization == "softmax" else \
                "attention, sinkhorn (3 iterations)"
            print(f"| {label}, d = {args.dim} | {n} | {ta * 1e3:.1f} ms | {tt * 1e3:.1f} ms | "
                  f"{diff:.1e} |", flush=True)
    for n in [int(s) for s in args.ot_sizes.split(",")]:
        params, fa, ft = ot_models(n, args.ot_dim)
        ta, ga = timed_steps(params, fa, args.repeats, 1.0, False)
        tt, gt = timed_steps(params, ft, args.repeats, 1.0, False)
        diff = (ga[0] - gt[0]).abs().max().item()
        print(f"| OT_eps cost (eps 0.5, tol 1e-6), d = {args.ot_dim} | {n} | {ta * 1e3:.1f} ms | "
              f"{tt * 1e3:.1f} ms | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
