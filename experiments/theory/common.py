"""Shared helpers for the theory experiments: find and call the attnflow CLI, read its CSV and
JSON, write results (CSV + summary.json) atomically. Only the standard library and NumPy."""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def cli_path():
    env = os.environ.get("ATTNFLOW_CLI")
    if env:
        return env
    for build in ("build", "build-theory"):
        p = ROOT / build / "attnflow"
        if p.exists():
            return str(p)
    sys.exit("attnflow CLI not found: build it (make) or set ATTNFLOW_CLI")


def attnflow(*args, capture=True):
    """Runs the CLI; returns stdout. Raises with stderr on failure."""
    r = subprocess.run([cli_path(), *map(str, args)], capture_output=capture, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"attnflow {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r.stdout


def load_config(name):
    with open(HERE / name / "config.toml", "rb") as f:
        return tomllib.load(f)


def read_csv(path):
    """CSV with a header -> dict of column name -> float array."""
    with open(path) as f:
        rows = list(csv.reader(f))
    data = np.array(rows[1:], dtype=float).reshape(len(rows) - 1, len(rows[0]))
    return {name: data[:, i] for i, name in enumerate(rows[0])}


def write_atomic(path, text):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
    os.replace(tmp, path)


def write_table(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    write_atomic(path, buf.getvalue())


def write_summary(name, fields):
    version = attnflow("--version").strip().split()[-1]
    summary = {"kind": f"theory-{name}", "attnflow_version": version, **fields}
    write_atomic(HERE / name / "summary.json", json.dumps(summary, indent=2) + "\n")


def run_flow(config_text, out_dir, sets=()):
    """attnflow run on a TOML text; returns observables.csv as columns."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    cfg = out_dir.parent / (out_dir.name + ".toml")
    write_atomic(cfg, config_text)
    # One thread: these systems are small, and results do not depend on the thread count.
    args = ["run", cfg, "--out", out_dir, "--no-plots", "--quiet", "--threads", 1]
    for s in sets:
        args += ["--set", s]
    attnflow(*args)
    return read_csv(out_dir / "observables.csv")


def equiangular_ode(model, n, beta, rho0, t_end, samples=2001, scheme="post-ln", extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eq.csv"
        attnflow("theory", "equiangular", "--model", model, "--scheme", scheme, "--n", n,
                 "--beta", beta, "--rho0", rho0, "--t-end", t_end, "--samples", samples,
                 "--out", out, *extra)
        return read_csv(out)


# Runner config for an SA ensemble on the sphere from uniform data (metastability, phase diagram).
SA_SPHERE_RUN = """
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
