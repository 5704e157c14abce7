"""attnflow run / demo end to end: the output directory, the Euler + retraction trajectory
against an independent dense NumPy implementation of the published step, bad configs named
by key with nothing left behind, and a killed run (SIGKILL or the test hook) resumed equal
to an uninterrupted one, byte for byte."""
import json
import os
import tomllib

import numpy as np
import pytest
from conftest import kill_after_first_checkpoint

# The CLI (tiled online softmax) and NumPy (materialized scores) do the same float64
# arithmetic in different orders; 20 Euler steps keep the difference near round-off.
TRAJ_TOL = 1e-11

SMALL = """
[measure]
n = 20
d = 3
seed = 5
[model]
kind = "sa"
beta = 4.0
[integrate]
method = "euler"
dt = 0.1
t_end = 2.0
[observe]
every = 0.5
delta = 0.05
[output]
checkpoint_every = 1
"""


def write(tmp_path, text, name="run.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def dense_sa_euler(x, beta, dt, steps):
    """The published NumPy step: exp(beta X X^T), row-normalize, multiply, Euler, renormalize."""
    for _ in range(steps):
        s = beta * x @ x.T
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        a = p @ x
        v = a - np.sum(a * x, axis=1, keepdims=True) * x
        x = x + dt * v
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def read_rows(path):
    lines = path.read_text().splitlines()
    return lines[0].split(","), [list(map(float, l.split(","))) for l in lines[1:]]


def same_tree(a, b):
    """Every file equal byte for byte (summary.json up to its wall-clock seconds)."""
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in names:
        if rel.name == "summary.json":
            ja, jb = json.loads((a / rel).read_text()), json.loads((b / rel).read_text())
            ja.pop("seconds"), jb.pop("seconds")
            assert ja == jb
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize("cmd", ["run", "sweep", "demo"])
def test_help(run_cli, cmd):
    r = run_cli(cmd, "--help")
    assert r.returncode == 0 and "--out" in r.stdout


def test_default_config_is_complete_commented_and_runs(run_cli, tmp_path):
    r = run_cli("run", "--print-default-config")
    assert r.returncode == 0
    doc = tomllib.loads(r.stdout)
    for section, keys in {"measure": "n d init rho0 file seed systems",
                          "model": "kind beta heads qkv scheme sphere kappa",
                          "integrate": "method dt t_end rtol atol",
                          "observe": "every delta", "output": "snapshots checkpoint_every"}.items():
        for k in keys.split():
            assert k in doc[section], (section, k)
    assert r.stdout.count("#") > 30  # every key commented
    cfg = write(tmp_path, r.stdout, "default.toml")
    out = tmp_path / "d"
    r = run_cli("run", cfg, "--out", out, "--set", "measure.n=8", "--set", "integrate.t_end=0.5",
                "--no-plots")
    assert r.returncode == 0, r.stderr
    assert tomllib.loads((out / "config.toml").read_text())["measure"]["n"] == 8


def test_run_writes_outputs_and_matches_dense_numpy_euler(run_cli, tmp_path):
    out = tmp_path / "out"
    r = run_cli("run", write(tmp_path, SMALL), "--out", out, "--no-plots")
    assert r.returncode == 0, r.stderr
    for f in ["config.toml", "observables.csv", "final.npy", "summary.json", "snapshots/snap_000004.npy"]:
        assert (out / f).exists(), f
    assert not (out / "checkpoint.bin").exists()
    header, rows = read_rows(out / "observables.csv")
    assert header[:2] == ["t", "system"] and "energy" in header and "clusters" in header
    assert [r[0] for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    energy = [r[header.index("energy")] for r in rows]
    assert all(b >= a for a, b in zip(energy, energy[1:]))  # E_beta non-decreasing along SA
    x0 = np.load(out / "snapshots/snap_000000.npy")
    fin = np.load(out / "final.npy")
    assert fin.shape == (20, 3)
    np.testing.assert_allclose(fin, dense_sa_euler(x0, 4.0, 0.1, 20), rtol=TRAJ_TOL, atol=TRAJ_TOL)
    # Energy of docs/math.md section 5 from the dense final state.
    e_ref = np.exp(4.0 * fin @ fin.T).sum() / (2 * 4.0 * 20 ** 2)
    assert abs(energy[-1] - e_ref) <= 1e-12 * e_ref
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "run" and s["status"] == "finished" and s["steps"] == 20
    assert "attnflow_version" in s and s["final"][0]["clusters"] >= 1


def test_ensemble_final_shape_and_rows(run_cli, tmp_path):
    out = tmp_path / "ens"
    r = run_cli("run", write(tmp_path, SMALL), "--out", out, "--set", "measure.systems=3",
                "--set", "output.snapshots=false", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert np.load(out / "final.npy").shape == (3, 20, 3)
    _, rows = read_rows(out / "observables.csv")
    assert [int(r[1]) for r in rows[:3]] == [0, 1, 2] and len(rows) == 15
    assert not (out / "snapshots").exists()


def test_large_ensemble_prints_one_line_of_ranges(run_cli, tmp_path):
    """More than 8 systems: one line with each observable's min..max over the systems at the
    final time (equal to the final rows of observables.csv), not a line per system."""
    out = tmp_path / "ens"
    r = run_cli("run", write(tmp_path, SMALL), "--out", out, "--set", "measure.systems=12",
                "--set", "output.snapshots=false", "--no-plots", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and "system 0:" not in r.stdout, r.stdout
    assert lines[0].startswith("t = 2, 12 systems (min..max over the systems"), lines[0]
    assert "ensemble.csv, final.npy" in lines[1]
    header, rows = read_rows(out / "observables.csv")
    final = [row for row in rows if float(row[0]) == 2.0]
    assert len(final) == 12
    col = header.index("log_energy")
    lo, hi = min(float(row[col]) for row in final), max(float(row[col]) for row in final)
    assert lo < hi
    assert f" log_energy {lo:.6g}..{hi:.6g} " in lines[0], lines[0]


@pytest.mark.parametrize("override,text", [
    ("model.betaa=2", "unknown key 'model.betaa'"),
    ("integrate.dt=-0.1", "integrate.dt = -0.1, must be > 0"),
    ("measure.n=0", "measure.n = 0, must be >= 1"),
    ("observe.delta=2.5", "observe.delta = 2.5, must be in (0, 2)"),
    ("observe.delta=0", "observe.delta = 0, must be in (0, 2)"),
])
def test_bad_configs_name_the_key_and_leave_nothing(run_cli, tmp_path, override, text):
    out = tmp_path / "never"
    r = run_cli("run", write(tmp_path, SMALL), "--out", out, "--set", override)
    assert r.returncode != 0
    assert r.stderr.startswith("attnflow: error: ") and text in r.stderr, r.stderr
    assert not out.exists()


def test_existing_run_is_not_overwritten(run_cli, tmp_path):
    cfg, out = write(tmp_path, SMALL), tmp_path / "o"
    assert run_cli("run", cfg, "--out", out, "--no-plots").returncode == 0
    r = run_cli("run", cfg, "--out", out, "--no-plots")
    assert r.returncode != 0 and "already holds a run" in r.stderr
    r = run_cli("run", cfg, "--out", out, "--resume", "--no-plots")
    assert r.returncode == 0 and "already finished" in r.stdout


def test_stopped_run_resumed_equals_uninterrupted(run_cli, tmp_path):
    cfg = write(tmp_path, SMALL)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("run", cfg, "--out", whole, "--no-plots").returncode == 0
    r = run_cli("run", cfg, "--out", cut, "--no-plots", env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "2"})
    assert r.returncode == 3 and "continue with --resume" in r.stdout
    assert (cut / "checkpoint.bin").exists() and not (cut / "final.npy").exists()
    r = run_cli("run", cfg, "--out", cut, "--resume", "--no-plots")
    assert r.returncode == 0, r.stderr
    same_tree(whole, cut)


def test_sigkilled_run_resumed_equals_uninterrupted(cli, run_cli, tmp_path):
    text = SMALL.replace("n = 20", "n = 150").replace("t_end = 2.0", "t_end = 30.0") \
        .replace("every = 0.5", "every = 0.1").replace("dt = 0.1", "dt = 0.01")
    cfg = write(tmp_path, text)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("run", cfg, "--out", whole, "--no-plots", "--threads", "1").returncode == 0
    kill_after_first_checkpoint([cli, "run", cfg, "--out", cut, "--no-plots", "--threads", "1"], cut)
    r = run_cli("run", cfg, "--out", cut, "--resume", "--no-plots", "--threads", "2")
    assert r.returncode == 0, r.stderr
    for f in list(cut.glob("*.tmp.*")) + list(cut.glob("snapshots/*.tmp.*")):
        f.unlink()  # a temporary file of the killed process's interrupted atomic write
    same_tree(whole, cut)


def test_demo_prints_clusters_and_energy_and_writes_the_directory(run_cli, tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", out, "--set", "integrate.t_end=8")
    assert r.returncode == 0, r.stderr
    assert "clusters" in r.stdout and "energy" in r.stdout
    lines = [l.split() for l in r.stdout.splitlines() if l.strip()[:1].isdigit()]
    assert len(lines) == 3 and int(lines[-1][1]) < int(lines[0][1])  # clusters form: fewer components
    assert "plots" in r.stdout  # the plot hook ran (plots written, or skipped with its reason)
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "run" and s["n"] == 256 and s["d"] == 3
    assert np.load(out / "final.npy").shape == (256, 3)
    # A second demo replaces its own previous output; a foreign directory is refused.
    assert run_cli("demo", "--out", out, "--set", "integrate.t_end=0.1", "--no-plots").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    r = run_cli("demo", "--out", other, "--no-plots")
    assert r.returncode != 0 and "not a previous demo's output" in r.stderr and (other / "keep.txt").exists()


FLOAT32 = SMALL.replace("n = 20", "n = 12\nsystems = 40").replace('method = "euler"', 'method = "rk4"') \
    + '[compute]\nprecision = "float32"\n'


def test_float32_ensemble_resumed_equals_uninterrupted_and_says_its_precision(run_cli, tmp_path):
    """compute.precision = float32 on the CPU: the batched ensemble in single precision. Its
    states are floats, close to float64's; a stopped run resumed on another thread count is
    byte for byte the uninterrupted one; the summary says float32."""
    cfg = write(tmp_path, FLOAT32)
    whole, cut, f64 = tmp_path / "whole", tmp_path / "cut", tmp_path / "f64"
    assert run_cli("run", cfg, "--out", whole, "--no-plots", "--threads", "1").returncode == 0
    r = run_cli("run", cfg, "--out", cut, "--no-plots", "--threads", "2",
                env={"ATTNFLOW_STOP_AFTER_CHECKPOINTS": "2"})
    assert r.returncode == 3 and "continue with --resume" in r.stdout
    r = run_cli("run", cfg, "--out", cut, "--resume", "--no-plots", "--threads", "1")
    assert r.returncode == 0, r.stderr
    same_tree(whole, cut)
    s = json.loads((whole / "summary.json").read_text())
    assert s["ensemble_precision"] == "float32" and s["precision"] == "float64" and s["batched"]
    x32 = np.load(whole / "final.npy")
    assert np.array_equal(x32.astype(np.float32).astype(np.float64), x32)  # float values
    r = run_cli("run", write(tmp_path, FLOAT32.replace('"float32"', '"float64"'), "f64.toml"), "--out", f64,
                "--no-plots")
    assert r.returncode == 0, r.stderr
    x64 = np.load(f64 / "final.npy")
    assert 0 < np.abs(x32 - x64).max() < 2e-6  # float rounding over 20 rk4 steps (measured 3e-7)


@pytest.mark.parametrize("override, rule", [
    ('kind = "sinkhorn"', "SA or USA"),  # replaces kind = "sa"
    ('method = "dopri5"', "batched path"),
])
def test_float32_refused_where_it_cannot_run(run_cli, tmp_path, override, rule):
    text = FLOAT32.replace('kind = "sa"', override) if "kind" in override else FLOAT32.replace('method = "rk4"', override)
    out = tmp_path / "o"
    r = run_cli("run", write(tmp_path, text), "--out", out, "--no-plots")
    assert r.returncode != 0
    assert "compute.precision" in r.stderr and "float32" in r.stderr and rule in r.stderr, r.stderr
    assert not out.exists()
