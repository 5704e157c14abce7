"""Plots never dominate a command and sweeps plot against the user's first
axis: the CLI starts Python only when there is something to plot, --no-plots
exists on every command, trajectories draw a bounded number of tokens, cluster counts that span
decades get a log axis."""
import json
import os
import re
import subprocess

import numpy as np
import pytest

from attnflow import plot
from conftest import SOURCE_DIR


def python_marker_env(tmp_path):
    """An environment in which every start of a Python interpreter leaves a file behind: a
    sitecustomize.py on PYTHONPATH (imported by the interpreter before anything else)."""
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "python_started"
    (site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    return {"PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}"}, marker


def test_cli_and_plot_module_agree_on_the_files_that_are_plotted():
    text = (SOURCE_DIR / "cli" / "plot_hook.cpp").read_text()
    block = text[text.index("kPlottedFiles = {"):]
    block = block[:block.index("};")]
    assert tuple(re.findall(r'"([^"]+)"', block)) == plot.PLOTTED_FILES


def test_ot_without_anything_to_plot_never_starts_python(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 2)))
    np.save(tmp_path / "y.npy", rng.normal(size=(30, 2)))
    env, marker = python_marker_env(tmp_path)
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--eps", "0.5",
                "--out", tmp_path / "ot", env=env)
    assert r.returncode == 0, r.stderr
    assert not marker.exists(), "python was started with nothing to plot"
    assert "plots" not in r.stdout
    # With the dense plan there is something to draw: one Python start, one PNG.
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--eps", "0.5", "--plan",
                "--out", tmp_path / "ot_plan", env=env)
    assert r.returncode == 0, r.stderr
    if "plots skipped" in r.stdout:
        pytest.fail("the CLI did not find the package (ATTNFLOW_CLI from another build)")
    assert marker.read_text() == "x", "one python start, not one per check"
    assert "plots: 1 PNG file written" in r.stdout and (tmp_path / "ot_plan" / "plan.png").exists()
    # --no-plots on a command that has no flag of its own, and ATTNFLOW_NO_PLOTS=1.
    marker.unlink()
    for extra, env2 in ((["--no-plots"], env), ([], {**env, "ATTNFLOW_NO_PLOTS": "1"})):
        out = tmp_path / f"ot_plan_{len(extra)}"
        r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--eps", "0.5", "--plan",
                    "--out", out, *extra, env=env2)
        assert r.returncode == 0, r.stderr
        assert not marker.exists() and not (out / "plan.png").exists()


