"""attnflow.view: an interactive viewer of a run, as one self-contained HTML file.

Library and notebook use::

    import attnflow
    attnflow.view("runs/movie")                     # in Jupyter: the viewer, inline
    from attnflow import view
    view.write_html("runs/movie", "movie.html")     # the same page as a file

Command line: ``python3 -m attnflow.view RUN_DIR [--out FILE.html]`` (what ``attnflow view``
calls). The page shows the tokens on the circle (d = 2), the sphere (d = 3) or, for d > 3, their
projection onto the top 3 principal directions of the final state; a time slider with
play/pause and trails; the observables (energy, clusters on a log axis, mean cosine) with a
cursor at the current time; a system / grid-point selector for ensembles and sweeps.

The page needs no network: the plotting library (plotly.js, the version pinned in
viewer/package-lock.json) and the viewer's own script (viewer/viewer.js) are inlined. The viewer
computes nothing about the dynamics: it reads what the run wrote (snapshots/*.npy,
observables.csv, summary.json, config.toml) and only prepares it for display (a subset of the
tokens and frames, colors by final cluster, the projection for d > 3); the theory curve of an
equiangular run is the library's solve_equiangular.

Size: at most ``max_tokens`` tokens per system (default 2000, every k-th), ``max_frames``
frames (default 200, evenly spaced, first and last kept), ``max_entries`` systems or grid
points (default 64) and ``budget`` coordinates in all (default 1.5e6, stored as 16-bit
integers): the page stays under 8 MB whatever the run's size; what was left out is said on the
page.
"""

from __future__ import annotations

import base64
import csv
import glob
import html
import json
import math
import os
import re
import sys
import types
from typing import Dict, List, Optional, Sequence

import numpy as np

MAX_TOKENS = 2000
MAX_FRAMES = 200
MAX_ENTRIES = 64
BUDGET = 1_500_000
PLOTLY_FILE = "plotly-gl3d.min.js"
PLOTLY_PACKAGE = "plotly.js-gl3d-dist-min"


class ViewError(ValueError):
    """A directory the viewer cannot show (the message names it and says why)."""


# ----------------------------------------------------------------------------- assets
def _asset_dirs() -> List[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.join(here, "_viewer")]  # build/python/attnflow/_viewer, installed package
    src = os.environ.get("ATTNFLOW_SOURCE_DIR")
    if src:
        dirs.append(os.path.join(src, "viewer"))
    dirs.append(os.path.normpath(os.path.join(here, "..", "..", "viewer")))  # source tree
    return dirs


def _asset(name: str) -> str:
    tried = []
    for d in _asset_dirs():
        for p in (os.path.join(d, name), os.path.join(d, "node_modules", PLOTLY_PACKAGE, name)):
            tried.append(p)
            if os.path.exists(p):
                with open(p, encoding="utf-8") as fh:
                    return fh.read()
    hint = " (run scripts/install-deps.sh: it runs npm ci in viewer/)" if name == PLOTLY_FILE else ""
    raise ViewError(f"view: {name} not found{hint}; looked in: {', '.join(tried)}")


