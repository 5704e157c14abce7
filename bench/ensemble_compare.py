#!/usr/bin/python3
"""Side-by-side benchmark of the published phase-diagram ensemble: attnflow's
batched ensemble path vs the published step written in PyTorch and in NumPy, batched over
systems, on the same machine and the same thread count, in float64 and in float32 (PyTorch's
default dtype; attnflow's compute.precision = "float32").

The published setting per dimension d: 90 betas x 2048 systems x 300 residual steps
x <- normalize(x + dt softmax(beta x x^T) x) (n = 32, dt = 0.1), and the clustered-pair
fraction observed at every step (every = 0.1). All sides do exactly that work per
system-step in the precision of the row, so the time per system-step measured on a slice
(--systems systems, --steps steps, one beta) scales to one d:
    t(one d) = 90 * 2048 * 300 * (time per system-step).
attnflow is timed as `attnflow run` on a slice of the same shape (2048 systems, --full-steps
steps; process CPU time: user + sys of the child, so other jobs on a shared machine do not
count; also wall and peak RSS), the peers in-process on --systems systems x --steps steps
(CPU time of this process). One d's time is reported as CPU time / threads, i.e. the time on
otherwise idle cores. Rounds alternate the sides (the machine's speed drifts); medians over
rounds. --sweep additionally times the real job for each d: one `attnflow sweep` over the 90
betas (all points, wall clock and peak RSS, output.final = false as the experiment runs it),
observing every step, and once more at the published code's cadence: its 200 times
linspace(0, 30, 200), each on the first step at or after it (observe.on_steps; the issue's
"observations every 0.15"), as experiments/theory/phase_diagram runs it.

A third peer is the published code itself as it runs (published_run: phase-diagrams.py's
step and its observation at its 200 checkpoints, operation for operation, in PyTorch; the
same points and fractions as that code, bit for bit, checked against it on the CPU), timed by
the wall clock because it does not keep the threads busy, and compared with the sweep at the
published cadence (wall clock, the same observations). Run the peers on the real batch
(--systems 2048): PyTorch's time per system-step grows with the batch beyond the caches.

Usage: bench/ensemble_compare.py [BUILD_DIR] [--threads 2] [--dims 2 8 32 128]
         [--precisions float64 float32] [--systems 2048] [--steps 20] [--rounds 3]
         [--full-steps 300] [--no-torch] [--sweep]
Prints a markdown table and writes bench/results/ensemble.json.
"""
import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _arg(name, default):
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return default


# Thread counts are read when NumPy / PyTorch load: same count as attnflow.
THREADS = _arg("--threads", "2")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = THREADS
# Idle OpenMP threads sleep instead of spinning (spinning would count as CPU time).
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N, DT, DELTA, BETA = 32, 0.1, 1e-3, 4.0
PUBLISHED_SYSTEM_STEPS = 90 * 2048 * 300


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def numpy_run(x, steps):
    """The published step batched over systems, plus the clustered fraction every step, in
    x's dtype."""
    off = ~np.eye(x.shape[1], dtype=bool)
    p = []
    for _ in range(steps):
        g = x @ x.transpose(0, 2, 1)
        s = BETA * g
        s -= s.max(axis=-1, keepdims=True)
        w = np.exp(s)
        w /= w.sum(axis=-1, keepdims=True)
        x = x + DT * (w @ x)
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        g = x @ x.transpose(0, 2, 1)
        p.append((((g > 1 - DELTA) & off).sum(axis=(1, 2)) / (N * (N - 1))).mean())
    return x, p


def torch_run(torch, x, steps):
    off = ~torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
    p = []
    for _ in range(steps):
        a = torch.softmax(BETA * (x @ x.transpose(1, 2)), dim=-1)
        x = x + DT * (a @ x)
        x = x / x.norm(dim=-1, keepdim=True)
        g = x @ x.transpose(1, 2)
        p.append((((g > 1 - DELTA) & off).sum(dim=(1, 2)).to(x.dtype) / (N * (N - 1))).mean().item())
    return x, p


