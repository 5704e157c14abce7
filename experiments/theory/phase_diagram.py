"""Phase diagram: writes phase_diagram/{results.csv, curve.csv, crossing.csv, summary.json, report.md}.

Each dimension d is one `attnflow sweep` over model.beta: all betas x all systems of that d in
one job, on the batched ensemble path, writing per-time ensemble summaries (sweep_ensemble.csv:
mean and standard error of the clustered-pair fraction) instead of per-system rows."""
import contextlib
import csv
import json
import os
import sys
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
[sweep]
model.beta = [{betas}]
"""


def betas_of(cfg):
    # Rounded to 10 decimals: 0.1, 0.2, ..., 9.0 exactly as written in the sweep's TOML list.
    return [round(float(b), 10) for b in np.linspace(cfg["beta_min"], cfg["beta_max"], cfg["beta_count"])]


def run_dimension(cfg, d, betas, tmp):
    """One sweep over beta for dimension d (resumed if its work folder holds a partial one);
    returns (beta, t, p, stderr) arrays and the sweep's wall seconds."""
    text = RUN.format(n=cfg["n"], d=d, seed=cfg["seed"], systems=cfg["systems"],
                      method=cfg["method"], dt=cfg["dt"], t_end=cfg["t_end"], every=repr(float(cfg["every"])),
                      on_steps=str(bool(cfg.get("on_steps", False))).lower(),
                      delta=cfg["delta"], betas=", ".join(repr(b) for b in betas),
                      precision=cfg.get("precision", "float64"))
    path = Path(tmp) / f"d{d}.toml"
    write_atomic(path, text)
    out = Path(tmp) / f"d{d}"
    resume = ["--resume"] if (out / "points").exists() else []
    start = time.monotonic()
    attnflow("sweep", path, "--out", out, "--no-plots", "--quiet", *resume)
    wall = time.monotonic() - start
    with open(out / "sweep_ensemble.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["statistic"] in ("mean", "stderr")]
    mean = [r for r in rows if r["statistic"] == "mean"]
    se = [r for r in rows if r["statistic"] == "stderr"]
    beta = np.array([float(r["model.beta"]) for r in mean])
    t = np.array([float(r["t"]) for r in mean])
    p = np.array([float(r["clustered_pairs"]) for r in mean])
    s = np.array([float(r["clustered_pairs"]) for r in se])
    return beta, t, p, s, wall


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
    # --dims D ...: only these dimensions (e.g. to assemble the finished ones of a long run).
    if "--dims" in sys.argv:
        cfg["dims"] = [int(a) for a in sys.argv[sys.argv.index("--dims") + 1:]]
    cfg["betas"] = betas = betas_of(cfg)
    rows, crossings, seconds = [], [], {}
    curve = [[b, equiangular_time(cfg["n"], b, cfg["delta"], cfg["t_end"])] for b in betas]
    # The sweeps' folders: ATTNFLOW_PHASE_WORK keeps them (a killed run resumes there),
    # otherwise a temporary folder.
    work = os.environ.get("ATTNFLOW_PHASE_WORK")
    with (contextlib.nullcontext(work) if work else tempfile.TemporaryDirectory()) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for d in cfg["dims"]:
            beta, t, p, se, seconds[d] = run_dimension(cfg, d, betas, tmp)
            seconds[d] = round(seconds[d], 1)
            for i, b in enumerate(betas):
                sel = np.isclose(beta, b, rtol=0, atol=1e-9)
                ts, ps = t[sel], p[sel]
                for k in range(len(ts)):
                    rows.append([d, b, ts[k], ps[k], se[sel][k]])
                crossings.append([d, b, first_crossing(ts, ps), curve[i][1]])
            print(f"d={d}: {len(betas)} betas x {cfg['systems']} systems, sweep {seconds[d]} s", flush=True)
    write_table(HERE / NAME / "results.csv", ["d", "beta", "t", "p_clustered", "p_stderr"], rows)
    write_phase_folders(cfg, rows)
    write_table(HERE / NAME / "curve.csv", ["beta", "t_equiangular"], curve)
    write_table(HERE / NAME / "crossing.csv", ["d", "beta", "t_half_simulated", "t_equiangular"],
                crossings)
    write_summary(NAME, {"n": cfg["n"], "delta": cfg["delta"], "dims": cfg["dims"],
                         "betas": cfg["betas"], "systems": cfg["systems"], "t_end": cfg["t_end"],
                         "dt": cfg["dt"], "method": cfg["method"], "every": cfg["every"],
                         "on_steps": bool(cfg.get("on_steps", False)),
                         "precision": cfg.get("precision", "float64"),
                         "sweep_wall_seconds_per_d": {str(d): s for d, s in seconds.items()},
                         "csv": "results.csv", "curve_csv": "curve.csv",
                         "crossing_csv": "crossing.csv"})
    report(cfg, crossings, seconds)


def observed(cfg):
    """How the config observes, in words."""
    if not cfg.get("on_steps", False):
        return f"observed every {cfg['every']:g}"
    count = int(round(cfg["t_end"] / cfg["every"])) + 1
    return (f"observed at the published code's {count} times linspace(0, {cfg['t_end']:g}, {count}), each on the "
            "first step at or after it (`observe.on_steps`)")


def report(cfg, crossings, seconds):
    fmt = lambda x: "> t_end" if not np.isfinite(x) else f"{x:.2f}"
    dims = cfg["dims"]
    configured = load_config(NAME)["dims"]
    missing = [d for d in configured if d not in dims]
    lines = [
        "# Phase diagram P(<x_i(t), x_j(t)> > 1 - delta) over (t, beta)",
        "",
        "Regenerate: `experiments/theory/run_all.sh phase_diagram` (config: `config.toml`;",
        "`ATTNFLOW_PHASE_WORK=DIR` keeps the sweeps so that a killed run resumes;",
        "`phase_diagram.py --dims 2 8` computes or assembles only those dimensions).",
        "",
        "**Prediction** (docs/math.md section 6; Geshkovski, Letrouit, Polyanskiy, Rigollet). For",
        "i.i.d. uniform tokens, two given tokens end up within 1 - delta of each other after a",
        "time that grows with beta; in high dimension random tokens are nearly orthogonal, so",
        "the boundary of the clustered phase should follow the equiangular ODE started at",
        "rho0 = 0 (the time t_eq(beta) it takes to reach rho = 1 - delta).",
        "",
        f"**Measurement** (the published setting). SA with Q = K = V = I, n = {cfg['n']},",
        f"delta = {cfg['delta']:g}, {cfg['systems']} realizations per (d, beta), {len(cfg['betas'])} betas",
        f"linspace({cfg['betas'][0]:g}, {cfg['betas'][-1]:g}, {len(cfg['betas'])}), t in [0, {cfg['t_end']:g}],",
        f"method `{cfg['method']}` (x <- normalize(x + dt A(x)), the published step, no tangent",
        f"projection) with dt = {cfg['dt']}, {observed(cfg)}. P(t) is the mean over",
        "realizations of the fraction of pairs i != j with <x_i, x_j> > 1 - delta (`results.csv`",
        "also has its standard error). Each d is one `attnflow sweep` over model.beta on the",
        f"batched ensemble path in {cfg.get('precision', 'float64')} (config `precision`), two points at a",
        "time on the 2 cores, one kernel thread each; the wall time of each sweep (a resumed",
        "sweep counts only its last call): " +
        ", ".join(f"d = {d}: {seconds[d]:g} s" for d in dims if d in seconds) + ".",
    ]
    if missing:
        lines += [
            "",
            f"**Not in this output:** d = {', '.join(map(str, missing))} (configured, not regenerated",
            "in the session that wrote these files: the shared machine's CPU ran out). Run the",
            "command above to add them.",
        ]
    lines += [
        "",
        "The table gives the first time at which P >= 1/2 (interpolated linearly between",
        "observations) for every fifth beta, and the equiangular time (all betas: `crossing.csv`).",
        "",
        "| beta | t_eq (ODE) | " + " | ".join(f"d = {d}" for d in dims) + " |",
        "| --- | --- | " + " | ".join("---" for _ in dims) + " |",
    ]
    for beta in cfg["betas"][4::5]:
        sel = {c[0]: c for c in crossings if c[1] == beta}
        lines.append(f"| {beta:g} | {fmt(sel[dims[0]][3])} | " +
                     " | ".join(fmt(sel[d][2]) for d in dims) + " |")
    big = [c for c in crossings if c[0] == dims[-1] and np.isfinite(c[2]) and np.isfinite(c[3])]
    rel = [(c[2] - c[3]) / c[3] for c in big if c[3] > 0]
    if rel:
        lines += [
            "",
            f"**Against the curve.** In d = {dims[-1]} (the largest dimension here) the simulated",
            f"half-probability time differs from t_eq by {np.median(np.abs(rel)):.0%} (median of",
            f"|relative difference|), between {min(rel):+.0%} and {max(rel):+.0%} over the {len(rel)} betas",
            "where both are below t_end. Random initial cosines spread by about 1/sqrt(d) around 0,",
            "which the equiangular start (all cosines 0) ignores; the smaller d, the larger the",
            "departure.",
        ]
    lines += [
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
