"""Phase diagram: writes phase_diagram/{results.csv, curve.csv, crossing.csv, summary.json, report.md}.

Each dimension d is one `attnflow sweep` over model.beta: all betas x all systems of that d in
one job, on the batched ensemble path, writing per-time ensemble summaries (sweep_ensemble.csv:
mean and standard error of the clustered-pair fraction) instead of per-system rows."""
import contextlib
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (HERE, attnflow, equiangular_ode, load_config, write_atomic,
                    write_summary, write_table)

NAME = "phase_diagram"

RUN = """
[measure]
n = {n}
d = {d}
init = "uniform_sphere"
seed = {seed}
systems = {systems}
[model]
kind = "sa"
[integrate]
method = "{method}"
dt = {dt}
t_end = {t_end}
[observe]
every = {every}
delta = {delta}
clusters = false
per_system = false
quantiles = []
[output]
snapshots = false
checkpoint_every = 0
[sweep]
model.beta = [{betas}]
"""


def betas_of(cfg):
    # Rounded to 10 decimals: 0.1, 0.2, ..., 9.0 exactly as written in the sweep's TOML list.
    return [round(float(b), 10) for b in np.linspace(cfg["beta_min"], cfg["beta_max"], cfg["beta_count"])]


def run_dimension(cfg, d, betas, tmp):
    """One sweep over beta for dimension d (resumed if its work folder holds a partial one);
    returns (beta, t, p, stderr) arrays."""
    text = RUN.format(n=cfg["n"], d=d, seed=cfg["seed"], systems=cfg["systems"],
                      method=cfg["method"], dt=cfg["dt"], t_end=cfg["t_end"], every=cfg["every"],
                      delta=cfg["delta"], betas=", ".join(repr(b) for b in betas))
    path = Path(tmp) / f"d{d}.toml"
    write_atomic(path, text)
    out = Path(tmp) / f"d{d}"
    resume = ["--resume"] if (out / "points").exists() else []
    attnflow("sweep", path, "--out", out, "--no-plots", "--quiet", *resume)
    with open(out / "sweep_ensemble.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["statistic"] in ("mean", "stderr")]
    mean = [r for r in rows if r["statistic"] == "mean"]
    se = [r for r in rows if r["statistic"] == "stderr"]
    beta = np.array([float(r["model.beta"]) for r in mean])
    t = np.array([float(r["t"]) for r in mean])
    p = np.array([float(r["clustered_pairs"]) for r in mean])
    s = np.array([float(r["clustered_pairs"]) for r in se])
    return beta, t, p, s


def equiangular_time(n, beta, delta, t_end):
    """Time at which the rho0 = 0 equiangular ODE reaches 1 - delta (inf if after t_end)."""
    ode = equiangular_ode("sa", n, beta, 0.0, t_end, samples=6001)
    hit = np.nonzero(ode["one_minus_rho"] <= delta)[0]
    if not len(hit):
        return float("inf")
    k = hit[0]
    if k == 0:
        return 0.0
    # Linear interpolation of log(1 - rho) between the bracketing samples.
    g0, g1 = np.log(ode["one_minus_rho"][k - 1]), np.log(ode["one_minus_rho"][k])
    t0, t1 = ode["t"][k - 1], ode["t"][k]
    return float(t0 + (np.log(delta) - g0) / (g1 - g0) * (t1 - t0))


def first_crossing(t, p, level=0.5):
    """First time P reaches `level`, linearly interpolated between observations."""
    hit = np.nonzero(p >= level)[0]
    if not len(hit):
        return float("inf")
    k = hit[0]
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - p[k - 1]) / (p[k] - p[k - 1]) * (t[k] - t[k - 1]))


def write_phase_folders(cfg, rows):
    """One folder per d with phase.csv (beta, t, probability) and a summary.json of kind
    theory-phase, the layout `python3 -m attnflow.plot DIR` draws with the theory curve."""
    for d in cfg["dims"]:
        folder = HERE / NAME / f"d{d}"
        folder.mkdir(exist_ok=True)
        write_table(folder / "phase.csv", ["beta", "t", "probability"],
                    [[r[1], r[2], r[3]] for r in rows if r[0] == d])
        write_atomic(folder / "summary.json",
                     json.dumps({"kind": "theory-phase", "n": cfg["n"], "delta": cfg["delta"],
                                 "d": d, "systems": cfg["systems"], "csv": "phase.csv"},
                                indent=2) + "\n")