def published_run(torch, x, steps):
    """The published code's step and observation as phase-diagrams.py performs them (its
    softmax case: identity K^T Q and V), re-implemented here operation for operation: the
    points copied into a second buffer, the Gram written into a preallocated buffer, scaled by
    beta, a softmax over the last axis (a new tensor), the average written into the second
    buffer, scaled by dt, the points added, normalize() back into the first buffer; after each
    step, when the time has reached the next of its 200 checkpoints linspace(0, 30, 200), the
    Gram once more, its off-diagonal entries gathered through a boolean mask and the fraction
    above 1 - delta recorded for every checkpoint reached. Returns (points, fractions)."""
    b, n, _ = x.shape
    m = x.clone()
    m2 = torch.empty_like(m)
    sm = torch.empty(b, n, n, dtype=x.dtype)
    ip = torch.empty(b, n, n, dtype=x.dtype)
    times = torch.linspace(0, 30, 200, dtype=torch.float64)
    ckpt, t, p = 0, 0.0, []
    for _ in range(steps):
        m2.copy_(m)
        torch.matmul(m2, m.transpose(1, 2), out=sm)
        sm *= BETA
        sm = torch.nn.functional.softmax(sm, dim=2)
        torch.matmul(sm, m, out=m2)
        m2 *= DT
        m2 += m
        torch.nn.functional.normalize(m2, dim=2, out=m)
        t += DT
        if ckpt < len(times) and t >= times[ckpt]:
            torch.matmul(m, m.transpose(1, 2), out=ip)
            off = ip[~torch.eye(n).bool().expand(b, -1, -1)]
            frac = (off > 1 - DELTA).sum().to(x.dtype) / len(off)  # the published code's default dtype
            while ckpt < len(times) and t >= times[ckpt]:
                p.append(float(frac))
                ckpt += 1
    return m, p


RUN = """[measure]
n = {n}
d = {d}
seed = 1
systems = {systems}
[model]
beta = {beta}
[integrate]
method = "residual"
dt = {dt}
t_end = {t_end}
[observe]
every = {every}
on_steps = {on_steps}
delta = {delta}
clusters = false
per_system = false
quantiles = []
[output]
snapshots = false
checkpoint_every = 0
final = false
[compute]
precision = "{precision}"
"""

SWEEP = RUN.replace("[model]\nbeta = {beta}\n", "[model]\n") + "[sweep]\nmodel.beta = [{betas}]\n"


def timed(cmd):
    """(cpu seconds, wall seconds, peak RSS MB) of a child command."""
    cmd = ["/usr/bin/time", "-f", "%U %S %e %M"] + cmd
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    user, sys_, wall, rss = r.stderr.strip().splitlines()[-1].split()
    return float(user) + float(sys_), float(wall), float(rss) / 1024.0


def attnflow_run(build, tmp, d, systems, steps, tag, precision):
    """attnflow run of one slice; returns (cpu seconds, wall seconds, peak RSS MB)."""
    cfg = Path(tmp) / f"{tag}.toml"
    cfg.write_text(RUN.format(n=N, d=d, systems=systems, beta=BETA, dt=DT, t_end=round(steps * DT, 10),
                              every=DT, on_steps="false", delta=DELTA, precision=precision))
    out = Path(tmp) / tag
    cpu, wall, mb = timed([str(build / "attnflow"), "run", str(cfg), "--out", str(out), "--no-plots", "--quiet",
                           "--threads", THREADS])
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return cpu, wall, mb


def attnflow_sweep(build, tmp, d, precision, published_cadence=False):
    """The real job for one d: `attnflow sweep` over the 90 betas of the published grid,
    observing every step or (published_cadence) at the published code's 200 times."""
    betas = ", ".join(repr(round(float(b), 10)) for b in np.linspace(0.1, 9.0, 90))
    tag = f"sweep_d{d}_{precision}{'_published' if published_cadence else ''}"
    cfg = Path(tmp) / f"{tag}.toml"
    every, on_steps = (repr(30.0 / 199.0), "true") if published_cadence else (DT, "false")
    cfg.write_text(SWEEP.format(n=N, d=d, systems=2048, dt=DT, t_end=30.0, every=every, on_steps=on_steps,
                                delta=DELTA, precision=precision, betas=betas))
    out = Path(tmp) / tag
    cpu, wall, mb = timed([str(build / "attnflow"), "sweep", str(cfg), "--out", str(out), "--no-plots", "--quiet",
                           "--threads", THREADS])
    return cpu, wall, mb, phase_means(out)