# ----------------------------------------------------------------------------- reading a run
def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _read_toml(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    import tomllib

    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _read_table(path: str) -> Dict[str, np.ndarray]:
    from .plot import read_csv

    return read_csv(path) if os.path.exists(path) else {}


def _snapshot_files(directory: str) -> List[str]:
    files = sorted(glob.glob(os.path.join(directory, "snapshots", "snap_*.npy")))
    if not files and os.path.exists(os.path.join(directory, "final.npy")):
        files = [os.path.join(directory, "final.npy")]
    return files


def _pick(count: int, limit: int) -> np.ndarray:
    """`limit` evenly spaced indices of range(count), first and last included."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, max(limit, 2))).astype(int))


def _finite_list(a: np.ndarray, digits: int = 8) -> list:
    """JSON-safe list: non-finite values become None (a gap in the plot)."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in np.asarray(a, dtype=float)]


def _theory(cfg: dict, times: np.ndarray) -> Optional[dict]:
    """The equiangular solution rho(t) (= the mean cosine) when the run starts equiangular
    under a model the reduction covers (docs/math.md section 6), else None."""
    m, meas = cfg.get("model", {}), cfg.get("measure", {})
    if meas.get("init") != "equiangular" or m.get("kind") not in ("sa", "usa"):
        return None
    if m.get("heads", 1) != 1 or m.get("qkv", "identity") != "identity" or m.get("kappa", 0.0) != 0.0:
        return None
    if float(m.get("usa_log_shift", 0.0)) != 0.0:  # a time rescaling the reduction does not have
        return None
    if not m.get("sphere", True) or int(meas.get("n", 0)) < 2 or len(times) == 0:
        return None
    schemes = {"none": "post-ln", "post-ln": "post-ln", "pre-ln": "pre-ln", "mix-ln": "mix-ln",
               "peri-ln": "peri-ln", "ngpt": "ngpt", "sqrt": "sqrt"}
    scheme = m.get("scheme", "none")
    if scheme not in schemes:
        return None
    from . import _attnflow as ext

    n = int(meas["n"])
    beta = float(m.get("gamma", 0.0)) * math.log(n) if float(m.get("gamma", 0.0)) > 0 else float(m.get("beta", 1.0))
    o = ext.EquiangularOptions()
    o.model = ext.parse_theory_model(m["kind"])
    o.scheme = ext.parse_equiangular_scheme(schemes[scheme])
    o.n, o.beta, o.rho0 = n, beta, float(meas.get("rho0", 0.0))
    o.tau, o.alpha = float(m.get("tau", 1.0)), float(m.get("alpha", 1.0))
    t = np.linspace(0.0, float(np.max(times)), 200)
    sol = ext.solve_equiangular(o, t)
    return {"t": _finite_list(t), "mean_cosine": _finite_list(np.asarray(sol.rho), 12),
            "label": f"equiangular theory rho(t) ({m['kind'].upper()}, {schemes[scheme]}, n = {n}, beta = {beta:g})"}


class _Run:
    """One run directory: snapshot files, times, observables, config."""

    def __init__(self, directory: str):
        self.dir = directory
        self.summary = _read_json(os.path.join(directory, "summary.json"))
        self.config = _read_toml(os.path.join(directory, "config.toml"))
        self.files = _snapshot_files(directory)
        if not self.files:
            kind = self.summary.get("kind", "")
            raise ViewError(f"view: {directory} has no snapshots/snap_*.npy and no final.npy"
                            f"{f' (kind {kind!r})' if kind else ''}; the viewer shows the output of "
                            "attnflow run, demo and sweep")
        first = np.load(self.files[0], mmap_mode="r")
        if first.ndim not in (2, 3):
            raise ViewError(f"view: {self.files[0]} has shape {first.shape}, must be (n, d) or (systems, n, d)")
        self.systems = first.shape[0] if first.ndim == 3 else 1
        self.n, self.d = first.shape[-2], first.shape[-1]
        times = self.summary.get("observation_times")
        if self.files[0].endswith("final.npy"):
            times = [times[-1]] if times else [float(self.config.get("integrate", {}).get("t_end", 0.0))]
        if times is None or len(times) != len(self.files):
            times = list(range(len(self.files)))
        self.times = np.asarray(times, dtype=float)
        self.table = _read_table(os.path.join(directory, "observables.csv"))
        self.delta = float(self.config.get("observe", {}).get("delta", self.summary.get("delta", 1e-2)))

    def positions(self, system: int, frames: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(len(frames), len(tokens), d) positions of one system (memory: the subset only)."""
        out = np.empty((len(frames), len(tokens), self.d))
        for k, f in enumerate(frames):
            a = np.load(self.files[f], mmap_mode="r")
            out[k] = (a[system] if a.ndim == 3 else a)[tokens]
        return out

    def observables(self, system: int) -> dict:
        t = self.table
        if not t or "t" not in t:
            return {}
        sel = t["system"] == system if "system" in t else np.ones(len(t["t"]), bool)
        out = {"t": _finite_list(t["t"][sel])}
        if "energy" in t and np.all(np.isfinite(t["energy"][sel])):
            out["energy"], out["energy_label"] = _finite_list(t["energy"][sel]), "energy E_beta"
        elif "log_energy" in t:
            out["energy"], out["energy_label"] = _finite_list(t["log_energy"][sel]), "log energy (E_beta overflows)"
        if "clusters" in t and np.all(t["clusters"][sel] > 0):
            out["clusters"] = _finite_list(t["clusters"][sel])
        if "mean_cosine" in t:
            out["mean_cosine"] = _finite_list(t["mean_cosine"][sel])
        return out


def _entries(directory: str) -> tuple:
    """[(label, _Run, system)] and the page's kind: one run, an ensemble, or a sweep."""
    summary = _read_json(os.path.join(directory, "summary.json"))
    if summary.get("kind") == "sweep" or os.path.exists(os.path.join(directory, "grid.csv")):
        labels = {}
        grid = os.path.join(directory, "grid.csv")
        if os.path.exists(grid):
            with open(grid, encoding="utf-8", newline="") as fh:
                rows = list(csv.reader(fh))
            for r in rows[1:]:
                labels[int(r[0])] = ", ".join(f"{k} = {v}" for k, v in zip(rows[0][1:], r[1:]))
        out = []
        for p in sorted(glob.glob(os.path.join(directory, "points", "point_*"))):
            k = int(os.path.basename(p).split("_")[-1])
            try:
                run = _Run(p)
            except ViewError:
                continue  # a point without snapshots (not run yet, or snapshots off and no final.npy)
            for s in range(run.systems):
                sys_label = f", system {s}" if run.systems > 1 else ""
                out.append((f"point {k}: {labels.get(k, '')}{sys_label}", run, s))
        if not out:
            raise ViewError(f"view: {directory} is a sweep without any point that has snapshots or final.npy")
        return out, "sweep"
    run = _Run(directory)
    if run.systems > 1:
        return [(f"system {s}", run, s) for s in range(run.systems)], "ensemble"
    return [("", run, 0)], "run"


def display_coords(x: np.ndarray, shown: Optional[int] = None) -> tuple:
    """Coordinates to draw from positions x (frames, n, d), and how: d = 2 on the circle, d = 3 on
    the sphere (or plain 2-D / 3-D when the rows are not unit vectors), d = 1 padded with 0, d > 3
    projected onto the top 3 principal directions of the final state (centered PCA of x[-1]).
    Returns (coords (frames, n, 2 or 3), {"view", "sphere", "scale", "projection"?})."""
    d = x.shape[2]
    on_sphere = bool(np.all(np.abs(np.linalg.norm(x, axis=2) - 1.0) < 1e-6))
    info: dict = {"sphere": on_sphere}
    if d > 3:
        final = x[-1]
        _, sv, vt = np.linalg.svd(final - final.mean(axis=0), full_matrices=True)
        var = sv ** 2
        frac = float(var[:3].sum() / var.sum()) if var.sum() > 0 else 1.0
        x = x @ vt[:3].T
        info["view"] = "pca"
        info["projection"] = (f"d = {d}: projection onto the top 3 principal directions of the final state "
                              f"(centered PCA of the {shown or x.shape[1]} tokens shown; "
                              f"{100 * frac:.1f}% of its variance)")
    elif d == 3:
        info["view"] = "sphere" if on_sphere else "3d"
    else:
        if d == 1:
            x = np.concatenate([x, np.zeros_like(x)], axis=2)
        info["view"] = "circle" if on_sphere and d == 2 else "2d"
    scale = float(np.max(np.abs(x))) if x.size else 1.0
    info["scale"] = 1.0 if on_sphere or not math.isfinite(scale) or scale == 0.0 else scale
    return x, info


def _encode(x: np.ndarray, scale: float) -> str:
    q = np.clip(np.round(x / scale * 32767.0), -32767, 32767).astype("<i2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def prepare(directory: str, max_tokens: int = MAX_TOKENS, max_frames: int = MAX_FRAMES,
            max_entries: int = MAX_ENTRIES, budget: int = BUDGET) -> dict:
    """The data the page shows, as a JSON-able dict (positions quantized to 16 bits)."""
    for name, v, lo in (("max_tokens", max_tokens, 1), ("max_frames", max_frames, 2),
                        ("max_entries", max_entries, 1), ("budget", budget, 1000)):
        if int(v) < lo:
            raise ViewError(f"view: {name} = {v}, must be >= {lo}")
    if not os.path.isdir(directory):
        raise ViewError(f"view: RUN_DIR = {directory}, must be a directory")
    from .plot import cluster_labels

    entries, kind = _entries(directory)
    notes: List[str] = []
    if len(entries) > max_entries:
        notes.append(f"showing the first {max_entries} of {len(entries)} "
                     f"{'grid points/systems' if kind == 'sweep' else 'systems'}")
        entries = entries[:max_entries]
    # Frames per entry: at most max_frames, and fewer when the coordinates exceed the budget.
    per_frame = sum(min(r.n, max_tokens) * min(max(r.d, 2), 3) for _, r, _ in entries)
    frame_cap = max(2, min(max_frames, budget // max(per_frame, 1)))
    out_entries = []
    for label, run, s in entries:
        stride = max(1, math.ceil(run.n / max_tokens))
        tokens = np.arange(0, run.n, stride)
        frames = _pick(len(run.files), frame_cap)
        x = run.positions(s, frames, tokens)
        final = x[-1]
        x, info = display_coords(x, len(tokens))
        on_sphere, scale = info["sphere"], info["scale"]
        e = {"label": label, "d": run.d, "n": run.n, "n_shown": len(tokens), "stride": stride,
             "frames_total": len(run.files), "times": _finite_list(run.times[frames], 10),
             "sphere": on_sphere, "view": info["view"]}
        if "projection" in info:
            e["projection"] = info["projection"]
        e["dim"] = x.shape[2]
        e["scale"] = scale
        e["positions"] = _encode(x, scale)
        e["labels"] = cluster_labels(final, run.delta).tolist() if len(final) else []
        e["clusters_final"] = int(max(e["labels"]) + 1) if e["labels"] else 0
        e["delta"] = run.delta
        wpath = os.path.join(run.dir, "weights.npy")
        if os.path.exists(wpath):
            w = np.load(wpath).reshape(-1)
            w = w[tokens] if len(w) == run.n else np.full(len(tokens), 1.0 / run.n)
            e["weights_note"] = "atom size: proportional to sqrt(n w_i), weights.npy"
        else:
            w = np.full(len(tokens), 1.0 / run.n)
            e["weights_note"] = "atom size: weight (uniform weights 1/n)"
        e["sizes"] = _finite_list(np.clip(7.0 * np.sqrt(np.maximum(w, 0) * run.n), 2.0, 20.0), 4)
        e["obs"] = run.observables(s)
        e["theory"] = _theory(run.config, run.times)
        out_entries.append(e)
    r0 = entries[0][1]
    if any(e["stride"] > 1 for e in out_entries):
        e = out_entries[0]
        notes.append(f"large run: showing {e['n_shown']} of {e['n']} tokens (one in {e['stride']}) "
                     "for display; the observables are those of all tokens")
    if any(len(e["times"]) < e["frames_total"] for e in out_entries):
        e = out_entries[0]
        notes.append(f"showing {len(e['times'])} of {e['frames_total']} snapshots (evenly spaced)")
    if len(r0.files) == 1 and r0.files[0].endswith("final.npy"):
        notes.append("no snapshots in this run (output.snapshots = false): the final state only")
    model = r0.config.get("model", {})
    meas = r0.config.get("measure", {})
    title = os.path.basename(os.path.normpath(os.path.abspath(directory)))
    if kind == "sweep":
        summary = _read_json(os.path.join(directory, "summary.json"))
        axes = ", ".join(summary.get("axes", {})) or "?"
        desc = (f"sweep over {axes}: {model.get('kind', '?')} model, n = {r0.n}, d = {r0.d} (point 0), "
                f"{len(entries)} points/systems")
    else:
        desc = (f"{kind}: {model.get('kind', '?')} model, beta = {model.get('beta', '?')}, n = {r0.n}, d = {r0.d}"
                + (f", {len(entries)} systems" if len(entries) > 1 else ""))
    if kind == "run" and meas.get("init"):
        desc += f", init = {meas['init']}"
    return {"title": title, "kind": kind, "description": desc, "notes": notes, "entries": out_entries,
            "version": str(r0.summary.get("attnflow_version", ""))}


def _script(text: str) -> str:
    """Text safe inside <script>...</script>: the sequence '</' cannot end the element."""
    return text.replace("</", "<\\/")


def build_html(directory: str, **limits) -> str:
    """The self-contained page (str) for an attnflow run, ensemble or sweep directory."""
    data = prepare(directory, **limits)
    page = _asset("template.html")
    parts = {
        "/*@ATTNFLOW_TITLE@*/": html.escape(f"attnflow view: {data['title']}"),
        "/*@ATTNFLOW_PLOTLY@*/": _script(_asset(PLOTLY_FILE)),
        "/*@ATTNFLOW_VIEWER@*/": _script(_asset("viewer.js")),
        "/*@ATTNFLOW_DATA@*/": _script(json.dumps(data, separators=(",", ":"), allow_nan=False)),
    }
    for key, value in parts.items():
        if page.count(key) != 1:
            raise ViewError(f"view: template.html must contain {key} exactly once")
    # One pass, so that a marker inside an inserted text is never replaced.
    return re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], page)


def write_html(directory: str, out: Optional[str] = None, **limits) -> str:
    """Writes the page to `out` (default DIR/view.html) atomically; returns its path."""
    page = build_html(directory, **limits)
    out = out or os.path.join(directory, "view.html")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ViewError(f"view: --out {out}: directory {parent} does not exist")
    tmp = f"{out}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, out)  # atomic: a reader never sees half a page
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return out


def show(run_or_dir, height: int = 720, **limits):
    """Displays the viewer inline in Jupyter (an iframe whose srcdoc is the page) and returns
    the IPython HTML object. run_or_dir: a run, ensemble or sweep directory, or any object
    with an ``out_dir`` / ``dir`` attribute naming one."""
    directory = run_or_dir
    for attr in ("out_dir", "dir", "directory"):
        if not isinstance(directory, (str, os.PathLike)) and hasattr(directory, attr):
            directory = getattr(directory, attr)
    page = build_html(os.fspath(directory), **limits)
    frame = (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{int(height)}px;'
             'border:0" sandbox="allow-scripts"></iframe>')
    try:
        from IPython.display import HTML, display
    except ImportError:  # outside IPython: the markup, for the caller to place
        return frame
    obj = HTML(frame)
    display(obj)
    return obj


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="attnflow view", description=(
        "Write one self-contained HTML file (opens offline) that shows a run, an ensemble or a sweep: "
        "tokens over time, observables, theory curve."))
    p.add_argument("run_dir", help="output directory of attnflow run, demo or sweep")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/view.html)")
    p.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="tokens shown per system (every k-th)")
    p.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="snapshots shown (evenly spaced)")
    p.add_argument("--max-entries", type=int, default=MAX_ENTRIES, help="systems / grid points shown")
    a = p.parse_args(argv)
    try:
        out = write_html(a.run_dir, a.out, max_tokens=a.max_tokens, max_frames=a.max_frames,
                         max_entries=a.max_entries)
    except (ViewError, OSError) as exc:
        print(f"attnflow: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB): open it in a browser (works offline)")
    return 0


class _CallableModule(types.ModuleType):
    """``attnflow.view(dir)`` works whether ``attnflow.view`` names this module (after
    ``import attnflow.view``) or not: calling the module calls show()."""

    def __call__(self, run_or_dir, height: int = 720, **limits):
        return show(run_or_dir, height, **limits)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
