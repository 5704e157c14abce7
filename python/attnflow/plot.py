"""attnflow.plot: pictures of every attnflow experiment (matplotlib, no display needed).

Library use (each function returns the matplotlib Figure and writes ``path`` when given)::

    from attnflow import plot
    plot.trajectories(snapshots, times, path="traj.png")      # circle / sphere, cluster colours
    plot.observables(table, path="obs.png")                   # observables.csv over time
    plot.heatmap(pi, path="coupling.png", title="Sinkhorn coupling")

Command line: ``python3 -m attnflow.plot DIR`` reads DIR/summary.json's "kind" and the files
the commands write there (observables.csv, snapshots/*.npy, final.npy, risk.csv,
concentration.csv, loss.csv, phase.csv, plan.npy ...) and writes PNGs into DIR. A kind it does
not know is not an error: it says so and draws what it recognizes.

Figures are built on matplotlib.figure.Figure with the Agg canvas (never pyplot), so plotting
works without a display and never changes a notebook's backend.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# The files plot_directory draws (relative to DIR; "snapshots/" is a directory). The CLI's plot
# hook (cli/plot_hook.cpp, kPlottedFiles) starts Python only when DIR holds one of them: keep
# the two lists equal (tests/python/test_py_plot.py checks it).
PLOTTED_FILES = (
    "observables.csv", "snapshots/", "final.npy", "loss.csv", "risk.csv", "train.csv",
    "concentration.csv", "plan.npy", "coupling.npy", "pi.npy", "attention.npy", "softmax.npy",
    "sinkhorn.npy", "exact_plan.npy", "phase.csv", "phase_diagram.csv", "sweep.csv",
    "equiangular.csv")

# Caps that keep plotting a run well under its compute: trajectories draw at most MAX_TOKENS
# tokens (evenly spaced indices) at at most MAX_FRAMES times (evenly spaced snapshots).
MAX_TOKENS = 256
MAX_FRAMES = 200

# Observable columns drawn from observables.csv (runner.hpp's order), with axis labels.
_OBSERVABLES = [
    ("log_energy", "log energy  log E_beta"),
    ("mean_cosine", "mean pairwise cosine"),
    ("clusters", "clusters"),
    ("order", "order parameter |sum w_i x_i|"),
    ("min_cosine", "min pairwise cosine"),
    ("clustered_pairs", "fraction of clustered pairs"),
    ("radius_mean", "radius |x_i|: mean (band: min to max)"),
]


def _log_if_decades(ax, values) -> None:
    """Log scale for positive counts that span a decade or more (cluster counts 256 -> 3)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) and v.min() > 0 and v.max() >= 10 * v.min():
        ax.set_yscale("log")


def _subsample(count: int, cap: int) -> np.ndarray:
    """cap evenly spaced indices of range(count) (all of them when count <= cap), first and
    last included."""
    if count <= cap:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, cap).round().astype(int))


def _groups(keys: np.ndarray):
    """(unique keys, list of index arrays) of equal keys, in one sort (no mask per key)."""
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return uniq, np.split(order, starts[1:])


# ----------------------------------------------------------------------------- helpers
def _figure(ncols: int = 1, nrows: int = 1, size=(6.4, 4.8)) -> Figure:
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Optional[str]) -> Figure:
    if path:
        tmp = f"{path}.tmp.{os.getpid()}.png"
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)  # atomic: a reader never sees half a PNG
    return fig