def phase_means(out):
    """The phase diagram a sweep wrote: {(beta, t): mean clustered-pair fraction}."""
    with open(out / "sweep_ensemble.csv") as f:
        return {(r["model.beta"], r["t"]): float(r["clustered_pairs"])
                for r in csv.DictReader(f) if r["statistic"] == "mean"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 128])
    ap.add_argument("--precisions", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    ap.add_argument("--systems", type=int, default=2048)  # the real batch (see above)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--full-steps", type=int, default=300)  # one whole beta: start-up amortized as in the real run
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="also time the real 90-beta sweep of each d")
    a = ap.parse_args()
    build = Path(a.build)
    torch = None
    if not a.no_torch:
        import torch  # noqa: F811
        torch.set_num_threads(int(a.threads))
    threads = int(a.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in a.dims:
            phases = {}
            for prec in a.precisions:
                rng = np.random.default_rng(d)
                x0 = rng.standard_normal((a.systems, N, d))
                x0 = (x0 / np.linalg.norm(x0, axis=-1, keepdims=True)).astype(prec)
                per = a.systems * a.steps
                af, af_wall, npy, tch, pub, rss = [], [], [], [], [], 0.0
                for k in range(a.rounds):
                    # attnflow: the full 2048 systems (its start-up would dominate a small slice).
                    cpu, wall, mb = attnflow_run(build, tmp, d, 2048, a.full_steps, f"d{d}_{prec}_{k}", prec)
                    af.append(cpu / (2048 * a.full_steps))
                    af_wall.append(wall / (2048 * a.full_steps))
                    rss = max(rss, mb)
                    c = cpu_self()
                    numpy_run(x0.copy(), a.steps)
                    npy.append((cpu_self() - c) / per)
                    if torch is not None:
                        xt = torch.from_numpy(x0.copy())
                        c = cpu_self()
                        torch_run(torch, xt, a.steps)
                        tch.append((cpu_self() - c) / per)
                        xt = torch.from_numpy(x0.copy())
                        w = time.perf_counter()
                        published_run(torch, xt, a.steps)
                        pub.append((time.perf_counter() - w) / per)
                med = lambda v: float(np.median(v)) if v else float("nan")
                row = {"d": d, "precision": prec, "attnflow_cpu_s_per_system_step": med(af),
                       "attnflow_wall_s_per_system_step": med(af_wall), "numpy_cpu_s_per_system_step": med(npy),
                       "torch_cpu_s_per_system_step": med(tch), "attnflow_peak_rss_mb_2048_systems": rss}
                # CPU time of the whole job divided by the thread count = its time on idle cores.
                for side in ("attnflow", "numpy", "torch"):
                    row[f"{side}_one_d_s"] = row[f"{side}_cpu_s_per_system_step"] * PUBLISHED_SYSTEM_STEPS / threads
                # The published code as written: wall clock (it does not keep both threads busy).
                row["published_torch_wall_s_per_system_step"] = med(pub)
                row["published_torch_one_d_s"] = med(pub) * PUBLISHED_SYSTEM_STEPS
                row["ratio_torch"] = row["torch_one_d_s"] / row["attnflow_one_d_s"]
                row["ratio_numpy"] = row["numpy_one_d_s"] / row["attnflow_one_d_s"]
                if a.sweep:  # the real job: wall clock of the whole sweep
                    cpu, wall, mb, phases[prec] = attnflow_sweep(build, tmp, d, prec)
                    row.update({"sweep_wall_s": wall, "sweep_cpu_s": cpu, "sweep_peak_rss_mb": mb})
                    cpu, wall, mb, _ = attnflow_sweep(build, tmp, d, prec, published_cadence=True)
                    row.update({"sweep_published_cadence_wall_s": wall, "sweep_published_cadence_cpu_s": cpu,
                                "sweep_published_cadence_peak_rss_mb": mb})
                    # Like for like: the published code's cadence on both sides, wall clock on both.
                    row["ratio_published_torch"] = row["published_torch_one_d_s"] / wall
                    if len(phases) == 2:  # float32's phase diagram against float64's, same points
                        p64, p32 = phases["float64"], phases["float32"]
                        row["phase_max_abs_diff_float32_float64"] = max(abs(p32[k] - p64[k]) for k in p64)
                        row["phase_points"] = len(p64)
                results.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{a.threads} threads each side; one d = 90 betas x 2048 systems x 300 steps (CPU time / threads; "
          "sweep: the wall clock of `attnflow sweep` over the 90 betas)\n")
    print("| d | precision | attnflow | attnflow sweep (wall) | sweep, published cadence (wall) | PyTorch | NumPy "
          "| published code, PyTorch (wall) | PyTorch / attnflow | NumPy / attnflow "
          "| published code / sweep at its cadence | attnflow peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        sweep = f"{r['sweep_wall_s']:.0f} s" if "sweep_wall_s" in r else "-"
        pub = f"{r['sweep_published_cadence_wall_s']:.0f} s" if "sweep_published_cadence_wall_s" in r else "-"
        ratio_pub = f"{r['ratio_published_torch']:.0f}x" if "ratio_published_torch" in r else "-"
        rss = max(r["attnflow_peak_rss_mb_2048_systems"], r.get("sweep_peak_rss_mb", 0.0),
                  r.get("sweep_published_cadence_peak_rss_mb", 0.0))
        print(f"| {r['d']} | {r['precision']} | {r['attnflow_one_d_s']:.0f} s | {sweep} | {pub} | {r['torch_one_d_s']:.0f} s | "
              f"{r['numpy_one_d_s']:.0f} s | {r['published_torch_one_d_s']:.0f} s | {r['ratio_torch']:.0f}x | "
              f"{r['ratio_numpy']:.0f}x | {ratio_pub} | {rss:.0f} MB |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ensemble.json").write_text(json.dumps({"threads": a.threads, "systems": a.systems, "steps": a.steps,
                                                   "rounds": a.rounds, "rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
