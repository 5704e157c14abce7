"""attnflow view (no browser here; see test_view_browser.py): the page is self-contained, and the
data it embeds is what the run wrote, checked against the run's files read independently
(positions within the 16-bit quantization, times, observables, final clusters by an independent
union-find, the PCA projection for d > 3 by an eigendecomposition, the equiangular theory curve
against the particles' mean cosine); large runs are decimated under the documented size;
ensembles and sweeps list their systems / points; bad input is named."""
import base64
import csv
import json
import math
import os
import re
import sys
import types

import numpy as np
import pytest

SMALL = """
[measure]
n = 24
d = 3
seed = 3
[model]
kind = "sa"
beta = 6.0
[integrate]
method = "euler"
dt = 0.1
t_end = 4.0
[observe]
every = 0.5
delta = 0.05
"""

MAX_MB = 8.0  # docs/usage/view.md: the page stays under 8 MB


def page_data(path):
    """The JSON the page embeds (the <script type="application/json"> element)."""
    text = open(path, encoding="utf-8").read()
    m = re.search(r'<script type="application/json" id="attnflow-data">(.*?)</script>', text, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1).replace("<\\/", "</")), text


def positions(entry):
    q = np.frombuffer(base64.b64decode(entry["positions"]), dtype="<i2").astype(float)
    return (q * entry["scale"] / 32767.0).reshape(len(entry["times"]), entry["n_shown"], entry["dim"])