def main():
    cfg = load_config(NAME)
    cfg["betas"] = betas = betas_of(cfg)
    rows, crossings, seconds = [], [], {}
    curve = [[b, equiangular_time(cfg["n"], b, cfg["delta"], cfg["t_end"])] for b in betas]
    # The sweeps' folders: ATTNFLOW_PHASE_WORK keeps them (a killed run resumes there),
    # otherwise a temporary folder.
    work = os.environ.get("ATTNFLOW_PHASE_WORK")
    with (contextlib.nullcontext(work) if work else tempfile.TemporaryDirectory()) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for d in cfg["dims"]:
            start = time.monotonic()
            beta, t, p, se = run_dimension(cfg, d, betas, tmp)
            seconds[d] = round(time.monotonic() - start, 1)
            for i, b in enumerate(betas):
                sel = np.isclose(beta, b, rtol=0, atol=1e-9)
                ts, ps = t[sel], p[sel]
                for k in range(len(ts)):
                    rows.append([d, b, ts[k], ps[k], se[sel][k]])
                crossings.append([d, b, first_crossing(ts, ps), curve[i][1]])
            print(f"d={d}: {len(betas)} betas x {cfg['systems']} systems in {seconds[d]} s", flush=True)
    write_table(HERE / NAME / "results.csv", ["d", "beta", "t", "p_clustered", "p_stderr"], rows)
    write_phase_folders(cfg, rows)
    write_table(HERE / NAME / "curve.csv", ["beta", "t_equiangular"], curve)
    write_table(HERE / NAME / "crossing.csv", ["d", "beta", "t_half_simulated", "t_equiangular"],
                crossings)
    write_summary(NAME, {"n": cfg["n"], "delta": cfg["delta"], "dims": cfg["dims"],
                         "betas": cfg["betas"], "systems": cfg["systems"], "t_end": cfg["t_end"],
                         "dt": cfg["dt"], "method": cfg["method"], "every": cfg["every"],
                         "seconds_per_d": {str(d): s for d, s in seconds.items()},
                         "csv": "results.csv", "curve_csv": "curve.csv",
                         "crossing_csv": "crossing.csv"})
    report(cfg, crossings)


def report(cfg, crossings):
    fmt = lambda x: "> t_end" if not np.isfinite(x) else f"{x:.1f}"
    dims = cfg["dims"]
    lines = [
        "# Phase diagram P(<x_1(t), x_2(t)> >= 1 - delta) over (beta, t)",
        "",
        "Regenerate: `experiments/theory/run_all.sh phase_diagram` (config: `config.toml`).",
        "",
        "**Prediction** (SPEC.md section 6; Geshkovski, Letrouit, Polyanskiy, Rigollet). For",
        "i.i.d. uniform tokens, two given tokens end up within 1 - delta of each other after a",
        "time that grows with beta; in high dimension random tokens are nearly orthogonal, so",
        "the boundary of the clustered phase should follow the equiangular ODE started at",
        "rho0 = 0 (the time t_eq(beta) it takes to reach rho = 1 - delta).",
        "",
        f"**Measurement.** SA, n = {cfg['n']}, delta = {cfg['delta']:g}, Euler dt = {cfg['dt']}",
        f"(residual layers), t in [0, {cfg['t_end']:g}] observed every {cfg['every']}, {cfg['systems']}",
        "realizations per (d, beta) (a few minutes on 2 cores; the paper uses far more: the",
        "standard error of each P is in `results.csv`). The table gives the first time at which",
        "P >= 1/2 (interpolated between observations) and the equiangular time.",
        "",
        "| beta | t_eq (ODE) | " + " | ".join(f"d = {d}" for d in dims) + " |",
        "| --- | --- | " + " | ".join("---" for _ in dims) + " |",
    ]
    for beta in cfg["betas"]:
        sel = {c[0]: c for c in crossings if c[1] == beta}
        lines.append(f"| {beta:g} | {fmt(sel[dims[0]][3])} | " +
                     " | ".join(fmt(sel[d][2]) for d in dims) + " |")
    # Agreement in the largest dimension, where the prediction should hold.
    big = [c for c in crossings if c[0] == dims[-1] and np.isfinite(c[2]) and np.isfinite(c[3])]
    rel = [abs(c[2] - c[3]) / c[3] for c in big if c[3] > 0]
    lines += [
        "",
        f"**Discrepancy.** In d = {dims[-1]}, where the assumption behind the curve holds best,",
        f"the simulated half-probability time differs from t_eq by {np.median(rel):.0%} (median)",
        f"and at most {max(rel):.0%} over the {len(rel)} betas where both are below t_end (the",
        "crossing times are interpolated linearly between observations). The simulation runs",
        "ahead of the curve as beta grows: the equiangular speed is proportional to",
        "e^{beta (rho - 1)}, and random initial cosines spread by 1/sqrt(d) (0.09 at d = 128)",
        "around 0 change it by factors e^{+-beta/sqrt(d)}, which the average over pairs does not",
        "cancel (convexity). The time step is not the cause: a one-off check with rk4, dt = 0.02",
        "at beta = 6.5, d = 128 gives t = 19.1 (Euler dt = 0.1: 19.2). In lower dimensions the",
        "initial cosines are spread around 0 instead of concentrated at 0, pairs that start",
        "close cluster early and those that start far apart late, so the P = 1/2 contour",
        "departs from the equiangular curve; d = 2 is the most different (clusters at large",
        "beta form as several metastable groups, see ../metastability).",
        "",
        "Columns of `results.csv`: d, beta, t, p_clustered (mean over realizations of the",
        "fraction of clustered pairs), p_stderr (its standard error). `curve.csv`: beta,",
        "t_equiangular (inf: not reached by t_end). `crossing.csv`: d, beta,",
        "t_half_simulated (first t with P >= 1/2, interpolated), t_equiangular. `d<d>/phase.csv`:",
        "beta, t, probability for one dimension (drawn by `python3 -m attnflow.plot d<d>`).",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
