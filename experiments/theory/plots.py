#!/usr/bin/python3
"""Figures for the theory experiments, drawn from the CSVs next to each report (matplotlib Agg,
no display). Usage: /usr/bin/python3 experiments/theory/plots.py [EXPERIMENTS_THEORY_DIR]
Writes <experiment>/<experiment>.png; the phase diagram's figures come from
`python3 -m attnflow.plot experiments/theory/phase_diagram/d<d>` (run_all.sh does both)."""
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def groups(table, *keys):
    out = defaultdict(list)
    for r in table:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def col(rs, name):
    return np.array([float(r[name]) for r in rs])


def save(fig, name):
    path = ROOT / name / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("wrote", path)
    link_figure(name)


def link_figure(name):
    """Appends the figure to <name>/report.md unless it is there (the experiment scripts
    rewrite report.md, so the link is restored on every run of run_all.sh)."""
    report = ROOT / name / "report.md"
    text = report.read_text()
    if f"]({name}.png)" in text:
        return
    report.write_text(text.rstrip() + f"\n\n## Figure\n\n![{name}]({name}.png)\n\n"
                      f"`experiments/theory/{name}/{name}.png`, drawn by "
                      f"`experiments/theory/plots.py` from the CSVs above.\n")


def equiangular():
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, n, beta), rs in groups(rows(ROOT / "equiangular/results.csv"), "model", "n", "beta").items():
        t = col(rs, "t")
        line, = ax.semilogy(t, 1 - col(rs, "rho_ode"), label=f"{model} n={n} beta={beta}")
        ax.semilogy(t[::4], 1 - col(rs, "rho_particles_mean")[::4], "o", ms=3, color=line.get_color())
    ax.set(xlabel="t", ylabel="1 - rho", title="equiangular start: ODE (lines) vs particles (dots)")
    ax.legend(fontsize=7, ncol=2)
    save(fig, "equiangular")


def schemes():
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, model in zip(axes, ("sa", "usa")):
        for (m, scheme), rs in groups(rows(ROOT / "schemes/results.csv"), "model", "scheme").items():
            if m != model:
                continue
            t, y = col(rs, "t"), col(rs, "one_minus_rho_ode")
            keep = (t > 0) & (y > 0)
            line, = ax.loglog(t[keep] + 1, y[keep], label=scheme)
            yp = col(rs, "one_minus_rho_particles")
            ax.loglog(t[keep][::8] + 1, yp[keep][::8], "o", ms=2.5, color=line.get_color())
        ax.set(xlabel="t + 1", ylabel="1 - rho", title=f"{model}: schemes, ODE (lines) vs particles")
        ax.legend(fontsize=7)
    save(fig, "schemes")


def long_context():
    table = rows(ROOT / "long_context/results.csv")
    rhos = sorted({r["rho"] for r in table})
    fig, axes = plt.subplots(1, len(rhos), figsize=(4.2 * len(rhos), 4), squeeze=False)
    for ax, rho in zip(axes[0], rhos):
        for (n,), rs in groups([r for r in table if r["rho"] == rho], "n").items():
            g = col(rs, "gamma_over_gamma_c")
            line, = ax.plot(g, col(rs, "cosine_formula"), label=f"n = {n}")
            ax.plot(g, col(rs, "cosine_direct"), "o", ms=3, color=line.get_color())
        rs = [r for r in table if r["rho"] == rho]
        order = np.argsort(col(rs, "gamma_over_gamma_c"))
        ax.plot(col(rs, "gamma_over_gamma_c")[order], col(rs, "limit")[order], "k--", lw=1,
                label="n -> inf limit")
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set(xlabel="gamma / gamma_c", ylabel="output cosine", title=f"rho = {rho}")
        ax.legend(fontsize=7)
    save(fig, "long_context")


def cluster_count():
    rs = rows(ROOT / "cluster_count/predicted.csv")
    beta = col(rs, "beta")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(beta, col(rs, "predicted_clusters"), "k-", label="predicted argmax_k k^2 I_k(beta)")
    med = col(rs, "dominant_mode_median")
    err = [med - col(rs, "dominant_mode_min"), col(rs, "dominant_mode_max") - med]
    ax.errorbar(beta, med, yerr=err, fmt="o", capsize=3, label="simulation: dominant mode (median, range)")
    ax.set(xscale="log", xlabel="beta", ylabel="clusters", title="d = 2: clusters from near-uniform data")
    ax.legend(fontsize=8)
    save(fig, "cluster_count")


def metastability():
    table = rows(ROOT / "metastability/results.csv")
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex="col")
    for c, d in enumerate(("2", "3")):
        for (dd, beta), rs in groups([r for r in table if r["d"] == d and r["system"] == "0"],
                                     "d", "beta").items():
            t = col(rs, "t")
            axes[0, c].plot(t, col(rs, "clusters"), label=f"beta = {beta}")
            axes[1, c].plot(t, col(rs, "log_energy"), label=f"beta = {beta}")
        axes[0, c].set(yscale="log", ylabel="clusters", title=f"d = {d} (system 0)")
        axes[1, c].set_xscale("symlog", linthresh=1.0)
        axes[1, c].set(xlabel="t (linear below 1, log above)", ylabel="log energy",
                       xlim=(0, max(col(table, "t"))))
        axes[0, c].legend(fontsize=7)
    save(fig, "metastability")


def phase_diagram():
    """As in the paper: P over (t, beta), one panel per d, pcolormesh with the equiangular
    curve t_eq(beta) (the time the rho0 = 0 equiangular ODE reaches 1 - delta)."""
    table = rows(ROOT / "phase_diagram/results.csv")
    curve = rows(ROOT / "phase_diagram/curve.csv")
    dims = sorted({int(r["d"]) for r in table})
    fig, axes = plt.subplots(1, len(dims), figsize=(3.6 * len(dims) + 1, 3.8), squeeze=False,
                             constrained_layout=True)
    cb, ct = col(curve, "beta"), col(curve, "t_equiangular")
    for ax, d in zip(axes[0], dims):
        rs = [r for r in table if int(r["d"]) == d]
        beta, t, p = col(rs, "beta"), col(rs, "t"), col(rs, "p_clustered")
        bs, ts = np.unique(beta), np.unique(t)
        grid = np.full((len(bs), len(ts)), np.nan)
        grid[np.searchsorted(bs, beta), np.searchsorted(ts, t)] = p
        im = ax.pcolormesh(ts, bs, grid, shading="nearest", vmin=0, vmax=1, cmap="magma")
        ok = np.isfinite(ct) & (ct <= ts.max())
        ax.plot(ct[ok], cb[ok], color="cyan", lw=1.5, label="equiangular (rho0 = 0)")
        ax.set(xlabel="t", ylabel="beta", title=f"d = {d}", xlim=(ts.min(), ts.max()), ylim=(bs.min(), bs.max()))
        ax.legend(fontsize=7, loc="lower right")
    fig.colorbar(im, ax=axes[0].tolist(), label="P(<x_i, x_j> > 1 - delta)")
    path = ROOT / "phase_diagram" / "phase_diagram.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("wrote", path)
    link_figure("phase_diagram")


if __name__ == "__main__":
    for f in (equiangular, schemes, long_context, cluster_count, metastability, phase_diagram):
        f()