def components(x, delta):
    """Independent reference: union-find over pairs with cosine > 1 - delta; a partition as a
    set of frozensets of token indices."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    parent = list(range(len(x)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if float(xn[i] @ xn[j]) > 1.0 - delta:
                parent[find(i)] = find(j)
    groups = {}
    for i in range(len(x)):
        groups.setdefault(find(i), set()).add(i)
    return {frozenset(g) for g in groups.values()}


def read_obs(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows


def make_run(run_cli, tmp_path, name, text=SMALL, sets=()):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    out = tmp_path / name
    args = ["run", cfg, "--out", out, "--no-plots", "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, cli):
    import subprocess

    tmp = tmp_path_factory.mktemp("view")
    cfg = tmp / "small.toml"
    cfg.write_text(SMALL)
    out = tmp / "small"
    subprocess.run([cli, "run", cfg, "--out", out, "--no-plots", "--quiet"], check=True, capture_output=True)
    return out


def test_view_writes_a_self_contained_page_of_the_run(run_cli, small_run, tmp_path):
    out = tmp_path / "page.html"
    r = run_cli("view", small_run, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and str(out) in r.stdout
    data, text = page_data(out)
    # Nothing loaded from elsewhere: every script is inline, no stylesheet links, no iframes.
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link\b", text, re.I) and "<iframe" not in text
    assert "Plotly" in text and "attnflowViewer" in text
    assert data["kind"] == "run" and len(data["entries"]) == 1
    e = data["entries"][0]
    summary = json.loads((small_run / "summary.json").read_text())
    snaps = sorted((small_run / "snapshots").glob("snap_*.npy"))
    x = np.array([np.load(s) for s in snaps])
    assert e["view"] == "sphere" and e["dim"] == 3 and e["n_shown"] == 24 and e["stride"] == 1
    assert np.allclose(e["times"], summary["observation_times"], rtol=0, atol=1e-9)
    assert np.max(np.abs(positions(e) - x)) <= 1.0 / 32767 + 1e-12
    # Observables as written (energy, clusters, mean cosine of system 0 at each time).
    rows = read_obs(small_run / "observables.csv")
    assert np.allclose(e["obs"]["t"], [float(r["t"]) for r in rows])
    assert np.allclose(e["obs"]["energy"], [float(r["energy"]) for r in rows], rtol=1e-7)
    assert e["obs"]["clusters"] == [float(r["clusters"]) for r in rows]
    assert np.allclose(e["obs"]["mean_cosine"], [float(r["mean_cosine"]) for r in rows], rtol=1e-7, atol=1e-12)
    # Colors: the final clusters, the same partition as the reference's.
    labels = np.array(e["labels"])
    got = {frozenset(np.nonzero(labels == k)[0].tolist()) for k in set(labels.tolist())}
    assert got == components(x[-1], 0.05)
    assert e["clusters_final"] == len(got) == int(float(rows[-1]["clusters"]))
    assert e["theory"] is None  # uniform initial measure: no equiangular curve
    assert os.path.getsize(out) < MAX_MB * 1e6


def test_view_default_out_is_run_dir_view_html(run_cli, small_run):
    r = run_cli("view", small_run)
    assert r.returncode == 0, r.stderr
    assert (small_run / "view.html").exists()


def test_view_projects_d_above_3_onto_top_principal_directions(run_cli, tmp_path):
    run = make_run(run_cli, tmp_path, "d6", sets=["measure.d=6", "integrate.t_end=1.0"])
    r = run_cli("view", run)
    assert r.returncode == 0, r.stderr
    data, _ = page_data(run / "view.html")
    e = data["entries"][0]
    assert e["view"] == "pca" and e["dim"] == 3
    assert "top 3 principal directions of the final state" in e["projection"]
    final = np.load(run / "final.npy")
    y = positions(e)[-1]
    # Reference: the projection onto the top-3 eigenvectors of the final state's covariance
    # keeps the 3 largest eigenvalues' worth of centered variance, and preserves the inner
    # products with those eigenvectors (up to a sign per direction).
    c = final - final.mean(0)
    w, v = np.linalg.eigh(c.T @ c)
    top = v[:, np.argsort(w)[::-1][:3]]
    ref = final @ top
    for k in range(3):
        sign = np.sign(ref[:, k] @ y[:, k])
        assert np.max(np.abs(sign * ref[:, k] - y[:, k])) < 1e-3
    frac = np.sort(w)[::-1][:3].sum() / w.sum()
    assert f"{100 * frac:.1f}%" in e["projection"]


def test_view_circle_for_d2(run_cli, tmp_path):
    run = make_run(run_cli, tmp_path, "d2", sets=["measure.d=2"])
    assert run_cli("view", run).returncode == 0
    e = page_data(run / "view.html")[0]["entries"][0]
    assert e["view"] == "circle" and e["dim"] == 2


def test_view_equiangular_run_has_the_theory_curve_matching_the_particles(run_cli, tmp_path):
    # n tokens with all pairwise cosines rho0 stay equiangular; the library's ODE solution
    # rho(t) must track the particles' mean cosine (Euler dt = 0.01: error O(dt)).
    text = SMALL.replace('seed = 3', 'seed = 3\ninit = "equiangular"\nrho0 = 0.1').replace("n = 24", "n = 5") \
        .replace("d = 3", "d = 6").replace("dt = 0.1", "dt = 0.01").replace("beta = 6.0", "beta = 1.0")
    run = make_run(run_cli, tmp_path, "equi", text=text)
    assert run_cli("view", run).returncode == 0
    e = page_data(run / "view.html")[0]["entries"][0]
    th = e["theory"]
    assert th and "equiangular" in th["label"]
    rows = read_obs(run / "observables.csv")
    t = np.array([float(r["t"]) for r in rows])
    mc = np.array([float(r["mean_cosine"]) for r in rows])
    interp = np.interp(t, th["t"], th["mean_cosine"])
    assert abs(th["mean_cosine"][0] - 0.1) < 1e-12
    assert np.max(np.abs(interp - mc)) < 1e-2
    assert mc[-1] - mc[0] > 0.3  # the curve moves: the comparison is not vacuous


def test_view_ensemble_lists_every_system(run_cli, tmp_path):
    run = make_run(run_cli, tmp_path, "ens", sets=["measure.systems=3"])
    assert run_cli("view", run).returncode == 0
    data, _ = page_data(run / "view.html")
    assert data["kind"] == "ensemble" and [e["label"] for e in data["entries"]] == [
        "system 0", "system 1", "system 2"]
    final = np.load(run / "final.npy")
    for s, e in enumerate(data["entries"]):
        assert np.max(np.abs(positions(e)[-1] - final[s])) <= 1.0 / 32767 + 1e-12
    rows = read_obs(run / "observables.csv")
    mc2 = [float(r["mean_cosine"]) for r in rows if r["system"] == "2"]
    assert np.allclose(data["entries"][2]["obs"]["mean_cosine"], mc2, rtol=1e-7, atol=1e-12)


def test_view_sweep_lists_every_point(run_cli, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL.replace("t_end = 4.0", "t_end = 1.0") + "[sweep]\nmodel.beta = [1.0, 9.0]\nmeasure.seed = [0, 1]\n")
    out = tmp_path / "sweep"
    r = run_cli("sweep", cfg, "--out", out, "--no-plots", "--quiet", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("view", out, "--out", tmp_path / "sweep.html")
    assert r.returncode == 0, r.stderr
    data, _ = page_data(tmp_path / "sweep.html")
    assert data["kind"] == "sweep"
    labels = [e["label"] for e in data["entries"]]
    assert len(labels) == 4
    assert labels[3] == "point 3: model.beta = 9.0, measure.seed = 1"  # axes in the file's order
    final = np.load(out / "points" / "point_000003" / "final.npy")
    assert np.max(np.abs(positions(data["entries"][3])[-1] - final)) <= 1.0 / 32767 + 1e-12


def write_fake_large_run(d, n=100_000, frames=11, seed=0):
    """A run directory as attnflow run writes it for n = 1e5 (experiments/large_n.toml: pair
    observables skipped), with positions drawn here (running the dynamics would take minutes)."""
    rng = np.random.default_rng(seed)
    (d / "snapshots").mkdir(parents=True)
    x = rng.normal(size=(n, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    times = []
    rows = ["t,system,log_energy,energy,mean_cosine,min_cosine,clusters,largest_cluster,clustered_pairs,order"]
    for k in range(frames):
        np.save(d / "snapshots" / f"snap_{k:06d}.npy", x)
        final = x
        times.append(0.1 * k)
        rows.append(f"{0.1 * k},0,{0.5 - k * 0.01},{math.exp(0.5 - k * 0.01)},{0.01 * k},2,-1,-1,-1,{0.1 * k}")
        x = x + 0.05 * np.array([0.0, 0.0, 1.0])
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(d / "final.npy", final)
    (d / "observables.csv").write_text("\n".join(rows) + "\n")
    (d / "summary.json").write_text(json.dumps({"kind": "run", "status": "finished", "observation_times": times}))
    (d / "config.toml").write_text('[measure]\nn = 100000\nd = 3\n[model]\nkind = "sa"\nbeta = 1.0\n'
                                   '[observe]\ndelta = 0.01\npair_limit = 20000\n')
    return final


def test_view_large_run_is_decimated_and_stays_under_the_size_limit(run_cli, tmp_path):
    run = tmp_path / "large"
    final = write_fake_large_run(run)
    r = run_cli("view", run)
    assert r.returncode == 0, r.stderr
    size = os.path.getsize(run / "view.html")
    assert size < MAX_MB * 1e6, size
    data, _ = page_data(run / "view.html")
    e = data["entries"][0]
    assert e["n"] == 100_000 and e["n_shown"] == 2000 and e["stride"] == 50
    assert any("showing 2000 of 100000 tokens" in n for n in data["notes"])
    assert np.max(np.abs(positions(e)[-1] - final[::50])) <= 1.0 / 32767 + 1e-12
    assert "clusters" not in e["obs"]  # skipped pair pass (-1): not drawn as a count


def test_view_frame_budget_caps_long_runs(tmp_path):
    from attnflow import view

    run = tmp_path / "long"
    write_fake_large_run(run, n=300, frames=50)
    data = view.prepare(str(run), max_frames=7)
    e = data["entries"][0]
    assert len(e["times"]) == 7 and e["times"][0] == 0.0 and abs(e["times"][-1] - 4.9) < 1e-9
    assert any("showing 7 of 50 snapshots" in n for n in data["notes"])


def test_view_errors_name_the_problem(run_cli, tmp_path):
    r = run_cli("view", tmp_path / "missing")
    assert r.returncode != 0 and "missing" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "summary.json").write_text('{"kind": "ot"}')
    r = run_cli("view", empty)
    assert r.returncode != 0
    assert "no snapshots/snap_*.npy and no final.npy (kind 'ot')" in r.stderr
    assert not (empty / "view.html").exists()
    r = run_cli("view", empty, "--max-frames", "1")
    assert r.returncode != 0 and "--max-frames" in r.stderr


def test_jupyter_view_displays_the_page_in_an_iframe(small_run, monkeypatch):
    # A stand-in for IPython.display (not a dependency of attnflow): records what is displayed.
    shown = []
    fake = types.ModuleType("IPython.display")
    fake.HTML = type("HTML", (), {"__init__": lambda self, data: setattr(self, "data", data)})
    fake.display = lambda obj: shown.append(obj)
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", fake)
    import attnflow

    obj = attnflow.view(str(small_run), height=500)
    assert shown == [obj]
    assert obj.data.startswith("<iframe srcdoc=") and "height:500px" in obj.data
    import html as _html

    src = _html.unescape(re.search(r'srcdoc="(.*?)"', obj.data, re.S).group(1))
    assert "attnflow-data" in src and "Plotly" in src
    # attnflow.view stays callable after the submodule is imported explicitly.
    import attnflow.view  # noqa: F401

    assert callable(attnflow.view) and attnflow.view.write_html


def test_plot_functions_return_matplotlib_figures(small_run):
    from matplotlib.figure import Figure

    from attnflow import plot

    snaps = np.array([np.load(p) for p in sorted((small_run / "snapshots").glob("snap_*.npy"))])
    assert isinstance(plot.trajectories(snaps), Figure)
    assert isinstance(plot.observables(plot.read_csv(str(small_run / "observables.csv"))), Figure)