def read_csv(path: str) -> Dict[str, np.ndarray]:
    """A CSV with a header line -> {column name: float array} (inf/nan kept; text cells such
    as a sweep's "pre-ln" labels read as nan)."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty table is no reason to warn
        try:  # the C parser (about 2.5x faster on large tables); text cells need genfromtxt
            data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=float, ndmin=2, encoding="utf-8")
        except ValueError:
            with open(path, encoding="utf-8") as fh:
                data = np.genfromtxt(fh, delimiter=",", skip_header=1, dtype=float, ndmin=2)
    if data.size == 0:
        data = np.zeros((0, len(header)))
    return {name.strip(): data[:, i] for i, name in enumerate(header)}


def cluster_labels(x: np.ndarray, delta: float = 1e-2) -> np.ndarray:
    """Cluster index per row of x (n, d): connected components of cos(x_i, x_j) > 1 - delta
    (docs/math.md section 5), numbered by decreasing size. Dense O(n^2): for plotting sizes."""
    x = np.asarray(x, dtype=float)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    adj = xn @ xn.T > 1.0 - delta
    n = len(x)
    labels = -np.ones(n, dtype=int)
    count = 0
    for i in range(n):
        if labels[i] >= 0:
            continue
        stack, labels[i] = [i], count
        while stack:
            j = stack.pop()
            for k in np.nonzero(adj[j] & (labels < 0))[0]:
                labels[k] = count
                stack.append(k)
        count += 1
    order = np.argsort(-np.bincount(labels, minlength=count), kind="stable")
    rank = np.empty(count, dtype=int)
    rank[order] = np.arange(count)
    return rank[labels]


def _colors(labels: np.ndarray):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(int(c) % 10) for c in labels]


# ----------------------------------------------------------------------------- plots
def trajectories(snapshots, times=None, path: Optional[str] = None, delta: float = 1e-2,
                 title: str = "token trajectories", max_tokens: int = MAX_TOKENS,
                 max_frames: int = MAX_FRAMES, total_tokens: Optional[int] = None,
                 clusters: Optional[int] = None) -> Figure:
    """Trajectories of n tokens: snapshots (T, n, d) (or a list of (n, d)), colours = clusters
    of the last snapshot. d = 2: angle vs time and the final circle; d = 3: the sphere;
    d > 3: the first three principal directions of all positions. At most max_tokens tokens
    (evenly spaced) at max_frames times are drawn, so the cost stays bounded at any n; the
    title then says how many. total_tokens / clusters: the full run's token and cluster counts
    for the title (default: those of the tokens drawn)."""
    snaps = np.asarray(snapshots, dtype=float)
    if snaps.ndim == 2:
        snaps = snaps[None]
    t = np.arange(len(snaps), dtype=float) if times is None else np.asarray(times, dtype=float)[: len(snaps)]
    frames = _subsample(len(snaps), max_frames)
    tokens = _subsample(snaps.shape[1], max_tokens)
    total = int(total_tokens) if total_tokens is not None else snaps.shape[1]
    snaps, t = snaps[frames][:, tokens], t[frames]
    drawn = "" if len(tokens) >= total else f"; {len(tokens)} of {total} tokens drawn"
    labels = cluster_labels(snaps[-1], delta)
    k = int(clusters) if clusters is not None and clusters >= 0 else int(labels.max() + 1)
    colors = _colors(labels)
    n, d = snaps.shape[1], snaps.shape[2]
    if d == 2:
        fig = _figure(2)
        ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        ang = np.unwrap(np.arctan2(snaps[:, :, 1], snaps[:, :, 0]), axis=0)
        from matplotlib.collections import LineCollection  # one artist for all tokens

        segs = np.stack([np.broadcast_to(t[:, None], ang.shape), ang], axis=-1).transpose(1, 0, 2)
        ax.add_collection(LineCollection(segs, colors=colors, lw=0.8, gid="trajectories"))
        ax.autoscale_view()
        ax.set_xlabel("t")
        ax.set_ylabel("angle (unwrapped)")
        s = np.linspace(0, 2 * math.pi, 200)
        ax2.plot(np.cos(s), np.sin(s), color="0.8", lw=1)
        ax2.scatter(snaps[0, :, 0], snaps[0, :, 1], s=10, color="0.6", label="initial")
        ax2.scatter(snaps[-1, :, 0], snaps[-1, :, 1], s=40, c=colors, label="final")
        ax2.set_aspect("equal")
        ax2.legend(loc="upper right", fontsize=8)
        ax2.set_title(f"{k} cluster{'s' if k != 1 else ''} (delta = {delta:g}{drawn})", fontsize=10)
    else:
        pts = snaps
        note = ""
        if d > 3:  # principal directions of every position (a linear view, not the sphere)
            flat = snaps.reshape(-1, d)
            _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
            pts = snaps @ vt[:3].T
            note = " (first 3 principal directions)"
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1, projection="3d")
        if d == 3:
            u, v = np.mgrid[0:2 * np.pi:24j, 0:np.pi:12j]
            ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
        from mpl_toolkits.mplot3d.art3d import Line3DCollection  # one artist for all tokens

        ax.add_collection3d(Line3DCollection(pts[:, :, :3].transpose(1, 0, 2), colors=colors, lw=0.6,
                                             gid="trajectories"))
        ax.scatter(pts[-1, :, 0], pts[-1, :, 1], pts[-1, :, 2], c=colors, s=25, depthshade=False)
        ax.set_title(f"{k} cluster{'s' if k != 1 else ''} at t = {t[-1]:g}{note}{drawn}", fontsize=10)
    fig.suptitle(title)
    return _save(fig, path)


def observables(table: Dict[str, np.ndarray], path: Optional[str] = None,
                probs: Sequence[float] = (0.1, 0.9), title: str = "observables") -> Figure:
    """Observables over time from observables.csv columns (t, system, ...). One line per
    system for a few systems; for many (> 8), ensemble bands: median and the probs quantiles."""
    t, system = table["t"], table.get("system", np.zeros_like(table["t"]))
    names = [(c, lab) for c, lab in _OBSERVABLES if c in table]
    # Pair observables are sentinels (clusters = -1) when the pair pass was skipped.
    if "clusters" in table and np.all(table["clusters"] < 0):
        names = [(c, lab) for c, lab in names if c not in ("clusters", "min_cosine", "clustered_pairs")]
    if "radius_mean" in table and np.all(np.abs(table["radius_min"] - 1.0) < 1e-9) and \
            np.all(np.abs(table["radius_max"] - 1.0) < 1e-9):
        names = [(c, lab) for c, lab in names if c != "radius_mean"]  # unit radii (no scheme): no panel
    systems, members = _groups(system)
    cols = 2
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure(cols, rows, size=(5.0, 3.2))
    if len(systems) > 8:
        times, at = _groups(t)
    for k, (col, label) in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        if len(systems) <= 8:
            for s, sel in zip(systems, members):
                ax.plot(t[sel], table[col][sel], lw=1.2, label=f"system {int(s)}")
                if col == "radius_mean":
                    ax.fill_between(t[sel], table["radius_min"][sel], table["radius_max"][sel], alpha=0.2)
            if len(systems) > 1 and k == 0:
                ax.legend(fontsize=7)
        else:
            vals = [table[col][sel] for sel in at]
            vals = [v[np.isfinite(v)] for v in vals]
            ok = np.array([len(v) > 0 for v in vals])
            med = np.array([np.median(v) if len(v) else np.nan for v in vals])
            lo = np.array([np.quantile(v, probs[0]) if len(v) else np.nan for v in vals])
            hi = np.array([np.quantile(v, probs[1]) if len(v) else np.nan for v in vals])
            ax.fill_between(times[ok], lo[ok], hi[ok], alpha=0.3,
                            label=f"{probs[0]:.0%}-{probs[1]:.0%} of {len(systems)} systems")
            ax.plot(times[ok], med[ok], lw=1.5, label="median")
            if k == 0:
                ax.legend(fontsize=7)
        if col == "clusters":
            _log_if_decades(ax, table[col])
        ax.set_xlabel("t")
        ax.set_ylabel(label)
    fig.suptitle(title)
    return _save(fig, path)


def heatmap(matrix, path: Optional[str] = None, title: str = "coupling", xlabel: str = "key j",
            ylabel: str = "query i", log: bool = False) -> Figure:
    """A coupling or attention matrix (n, m) as an image (log10 scale when log)."""
    a = np.asarray(matrix, dtype=float)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    img = np.log10(np.maximum(a, np.finfo(float).tiny)) if log else a
    im = ax.imshow(img, aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax, label="log10 value" if log else "value")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def curves(table: Dict[str, np.ndarray], x: str, ys: Sequence[str], path: Optional[str] = None,
           logx: bool = False, logy: bool = True, title: str = "", slopes: bool = False,
           errors: Optional[Dict[str, np.ndarray]] = None) -> Figure:
    """Columns ys against column x (training curves: risk or loss vs step; concentration
    curves: error vs prompt length L on log-log axes, with fitted log-log slopes). errors[y],
    when given, is drawn as a +- band (standard errors)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    xv = table[x]
    for y in ys:
        yv = table[y]
        ok = np.isfinite(yv) & (yv > 0 if logy else np.isfinite(yv)) & (xv > 0 if logx else True)
        label = y
        if slopes and ok.sum() >= 2:
            slope = np.polyfit(np.log(xv[ok]), np.log(yv[ok]), 1)[0]
            label = f"{y} (log-log slope {slope:.2f})"
        line, = ax.plot(xv[ok], yv[ok], marker="o" if len(xv) < 40 else None, ms=3, lw=1.2, label=label)
        if errors and y in errors:
            lo = yv[ok] - errors[y][ok]
            ax.fill_between(xv[ok], np.where(lo > 0, lo, yv[ok] / 10) if logy else lo,
                            yv[ok] + errors[y][ok], color=line.get_color(), alpha=0.2)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def equiangular_time(beta: float, n: int = 32, delta: float = 1e-3, rho0: float = 0.0,
                     t_max: float = 1e3) -> float:
    """Time at which the SA equiangular solution from rho0 reaches 1 - delta (the theory curve
    of the phase diagram), by the library's dopri5 solution and bisection on its samples."""
    from . import _attnflow as ext

    o = ext.EquiangularOptions()
    o.n, o.beta, o.rho0 = int(n), float(beta), float(rho0)
    times = np.concatenate([[0.0], np.geomspace(1e-4, t_max, 400)])
    sol = ext.solve_equiangular(o, times)
    u = np.asarray(sol.one_minus_rho)
    hit = np.nonzero(u <= delta)[0]
    if len(hit) == 0:
        return float("inf")
    k = hit[0]
    if k == 0:
        return 0.0
    # log-linear interpolation of u between the two samples around 1 - rho = delta
    t0, t1, u0, u1 = times[k - 1], times[k], math.log(u[k - 1]), math.log(u[k])
    return float(t0 + (t1 - t0) * (math.log(delta) - u0) / (u1 - u0))


