"""Metastability: writes metastability/{results.csv, plateaus.csv, predicted.csv, summary.json,
report.md}."""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import (HERE, SA_SPHERE_RUN, attnflow, load_config, read_csv, run_flow, write_atomic,
                    write_summary, write_table)

NAME = "metastability"

RUN = SA_SPHERE_RUN


def plateaus(t, clusters, log_e, n, min_len, t_end):
    """Maximal runs of constant cluster count (count <= n / 4, i.e. after clusters formed)
    lasting >= min_len: (count, t_start, t_stop, mean log E, censored at t_end)."""
    out, start = [], 0
    for k in range(1, len(t) + 1):
        if k == len(t) or clusters[k] != clusters[start]:
            length = t[k - 1] - t[start]
            if clusters[start] <= n / 4 and length >= min_len:
                seg = log_e[start:k]
                out.append((int(clusters[start]), float(t[start]), float(t[k - 1]),
                            float(seg.mean()), bool(k == len(t)),
                            float(seg.max() - seg.min())))
            start = k
    return out


def simulate(cfg, cases):
    """Runs every (d, beta) ensemble; returns the time-series rows."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d, beta in cases:
            obs = run_flow(RUN.format(n=cfg["n"], d=d, seed=cfg["seed"], systems=cfg["systems"],
                                      beta=beta, method=cfg["method"], dt=cfg["dt"],
                                      t_end=cfg["t_end"], every=cfg["every"], delta=cfg["delta"]),
                           Path(tmp) / f"d{d}_b{beta}")
            for k in range(len(obs["t"])):
                rows.append([d, beta, int(obs["system"][k]), obs["t"][k], int(obs["clusters"][k]),
                             obs["log_energy"][k]])
            print(f"d={d} beta={beta} done", flush=True)
    write_table(HERE / NAME / "results.csv", ["d", "beta", "system", "t", "clusters", "log_energy"], rows)


def main():
    """Simulates and analyzes; `--analyze` re-analyzes the saved results.csv only."""
    cfg = load_config(NAME)
    cases = [(2, b) for b in cfg["betas_d2"]] + [(3, b) for b in cfg["betas_d3"]]
    if "--analyze" not in sys.argv:
        simulate(cfg, cases)
    data = read_csv(HERE / NAME / "results.csv")
    prow, pred = [], []
    for d, beta in cases:
        first = []
        for s in range(cfg["systems"]):
            sel = (data["d"] == d) & (data["beta"] == beta) & (data["system"] == s)
            t, c, le = data["t"][sel], data["clusters"][sel], data["log_energy"][sel]
            ps = plateaus(t, c, le, cfg["n"], cfg["min_plateau"], cfg["t_end"])
            prow += [[d, beta, s, i, *p] for i, p in enumerate(ps)]
            first += ps[:1]
        if d == 2:
            j = json.loads(attnflow("theory", "clusters", "--d", 2, "--beta", beta))
            energy = {m["k"]: m["log_energy_k_clusters"] for m in j["modes"]}
            counts = [p[0] for p in first]
            pred.append([beta, j["predicted_clusters"], float(np.median(counts)), min(counts),
                         max(counts), float(np.median([p[2] - p[1] for p in first])),
                         float(np.median([p[3] - energy.get(p[0], np.nan) for p in first]))])
    write_table(HERE / NAME / "plateaus.csv",
                ["d", "beta", "system", "index", "clusters", "t_start", "t_stop", "log_energy_mean",
                 "censored", "log_energy_range"], prow)
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
        "**Prediction** (docs/math.md section 6; derivation in docs/theory.md). From near-uniform",
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
    # Energy: flat within plateaus, jumps at merges.
    ranges = [p[9] for p in prow]
    rates = [p[9] / (p[6] - p[5]) for p in prow]
    jumps = [b[7] - a[7] for a, b in zip(prow, prow[1:])
             if a[:3] == b[:3] and b[3] == a[3] + 1]
    lines += [
        "",
        "(Each entry: count[duration].)",
        "",
        f"**Energy plateaus.** Within a cluster-count plateau log E drifts slowly: by",
        f"{np.median(ranges):.2f} in total (median over {len(ranges)} plateaus), i.e.",
        f"{np.median(rates):.1e} per unit time, as the clusters slowly approach each other;",
        f"at a merge it jumps by {np.median(jumps):+.2f} (median over {len(jumps)} merges; upward",
        f"in {np.mean(np.array(jumps) > 0):.0%} of them, as E_beta is non-decreasing along SA)",
        "a staircase with slowly rising treads.",
        "",
        "**Discrepancy.** (1) The first plateau in d = 2 is systematically about one cluster",
        "below k* (table above), although the mode that dominates when the density first",
        "becomes strongly non-uniform is k* in median (../cluster_count): the k* groups seeded by",
        "random i.i.d. fluctuations have unequal masses and spacings, and the closest ones merge",
        f"during the formation, before every group has contracted within delta = {cfg['delta']:g}",
        "(angle 0.045) and the cluster graph can separate them. With equal-amplitude seeds the",
        "count is exactly k* (unit test `PredictedCountMatchesDirectSimulation`). (2) Plateau",
        "lengths grow steeply with beta, as predicted (exp(c beta)): in d = 2 the 2-cluster",
        "state lasts tens of time units at beta = 2 but hundreds to over 900 at beta = 4, and at",
        "beta >= 8 the multi-cluster states outlive the run (t_end = 1000); in d = 3 all runs at",
        "beta = 4 reach one cluster while at beta = 9 and 16 several clusters remain. A fit of",
        "c needs longer runs and more realizations than fit in minutes here. (3) The plateau",
        "energy is above that of k equal, equally spaced clusters (last column: unequal masses",
        "raise the self-interaction sum_a w_a^2 e^beta).",
        "",
        "Columns of `results.csv`: d, beta, system, t, clusters, log_energy. `plateaus.csv`: d,",
        "beta, system, index, clusters, t_start, t_stop, log_energy_mean, censored (True: still",
        "running at t_end), log_energy_range (max - min of log E within the plateau).",
        "`predicted.csv` (d = 2): beta, predicted_clusters, first_plateau_median/min/max,",
        "first_plateau_duration_median, log_energy_minus_equal_clusters_median.",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