def test_threads_wait_passively_unless_the_user_chose(cli, tmp_path):
    # The CLI restarts itself with OMP_WAIT_POLICY=passive when it is unset (libgomp reads it
    # at load time); its plot hook's Python inherits the environment, which shows it.
    site = tmp_path / "site"
    site.mkdir()
    seen = tmp_path / "seen"
    (site / "sitecustomize.py").write_text(
        f"import os\nopen({str(seen)!r}, 'a').write(os.environ.get('OMP_WAIT_POLICY', 'unset') + ';')\n")
    np.save(tmp_path / "x.npy", np.random.default_rng(2).normal(size=(20, 2)))
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base["PYTHONPATH"] = f"{site}:{os.environ.get('PYTHONPATH', '')}"
    for policy, expect in ((None, "passive"), ("active", "active")):
        env = dict(base, **({"OMP_WAIT_POLICY": policy} if policy else {}))
        r = subprocess.run([cli, "ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "x.npy", "--eps", "1", "--plan",
                            "--out", tmp_path / f"ot_{expect}"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert seen.read_text().split(";")[-2] == expect


def subcommands(run_cli, *parents):
    text = run_cli(*parents, "--help").stdout
    section = text.split("Subcommands:")[1] if "Subcommands:" in text else ""
    return re.findall(r"^  (\S+)", section, flags=re.M)


def test_every_command_accepts_no_plots(run_cli):
    commands = subcommands(run_cli)
    assert {"run", "ot", "demo", "sweep", "attention", "theory"} <= set(commands)
    checked = 0
    for c in commands:
        subs = subcommands(run_cli, c)
        for path in ([c, s] for s in subs) if subs else [[c]]:
            assert "--no-plots" in run_cli(*path, "--help").stdout, path
            checked += 1
    assert checked >= len(commands)


def test_trajectories_draw_a_bounded_number_of_tokens():
    rng = np.random.default_rng(1)
    n = 3000
    for d in (2, 3):
        snaps = rng.normal(size=(500, n, d))
        snaps /= np.linalg.norm(snaps, axis=2, keepdims=True)
        fig = plot.trajectories(snaps, np.arange(500.0), clusters=7)
        ax = fig.axes[0]
        fig.canvas.draw()  # 3-D segments are projected when drawn
        paths = [seg for c in ax.collections if c.get_gid() == "trajectories" for seg in c.get_segments()]
        assert len(paths) == plot.MAX_TOKENS
        assert all(1 < len(p) <= plot.MAX_FRAMES for p in paths)
        title = (fig.axes[1] if d == 2 else ax).get_title()
        assert f"{plot.MAX_TOKENS} of {n} tokens drawn" in title and title.startswith("7 clusters")


def test_cluster_counts_spanning_decades_get_a_log_axis():
    t = np.arange(0.0, 10.0)
    table = {"t": t, "system": np.zeros_like(t), "clusters": np.round(256 * 0.5 ** t) + 2,
             "log_energy": t, "mean_cosine": t / 10, "order": t / 10}
    fig = plot.observables(table)
    scales = {ax.get_ylabel(): ax.get_yscale() for ax in fig.axes}
    assert scales["clusters"] == "log" and scales["log energy  log E_beta"] == "linear"
    table["clusters"] = np.array([5.0, 5, 4, 4, 4, 3, 3, 3, 3, 3])
    assert {ax.get_ylabel(): ax.get_yscale() for ax in plot.observables(table).axes}["clusters"] == "linear"


def test_radius_panel_only_when_the_radius_moves():
    t = np.arange(0.0, 5.0)
    table = {"t": t, "system": np.zeros_like(t), "clusters": np.full_like(t, 3.0),
             "radius_mean": 1 - 1e-16 * t, "radius_min": 1 - 1e-16 * t, "radius_max": np.ones_like(t)}
    labels = [ax.get_ylabel() for ax in plot.observables(table).axes]
    assert not any("radius" in lab for lab in labels)
    table.update(radius_mean=1 + t, radius_min=1 + 0.5 * t, radius_max=1 + 2 * t)  # pre-LN: r grows
    labels = [ax.get_ylabel() for ax in plot.observables(table).axes]
    assert any("radius" in lab for lab in labels)


def test_sweep_runs_and_plots_against_the_first_axis_of_the_file(run_cli, tmp_path):
    # model.beta is listed first: it is the slow axis and the plotted one.
    cfg = tmp_path / "s.toml"
    cfg.write_text("[measure]\nn = 8\nd = 3\n[integrate]\nt_end = 0.5\n[observe]\nevery = 0.5\n"
                   "[output]\nsnapshots = false\n"
                   "[sweep]\nmodel.beta = [1, 2, 3, 4, 5]\nmeasure.seed = [0, 1, 2, 3]\n")
    out = tmp_path / "sweep"
    r = run_cli("sweep", cfg, "--out", out, "--quiet", "--no-plots", "--set", "sweep.observe.delta=[0.1, 0.2]")
    assert r.returncode == 0, r.stderr
    assert "over model.beta (5) measure.seed (4) observe.delta (2)" in r.stdout
    table = plot.read_csv(str(out / "sweep.csv"))
    assert plot.sweep_keys(table) == ["model.beta", "measure.seed", "observe.delta"]
    assert list(table["model.beta"][:3]) == [1.0, 1.0, 1.0]  # beta varies slowest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["axis_order"] == ["model.beta", "measure.seed", "observe.delta"]
    fig = plot.sweep_final(table)
    assert {ax.get_xlabel() for ax in fig.axes} == {"model.beta"}