def phase_diagram(betas, times, prob, path: Optional[str] = None, n: int = 32,
                  delta: float = 1e-3, title: str = "P(<x_1(t), x_2(t)> >= 1 - delta)") -> Figure:
    """prob (len(times), len(betas)) over the (beta, t) grid, with the equiangular theory curve
    (SA, rho0 = 0) where 1 - rho reaches delta."""
    betas, times, prob = np.asarray(betas, float), np.asarray(times, float), np.asarray(prob, float)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    im = ax.pcolormesh(betas, times, prob, shading="nearest", vmin=0, vmax=1, cmap="magma")
    fig.colorbar(im, ax=ax, label="probability")
    bs = np.linspace(betas.min(), betas.max(), 30)
    curve = np.array([equiangular_time(b, n, delta, t_max=max(10 * times.max(), 1.0)) for b in bs])
    ok = np.isfinite(curve) & (curve <= times.max())
    ax.plot(bs[ok], curve[ok], color="cyan", lw=2, label=f"equiangular theory (n = {n})")
    ax.set_xlabel("beta")
    ax.set_ylabel("t")
    ax.set_ylim(times.min(), times.max())
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def long_context(rho: float, path: Optional[str] = None, ns=(1e2, 1e4, 1e8, 1e16),
                 gamma_max: Optional[float] = None, mark: Optional[tuple] = None) -> Figure:
    """The long-context transition: output cosine of one layer at beta = gamma log n vs gamma
    for several n (library formula), the n -> inf limit and gamma_c = 1 / (1 - rho)."""
    from . import _attnflow as ext

    gc = ext.long_context_gamma_c(rho)
    gmax = gamma_max or 3.0 * gc
    gammas = np.linspace(0.0, gmax, 400)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for n in ns:
        ax.plot(gammas, [ext.long_context_cosine(n, rho, g) for g in gammas], lw=1.2, label=f"n = {n:.0e}")
    lim = [ext.long_context_limit(rho, g) for g in gammas]
    ax.plot(gammas, lim, "k--", lw=1.5, label="n -> inf")
    ax.axvline(gc, color="0.5", ls=":", label=f"gamma_c = {gc:.3g}")
    if mark is not None:
        ax.plot([mark[0]], [mark[1]], "r*", ms=12, label=f"this run: cosine {mark[1]:.4g}")
    ax.set_xlabel("gamma  (beta = gamma log n)")
    ax.set_ylabel("output cosine")
    ax.set_title(f"long-context transition, input cosine rho = {rho:g}")
    ax.legend(fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------- directories
def _load_snapshots(directory: str, max_tokens: int = MAX_TOKENS, max_frames: int = MAX_FRAMES):
    """(frame indices, (T, k, d) positions of system 0 at those frames, n): at most max_frames
    snapshots of snapshots/snap_*.npy (or final.npy alone) and max_tokens of their n tokens,
    read through memory maps (the rest is never loaded). None when there is nothing."""
    files = sorted(glob.glob(os.path.join(directory, "snapshots", "snap_*.npy")))
    if not files and os.path.exists(os.path.join(directory, "final.npy")):
        files = [os.path.join(directory, "final.npy")]
    if not files:
        return None
    frames = _subsample(len(files), max_frames)
    snaps, n = [], 0
    for f in (files[i] for i in frames):
        a = np.load(f, mmap_mode="r")
        a = a[0] if a.ndim == 3 else a  # (systems, n, d): system 0
        n = a.shape[0]
        snaps.append(np.array(a[_subsample(n, max_tokens)]))
    return frames, np.array(snaps), n


def _plot_run(directory: str, summary: dict, out: List[str]) -> None:
    csv = os.path.join(directory, "observables.csv")
    if os.path.exists(csv):
        path = os.path.join(directory, "observables.png")
        title = f"{summary.get('model', '')} beta = {summary.get('beta', '')}, n = {summary.get('n', '')}"
        observables(read_csv(csv), path, title=title)
        out.append(path)
    loaded = _load_snapshots(directory)
    if loaded is not None and loaded[1].shape[-1] >= 2:
        frames, snaps, n = loaded
        times = summary.get("observation_times")
        n_files = len(glob.glob(os.path.join(directory, "snapshots", "snap_*.npy")))
        times = np.asarray(times)[frames] if times is not None and len(times) == n_files else None
        final = (summary.get("final") or [{}])[0]
        delta = float(summary.get("delta", 1e-2))
        path = os.path.join(directory, "trajectories.png")
        trajectories(snaps, times, path, delta=delta, total_tokens=n, clusters=final.get("clusters"))
        out.append(path)


def _first_column(table: Dict[str, np.ndarray], names: Sequence[str]) -> Optional[str]:
    for n in names:
        if n in table:
            return n
    return None


def _plot_tables(directory: str, summary: dict, out: List[str]) -> None:
    """Training curves (loss.csv, risk.csv, train.csv) and concentration curves."""
    for name in ("loss.csv", "risk.csv", "train.csv"):
        p = os.path.join(directory, name)
        if not os.path.exists(p):
            continue
        t = read_csv(p)
        x = _first_column(t, ("step", "epoch", "iteration", "time", "t"))
        ys = [c for c in t if c != x and any(k in c for k in ("loss", "risk"))]
        if x and ys:
            path = os.path.join(directory, name.replace(".csv", ".png"))
            curves(t, x, ys, path, title=f"training curve ({name})")
            out.append(path)
    p = os.path.join(directory, "concentration.csv")
    if os.path.exists(p):
        t = read_csv(p)
        x = _first_column(t, ("L", "length", "prompt_length", "n"))
        ys = [c for c in t if c != x and ("err" in c or "grad" in c) and "std" not in c and "se" != c[-2:]]
        if x and ys:
            path = os.path.join(directory, "concentration.png")
            se = {y: t[y.replace("_error", "_se")] for y in ys if y.replace("_error", "_se") in t}
            curves(t, x, ys, path, logx=True, logy=True, slopes=True, errors=se,
                   title="concentration in the prompt length (bands: +- 1 standard error)")
            out.append(path)


def _plot_matrices(directory: str, summary: dict, out: List[str]) -> None:
    """Couplings / attention matrices saved as 2-D .npy (plan, coupling, attention, ...)."""
    for name in ("plan", "coupling", "pi", "attention", "softmax", "sinkhorn", "exact_plan"):
        p = os.path.join(directory, name + ".npy")
        if os.path.exists(p):
            a = np.load(p)
            if a.ndim == 2 and a.shape[0] * a.shape[1] <= 4_000_000:
                path = os.path.join(directory, name + ".png")
                heatmap(a, path, title=f"{name} ({a.shape[0]} x {a.shape[1]})")
                out.append(path)


def _plot_phase(directory: str, summary: dict, out: List[str]) -> None:
    """phase.csv with columns beta, t, probability (a sweep's phase diagram)."""
    for name in ("phase.csv", "phase_diagram.csv"):
        p = os.path.join(directory, name)
        if not os.path.exists(p):
            continue
        t = read_csv(p)
        pc = _first_column(t, ("probability", "prob", "p", "fraction"))
        tc = _first_column(t, ("t", "time"))
        if "beta" not in t or pc is None or tc is None:
            continue
        betas, times = np.unique(t["beta"]), np.unique(t[tc])
        grid = np.full((len(times), len(betas)), np.nan)
        grid[np.searchsorted(times, t[tc]), np.searchsorted(betas, t["beta"])] = t[pc]
        path = os.path.join(directory, name.replace(".csv", ".png"))
        phase_diagram(betas, times, grid, path, n=int(summary.get("n", 32)),
                      delta=float(summary.get("delta", 1e-3)))
        out.append(path)


def _plot_theory(directory: str, summary: dict, out: List[str]) -> None:
    kind = summary.get("kind", "")
    if kind == "theory-long-context" and "rho" in summary:
        mark = (summary["gamma"], summary["cosine"]) if "cosine" in summary else None
        path = os.path.join(directory, "long_context.png")
        long_context(float(summary["rho"]), path, mark=mark)
        out.append(path)
    for name in ("equiangular.csv",):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            t = read_csv(p)
            if "t" in t and "one_minus_rho" in t:
                path = os.path.join(directory, "equiangular.png")
                curves(t, "t", ["one_minus_rho"], path, logy=True, title="equiangular: 1 - rho(t)")
                out.append(path)


def _point_config(directory: str) -> dict:
    """The resolved config.toml of a sweep's first point (n, delta for the theory curve)."""
    import tomllib

    p = os.path.join(directory, "points", "point_000000", "config.toml")
    if not os.path.exists(p):
        return {}
    with open(p, "rb") as fh:
        return tomllib.load(fh)


def _plot_sweep(directory: str, summary: dict, out: List[str]) -> None:
    """sweep.csv (point, grid keys..., t, system, observables): the phase diagram of the
    clustered-pair fraction over (model.beta, t) averaged over the other keys (seeds,
    systems) = P(<x_1(t), x_2(t)> >= 1 - delta) by exchangeability, with the theory curve;
    and the final observables against the first grid key (the first axis of the [sweep] table,
    as the sweep ran it)."""
    p = os.path.join(directory, "sweep.csv")
    if not os.path.exists(p):
        return
    t = read_csv(p)
    keys = sweep_keys(t)
    cfg = _point_config(directory)
    n = int(cfg.get("measure", {}).get("n", summary.get("n", 32)))
    delta = float(cfg.get("observe", {}).get("delta", summary.get("delta", 1e-2)))
    if "model.beta" in keys and "clustered_pairs" in t and np.all(t["clustered_pairs"] >= 0):
        betas, bj = np.unique(t["model.beta"], return_inverse=True)
        times, ti = np.unique(t["t"], return_inverse=True)
        cell = ti * len(betas) + bj  # mean per (t, beta) cell in one pass
        sums = np.bincount(cell, weights=t["clustered_pairs"], minlength=len(times) * len(betas))
        counts = np.bincount(cell, minlength=len(times) * len(betas))
        with np.errstate(invalid="ignore", divide="ignore"):
            grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(len(times), len(betas))
        path = os.path.join(directory, "phase_diagram.png")
        phase_diagram(betas, times, grid, path, n=n, delta=delta,
                      title=f"fraction of pairs with <x_i, x_j> > 1 - {delta:g} (n = {n})")
        out.append(path)
    if keys:
        path = os.path.join(directory, "sweep_final.png")
        sweep_final(t, keys, path)
        out.append(path)


def sweep_keys(table: Dict[str, np.ndarray]) -> List[str]:
    """The grid keys of a sweep.csv table (the columns between point and t), in the sweep's
    axis order: the order of the [sweep] table, then of the --set overrides that add axes."""
    names = list(table)
    if "point" not in table or "t" not in table:
        return []
    return names[names.index("point") + 1:names.index("t")]


def sweep_final(table: Dict[str, np.ndarray], keys: Optional[Sequence[str]] = None,
                path: Optional[str] = None) -> Figure:
    """Final observables (at the last time) of a sweep.csv table against its first grid key
    (keys[0], default sweep_keys(table)[0]), averaged over the other keys."""
    t = table
    key = list(keys or sweep_keys(t))[0]
    last = t["t"] == t["t"].max()
    cols = [c for c in ("clusters", "log_energy", "mean_cosine", "order") if c in t]
    fig = _figure(len(cols), 1, size=(4.0, 3.2))
    for k, c in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), k + 1)
        xs = np.unique(t[key][last])
        ys = [np.mean(t[c][last & (t[key] == x)]) for x in xs]
        ax.plot(xs, ys, "o-")
        if c == "clusters":
            _log_if_decades(ax, ys)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{c} at t = {t['t'].max():g}")
    fig.suptitle("sweep: final observables (mean over the other keys)")
    return _save(fig, path)


