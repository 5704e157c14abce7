"""Predicted vs simulated cluster count in d = 2: writes cluster_count/{results.csv,
predicted.csv, summary.json, report.md}."""
import json
import tempfile
from pathlib import Path

import numpy as np

from common import HERE, attnflow, load_config, run_flow, write_atomic, write_summary, write_table

NAME = "cluster_count"

RUN = """
[measure]
n = {n}
d = 2
init = "uniform_sphere"
seed = {seed}
systems = {systems}
[model]
kind = "sa"
beta = {beta}
[integrate]
method = "{method}"
dt = {dt}
t_end = {t_end}
[observe]
every = {every}
[output]
snapshots = true
checkpoint_every = 0
"""


def fourier_moduli(x, k_max):
    """|c_k| for k = 1..k_max of points x (systems, n, 2) -> (systems, k_max)."""
    theta = np.arctan2(x[..., 1], x[..., 0])
    ks = np.arange(1, k_max + 1)
    return np.abs(np.exp(1j * theta[..., None] * ks).mean(axis=1))


def main():
    cfg = load_config(NAME)
    rows, pred = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for beta in cfg["betas"]:
            out = Path(tmp) / f"b{beta}"
            obs = run_flow(RUN.format(n=cfg["n"], seed=cfg["seed"], systems=cfg["systems"], beta=beta,
                                      method=cfg["method"], dt=cfg["dt"], t_end=cfg["t_end"],
                                      every=cfg["every"]), out)
            times = np.unique(obs["t"])
            snaps = sorted((out / "snapshots").glob("snap_*.npy"))
            moduli = np.stack([fourier_moduli(np.load(s), cfg["k_max"]) for s in snaps])  # (T, S, K)
            k_star = json.loads(attnflow("theory", "clusters", "--d", 2, "--beta", beta))["predicted_clusters"]
            modes = []
            for s in range(cfg["systems"]):
                top = moduli[:, s, :].max(axis=1)
                hit = np.nonzero(top >= cfg["threshold"])[0]
                if not len(hit):
                    rows.append([beta, s, k_star, float("nan"), -1])
                    continue
                k = int(np.argmax(moduli[hit[0], s, :])) + 1
                modes.append(k)
                rows.append([beta, s, k_star, times[hit[0]], k])
            hits = sum(1 for m in modes if m == k_star)
            near = sum(1 for m in modes if abs(m - k_star) <= 1)
            pred.append([beta, k_star, float(np.median(modes)) if modes else float("nan"),
                         min(modes, default=-1), max(modes, default=-1), hits / cfg["systems"],
                         near / cfg["systems"]])
            print(f"beta={beta}: k*={k_star}, dominant modes {modes}", flush=True)
    write_table(HERE / NAME / "results.csv",
                ["beta", "system", "predicted_clusters", "t_nonlinear", "dominant_mode"], rows)
    header = ["beta", "predicted_clusters", "dominant_mode_median", "dominant_mode_min",
              "dominant_mode_max", "fraction_equal", "fraction_within_1"]
    write_table(HERE / NAME / "predicted.csv", header, pred)
    write_summary(NAME, {"n": cfg["n"], "systems": cfg["systems"], "betas": cfg["betas"],
                         "threshold": cfg["threshold"], "csv": "predicted.csv",
                         "per_system_csv": "results.csv",
                         "table": [dict(zip(header, p)) for p in pred]})
    report(cfg, pred)


def report(cfg, pred):
    lines = [
        "# Predicted number of clusters vs beta on the circle (d = 2)",
        "",
        "Regenerate: `experiments/theory/run_all.sh cluster_count` (config: `config.toml`).",
        "",
        "**Prediction** (inferred; derivation in docs/theory.md, section 3). Around the uniform",
        "measure on S^1, Fourier mode k of the SA/USA mean-field equation grows at",
        "k^2 I_k(beta) / beta (USA; divided by I_0(beta) for SA), so the clusters that first",
        "emerge number k* = argmax_k k^2 I_k(beta) ~ sqrt(2 beta).",
        "",
        f"**Measurement.** SA, n = {cfg['n']} i.i.d. uniform tokens on the circle, {cfg['systems']}",
        f"realizations per beta, {cfg['method']} dt = {cfg['dt']}; for each realization, the",
        f"dominant Fourier mode argmax_k |c_k| at the first snapshot (every {cfg['every']}) where",
        f"max_k |c_k| >= {cfg['threshold']}, c_k = (1/n) sum_i e^{{i k theta_i}}.",
        "",
        "| beta | k* | dominant mode: median (min-max) | fraction = k* | fraction within 1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b, k, med, lo, hi, eq, near in pred:
        lines.append(f"| {b:g} | {k} | {med:g} ({lo}-{hi}) | {eq:.2f} | {near:.2f} |")
    lines += [
        "",
        "**Discrepancy.** The linear theory predicts the growth rates exactly (the unit test",
        "`TheoryClusters.LinearGrowthMatchesParticleSimulation` recovers them to 1e-6 from a",
        "particle simulation, and `PredictedCountMatchesDirectSimulation` gets exactly k*",
        "clusters from equal-amplitude seeds). From i.i.d. uniform data the seeds are random:",
        "every mode starts with an O(n^{-1/2}) random amplitude, and near the maximum the rates",
        "are flat (beta = 8: lambda_3, lambda_4, lambda_5 = 0.62, 0.70, 0.63), so the mode that",
        "wins is k* only in distribution: the table shows how often, and the spread widens as",
        "beta grows and the maximum flattens. See ../metastability for what happens afterwards",
        "(merging of the clusters).",
        "",
        "Columns of `predicted.csv`: beta, predicted_clusters (k*), dominant_mode_median/min/max,",
        "fraction_equal (dominant mode = k*), fraction_within_1. `results.csv`: beta, system,",
        "predicted_clusters, t_nonlinear (time of the detection), dominant_mode.",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
