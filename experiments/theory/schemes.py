"""Normalization schemes: writes schemes/{results.csv, fits.csv, summary.json, report.md}."""
import math
import tempfile
from pathlib import Path

import numpy as np

from common import HERE, equiangular_ode, load_config, run_flow, write_atomic, write_summary, write_table

NAME = "schemes"

RUN = """
[measure]
n = {n}
d = {d}
init = "equiangular"
rho0 = {rho0}
[model]
kind = "{model}"
beta = {beta}
scheme = "{scheme}"
tau = {tau}
alpha = {alpha}
[integrate]
method = "dopri5"
dt = 1e-3
t_end = {t_end}
rtol = {rtol}
atol = {atol}
[observe]
every = {every}
[output]
snapshots = false
checkpoint_every = 0
"""


def law(model, scheme, beta, alpha):
    """(variable name, g(t), predicted rate) with log(1 - rho) ~ c - rate g(t)."""
    lam = 2.0 if model == "sa" else 2.0 * math.exp(beta)
    if scheme == "post-ln":
        return "t", lambda t: t, lam
    if scheme == "ngpt":
        return "t", lambda t: t, 2.0 * alpha
    if scheme == "sqrt":
        return "sqrt(t+1)", lambda t: np.sqrt(t + 1.0), 2.0 * lam
    return "log t", np.log, 2.0


def late_slope(t, gap, g, window):
    sel = (t >= window[0] * t[-1]) & (t <= window[1] * t[-1]) & (gap > 0)
    return -np.polyfit(g(t[sel]), np.log(gap[sel]), 1)[0]


def main():
    cfg = load_config(NAME)
    rows, fits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for model in cfg["models"]:
            for scheme in cfg["schemes"]:
                t_end = cfg[f"t_end_{model}"][scheme]
                every = t_end / cfg["observations"]
                obs = run_flow(RUN.format(n=cfg["n"], d=cfg["n"] + 1, rho0=cfg["rho0"], model=model,
                                          beta=cfg["beta"], scheme=scheme, tau=cfg["tau"],
                                          alpha=cfg["alpha"], t_end=t_end, rtol=cfg["rtol"],
                                          atol=cfg["atol"], every=every),
                               Path(tmp) / f"{model}_{scheme}")
                ode = equiangular_ode(model, cfg["n"], cfg["beta"], cfg["rho0"], t_end,
                                      samples=cfg["observations"] + 1, scheme=scheme,
                                      extra=["--tau", cfg["tau"], "--alpha", cfg["alpha"]])
                t = obs["t"]
                gap_p, gap_o = 1.0 - obs["mean_cosine"], ode["one_minus_rho"]
                for k in range(len(t)):
                    rows.append([model, scheme, t[k], gap_o[k], gap_p[k]])
                var, g, rate = law(model, scheme, cfg["beta"], cfg["alpha"])
                fits.append([model, scheme, var, rate, late_slope(t, gap_p, g, cfg["fit_window"]),
                             late_slope(t, gap_o, g, cfg["fit_window"]),
                             float(np.max(np.abs(gap_p - gap_o) / gap_o)), t_end, gap_o[-1]])
    write_table(HERE / NAME / "results.csv",
                ["model", "scheme", "t", "one_minus_rho_ode", "one_minus_rho_particles"], rows)
    header = ["model", "scheme", "law_variable", "predicted_rate", "fitted_rate_particles",
              "fitted_rate_ode", "max_rel_err_particles_vs_ode", "t_end", "one_minus_rho_end"]
    write_table(HERE / NAME / "fits.csv", header, fits)
    write_summary(NAME, {"fits": [dict(zip(header, f)) for f in fits], "n": cfg["n"],
                         "beta": cfg["beta"], "rho0": cfg["rho0"], "csv": "results.csv"})
    report(cfg, fits)


def report(cfg, fits):
    lines = [
        "# Normalization schemes: how fast 1 - rho shrinks",
        "",
        "Regenerate: `experiments/theory/run_all.sh schemes` (config: `config.toml`).",
        "",
        "**Prediction** (docs/math.md sections 5 and 6; derivations in docs/theory.md). Dividing the",
        "direction speed by the scheme's factor, 1 - rho decays near rho = 1 as",
        "post-LN exp(-lambda0 t) (lambda0 = 2 SA, 2 e^beta USA), pre-/mix-/peri-LN t^-2",
        "(the radius grows linearly), nGPT exp(-2 alpha t) (the same for SA and USA), and",
        "sqrt-scaling exp(-2 lambda0 sqrt(t + 1)). Only pre-LN's t^-2 is stated in the paper;",
        "the others are inferred here.",
        "",
        f"**Measurement.** n = {cfg['n']}, beta = {cfg['beta']}, exact equiangular start rho0 =",
        f"{cfg['rho0']}, flow engine (`attnflow run`, `model.scheme`, dopri5 rtol {cfg['rtol']:g})",
        "and the ODE; the rate is the least-squares slope of -log(1 - rho) against the law's",
        f"variable over the last {int(100 * (1 - cfg['fit_window'][0]))}% of [0, t_end].",
        "",
        "| model | scheme | law variable | predicted rate | fitted (particles) | fitted (ODE) | particles vs ODE (max rel. on 1 - rho) | 1 - rho at t_end |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m, s, var, rate, fp, fo, err, t_end, gap in fits:
        lines.append(f"| {m} | {s} | {var} | {rate:.5g} | {fp:.5g} | {fo:.5g} | {err:.1e} | {gap:.1e} (t = {t_end:g}) |")
    lines += [
        "",
        "**Discrepancy.** Particles and ODE agree to the integrator tolerance for every scheme",
        "(mix-LN included: the engine switches at tau inside a dopri5 step, and the error stays",
        "at the tolerance level). The fitted late rates match the predicted laws up to",
        "finite-time corrections: for the t^-2 laws 1 - rho ~ C r^-2 holds with r = t + c only",
        "asymptotically, so the exponent in log t is 2 t / (t + c), within 1e-3 of 2 at",
        "t ~ 1000-2000 (c of either sign: dr/dt = <theta, A> < 1 early on); the exponential",
        "laws carry O(beta (1 - rho)) corrections, invisible at 1 - rho ~ 1e-8.",
        "",
        "Columns of `results.csv`: model, scheme, t, one_minus_rho_ode, one_minus_rho_particles",
        "(1 - mean pairwise cosine). `fits.csv`: model, scheme, law_variable, predicted_rate,",
        "fitted_rate_particles, fitted_rate_ode, max_rel_err_particles_vs_ode, t_end,",
        "one_minus_rho_end.",
        "",
    ]
    write_atomic(HERE / NAME / "report.md", "\n".join(lines))


if __name__ == "__main__":
    main()