# Plotters for every kind; each looks for its files and draws what it finds.
_PLOTTERS: List[Callable[[str, dict, List[str]], None]] = [
    _plot_run, _plot_tables, _plot_matrices, _plot_phase, _plot_sweep, _plot_theory]
KNOWN_KINDS = ("run", "demo", "sweep", "ot", "icl", "largeprompt", "fit", "model",
               "theory-long-context", "theory-clusters", "theory-equiangular", "theory-phase")


def plot_directory(directory: str, strict: bool = False) -> List[str]:
    """Draws every recognized output of an attnflow output directory into it; returns the
    PNG paths. A failing plotter is reported and skipped unless strict (then it raises)."""
    summary_path = os.path.join(directory, "summary.json")
    summary: dict = {}
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as fh:
            summary = json.load(fh)
    else:
        print(f"attnflow.plot: note: {summary_path} not found; drawing the files found")
    kind = str(summary.get("kind", ""))
    if kind and kind not in KNOWN_KINDS and not kind.startswith("theory-"):
        print(f"attnflow.plot: note: unknown kind '{kind}'; drawing the files found")
    out: List[str] = []
    for plotter in _PLOTTERS:
        try:
            plotter(directory, summary, out)
        except Exception as exc:  # plotting never fails a command; tests use strict
            if strict:
                raise
            print(f"attnflow.plot: warning: {plotter.__name__[6:]} plots skipped: {exc}")
    if not out:
        print(f"attnflow.plot: note: nothing to plot in {directory} (kind '{kind}')")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python3 -m attnflow.plot DIR\n"
              "Draws the PNGs of an attnflow output directory (by summary.json's kind) into DIR.")
        return 0 if args and args[0] in ("-h", "--help") else 2
    directory = args[0]
    if not os.path.isdir(directory):
        print(f"attnflow.plot: error: {directory} is not a directory", file=sys.stderr)
        return 2
    for p in plot_directory(directory):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
