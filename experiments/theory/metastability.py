"""Metastability: writes metastability/{results.csv, plateaus.csv, predicted.csv, summary.json,
report.md}."""
import json
import tempfile
from pathlib import Path

import numpy as np

from common import HERE, attnflow, load_config, run_flow, write_atomic, write_summary, write_table

NAME = "metastability"

RUN = """
[measure]
n = {n}
d = {d}
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
delta = {delta}
[output]
snapshots = false
checkpoint_every = 0
"""


def plateaus(t, clusters, log_e, n, min_len, t_end):
    """Maximal runs of constant cluster count (count <= n / 4, i.e. after clusters formed)
    lasting >= min_len: (count, t_start, t_stop, mean log E, censored at t_end)."""
    out, start = [], 0
    for k in range(1, len(t) + 1):
        if k == len(t) or clusters[k] != clusters[start]:
            length = t[k - 1] - t[start]
            if clusters[start] <= n / 4 and length >= min_len:
                out.append((int(clusters[start]), float(t[start]), float(t[k - 1]),
                            float(log_e[start:k].mean()), bool(k == len(t))))
            start = k
    return out


def main():
    cfg = load_config(NAME)
    rows, prow, pred = [], [], []
    cases = [(2, b) for b in cfg["betas_d2"]] + [(3, b) for b in cfg["betas_d3"]]
    with tempfile.TemporaryDirectory() as tmp:
        for d, beta in cases:
            obs = run_flow(RUN.format(n=cfg["n"], d=d, seed=cfg["seed"], systems=cfg["systems"],
                                      beta=beta, method=cfg["method"], dt=cfg["dt"],
                                      t_end=cfg["t_end"], every=cfg["every"], delta=cfg["delta"]),
                           Path(tmp) / f"d{d}_b{beta}")
            first = []
            for s in range(cfg["systems"]):
                sel = obs["system"] == s
                t, c, le = obs["t"][sel], obs["clusters"][sel], obs["log_energy"][sel]
                for k in range(len(t)):
                    rows.append([d, beta, s, t[k], int(c[k]), le[k]])
                ps = plateaus(t, c, le, cfg["n"], cfg["min_plateau"], cfg["t_end"])
                for i, p in enumerate(ps):
                    prow.append([d, beta, s, i, *p])
                if ps:
                    first.append(ps[0])
            print(f"d={d} beta={beta}: first plateaus {[p[0] for p in first]}", flush=True)
            if d == 2:
                j = json.loads(attnflow("theory", "clusters", "--d", 2, "--beta", beta))
                k_star = j["predicted_clusters"]
                energy = {m["k"]: m["log_energy_k_clusters"] for m in j["modes"]}
                counts = [p[0] for p in first]
                pred.append([beta, k_star, float(np.median(counts)) if counts else float("nan"),
                             min(counts, default=-1), max(counts, default=-1),
                             float(np.median([p[2] - p[1] for p in first])) if first else float("nan"),
                             float(np.median([p[3] - energy.get(p[0], np.nan) for p in first]))
                             if first else float("nan")])
    write_table(HERE / NAME / "results.csv", ["d", "beta", "system", "t", "clusters", "log_energy"], rows)
    write_table(HERE / NAME / "plateaus.csv",
                ["d", "beta", "system", "index", "clusters", "t_start", "t_stop", "log_energy_mean",
                 "censored"], prow)
    write_table(HERE / NAME / "predicted.csv",
                ["beta", "predicted_clusters", "first_plateau_median", "first_plateau_min",
                 "first_plateau_max", "first_plateau_duration_median",
                 "log_energy_minus_equal_clusters_median"], pred)
    write_summary(NAME, {"n": cfg["n"], "systems": cfg["systems"], "delta": cfg["delta"],
                         "t_end": cfg["t_end"], "betas_d2": cfg["betas_d2"],
                         "betas_d3": cfg["betas_d3"], "csv": "results.csv",
                         "plateaus_csv": "plateaus.csv", "predicted_csv": "predicted.csv"})
    report(cfg, prow, pred, cases)


def report(cfg, prow, pred, cases):
    lines = [
        "# Metastability: cluster-count and energy plateaus; predicted cluster count in d = 2",
        "",
        "Regenerate: `experiments/theory/run_all.sh metastability` (config: `config.toml`).",
        "",
        "**Prediction** (SPEC.md section 6; derivation in docs/theory.md). From near-uniform",
        "data at large beta, tokens form several clusters that persist for times growing like",
        "exp(c beta) before merging (plateaus of the cluster count and of the energy). In d = 2",
        "the number that first emerges is k* = argmax_k k^2 I_k(beta), the fastest-growing",
        "Fourier mode around the uniform measure (k* ~ sqrt(2 beta) for large beta).",
        "",
        f"**Measurement.** SA, n = {cfg['n']} i.i.d. uniform tokens, {cfg['systems']} realizations per",
        f"(d, beta), {cfg['method']} dt = {cfg['dt']}, t in [0, {cfg['t_end']:g}], clusters = connected",
        f"components of <x_i, x_j> > 1 - {cfg['delta']:g}; a plateau is a run of constant cluster",
        f"count (<= n/4) lasting >= {cfg['min_plateau']:g}.",
        "",
        "**d = 2: predicted vs first plateau.**",
        "",
        "| beta | k* predicted | first plateau: median (min-max) | its median duration | median log E - log E(k equal clusters) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b, k, med, lo, hi, dur, de in pred:
        lines.append(f"| {b:g} | {k} | {med:g} ({lo}-{hi}) | {dur:.0f} | {de:+.3f} |")
    lines += ["", "**Plateaus over time** (cluster counts of successive plateaus per realization;",
              "`*` = still running at t_end, its duration a lower bound):", ""]
    for d, beta in cases:
        seqs = []
        for s in range(cfg["systems"]):
            ps = [p for p in prow if p[0] == d and p[1] == beta and p[2] == s]
            seqs.append(" > ".join(f"{p[4]}{'*' if p[8] else ''}[{p[6] - p[5]:.0f}]" for p in ps) or "-")
        lines.append(f"- d = {d}, beta = {beta:g}: " + "; ".join(seqs))
    lines += [
        "",
        "(Each entry: count[duration].)",
        "",
        "**Discrepancy.** See the table: the first-plateau count tracks k* but scatters around",
        "it, because uniform i.i.d. tokens seed every mode with random O(n^{-1/2}) amplitudes and",
        "nearby modes grow at similar rates (e.g. beta = 8: lambda_3, lambda_4, lambda_5 = 0.62,",
        "0.70, 0.63), and because clusters that form close together merge before the cluster",
        "graph separates them at delta = 1e-3. The energy during a plateau is close to that of",
        "k equal equally spaced clusters but not equal (masses and spacings are unequal). The",
        "plateau durations grow steeply with beta: at the largest beta the first plateau",
        "outlasts the run.",
        "",
        "Columns of `results.csv`: d, beta, system, t, clusters, log_energy. `plateaus.csv`: d,",
        "beta, system, index, clusters, t_start, t_stop, log_energy_mean, censored (True: still",
        "running at t_end). `predicted.csv` (d = 2): beta, predicted_clusters,",
        "first_plateau_median/min/max, first_plateau_duration_median,",
        "log_energy_minus_equal_clusters_median.",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
