"""attnflow.plot renders without a display: every plot kind to a valid PNG, `python3 -m
attnflow.plot DIR` on directories of each kind (synthetic files in the formats the commands
write, and a real `attnflow run`), unknown kinds noted, never a crash."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import attnflow
from attnflow import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert os.path.exists(path), path
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    import matplotlib.image

    img = matplotlib.image.imread(path)  # decodes the whole file
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def write_run_dir(directory, systems=1, d=2, n=12, kind="run"):
    os.makedirs(os.path.join(directory, "snapshots"), exist_ok=True)
    rng = np.random.default_rng(0)
    flow_opts = attnflow.FlowOptions()
    flow_opts.beta = 4.0
    flow = attnflow.Flow(flow_opts, n, d)
    times = [0.0, 1.0, 2.0, 4.0, 8.0]
    rows, snaps = [], []
    for s in range(systems):
        x = attnflow.sample_sphere(n, d, attnflow.Rng(s))
        st, fs, sys_snaps = flow.initial_state(x), flow.initial_flow_state(), []
        for t in times:
            st = flow.advance(st, fs, t, attnflow.IntegratorOptions("rk4", 0.1))
            pos = flow.positions(st)
            sys_snaps.append(pos)
            o = attnflow.observe(pos, None, attnflow.ObserveOptions(4.0, 1e-2), t)
            rows.append([t, s] + attnflow.observable_values(o))
        snaps.append(sys_snaps)
    snaps = np.array(snaps)  # (systems, T, n, d)
    for k in range(len(times)):
        np.save(os.path.join(directory, "snapshots", f"snap_{k:06d}.npy"),
                snaps[0, k] if systems == 1 else snaps[:, k])
    np.save(os.path.join(directory, "final.npy"), snaps[0, -1] if systems == 1 else snaps[:, -1])
    header = ",".join(["t", "system"] + attnflow.observable_names())
    np.savetxt(os.path.join(directory, "observables.csv"), np.array(rows), delimiter=",",
               header=header, comments="")
    summary = {"kind": kind, "attnflow_version": attnflow.__version__, "n": n, "d": d,
               "beta": 4.0, "model": "sa", "observation_times": times, "converged": True}
    with open(os.path.join(directory, "summary.json"), "w") as fh:
        json.dump(summary, fh)


def run_module(directory):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, "-m", "attnflow.plot", str(directory)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_module_entry_point_on_a_run_directory(tmp_path):
    # The one subprocess test: `python3 -m attnflow.plot DIR` without a display (circle, d = 2).
    write_run_dir(tmp_path, d=2)
    r = run_module(tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    for name in ("observables.png", "trajectories.png"):
        assert_png(tmp_path / name)
    assert "warning" not in r.stdout


@pytest.mark.parametrize("d", [3, 5])
def test_sphere_and_projected_trajectories(tmp_path, d):
    write_run_dir(tmp_path, d=d)
    got = plot.plot_directory(str(tmp_path), strict=True)
    assert sorted(os.path.basename(p) for p in got) == ["observables.png", "trajectories.png"]
    assert_png(tmp_path / "trajectories.png")


def test_ensemble_bands(tmp_path):
    write_run_dir(tmp_path, systems=10, d=3, n=6)
    assert sorted(plot.plot_directory(str(tmp_path), strict=True)) == [
        str(tmp_path / "observables.png"), str(tmp_path / "trajectories.png")]
    assert_png(tmp_path / "observables.png")


def test_tables_matrices_phase_and_theory(tmp_path):
    steps = np.arange(1, 51)
    np.savetxt(tmp_path / "loss.csv", np.c_[steps, 1 / steps], delimiter=",", header="step,loss", comments="")
    np.savetxt(tmp_path / "risk.csv", np.c_[steps, 2 / steps, 1 / steps], delimiter=",",
               header="step,risk,risk_infinite", comments="")
    L = np.array([10, 30, 100, 300, 1000])
    np.savetxt(tmp_path / "concentration.csv", np.c_[L, 1 / L, 2 / L], delimiter=",",
               header="L,error_out,error_grad_u", comments="")
    x = attnflow.sample_sphere(15, 2, attnflow.Rng(1))
    cost = attnflow.TransportCost.sqeuclidean(x, x)
    np.save(tmp_path / "plan.npy", attnflow.transport_plan(cost, attnflow.sinkhorn(x, x, eps=0.1)))
    betas, ts = np.array([0.5, 1.0, 2.0, 4.0]), np.array([0.0, 1.0, 2.0, 5.0, 10.0])
    bb, tt = np.meshgrid(betas, ts)
    np.savetxt(tmp_path / "phase.csv", np.c_[bb.ravel(), tt.ravel(), (tt / (tt + bb)).ravel()],
               delimiter=",", header="beta,t,probability", comments="")
    with open(tmp_path / "summary.json", "w") as fh:
        json.dump({"kind": "theory-long-context", "rho": 0.5, "gamma": 1.5, "cosine": 0.6, "n": 32,
                   "delta": 1e-3}, fh)
    got = plot.plot_directory(str(tmp_path), strict=True)
    names = sorted(os.path.basename(p) for p in got)
    assert names == ["concentration.png", "long_context.png", "loss.png", "phase.png", "plan.png", "risk.png"]
    for p in got:
        assert_png(p)


def test_sweep_phase_diagram(tmp_path):
    # sweep.csv as run_sweep writes it: point, grid keys, then observables.csv's columns.
    names = attnflow.observable_names()
    rows, point = [], 0
    for beta in (0.5, 1.0, 2.0):
        for seed in (0, 1):
            for t in (0.0, 1.0, 2.0):
                vals = dict.fromkeys(names, 0.5)
                vals["clustered_pairs"] = t / (t + beta)
                rows.append([point, beta, seed, t, 0] + [vals[n] for n in names])
            point += 1
    header = ",".join(["point", "model.beta", "measure.seed", "t", "system"] + names)
    np.savetxt(tmp_path / "sweep.csv", np.array(rows), delimiter=",", header=header, comments="")
    with open(tmp_path / "summary.json", "w") as fh:
        json.dump({"kind": "sweep"}, fh)
    got = plot.plot_directory(str(tmp_path), strict=True)
    assert sorted(os.path.basename(p) for p in got) == ["phase_diagram.png", "sweep_final.png"]
    for p in got:
        assert_png(p)


def test_unknown_kind_and_missing_directory_do_not_crash(tmp_path, capsys):
    with open(tmp_path / "summary.json", "w") as fh:
        json.dump({"kind": "something-new"}, fh)
    assert plot.main([str(tmp_path)]) == 0
    assert "unknown kind 'something-new'" in capsys.readouterr().out
    assert plot.main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_library_functions_return_figures(tmp_path):
    pi = np.random.default_rng(0).uniform(size=(8, 9))
    fig = plot.heatmap(pi, str(tmp_path / "h.png"), log=True)
    assert fig.axes and (tmp_path / "h.png").exists()
    fig = plot.long_context(0.3, str(tmp_path / "lc.png"))
    assert_png(tmp_path / "lc.png")
    labels = plot.cluster_labels(np.array([[1.0, 0], [1.0, 1e-4], [-1.0, 0]]), 1e-3)
    assert list(labels) == [0, 0, 1]


def test_cli_run_writes_pngs(run_cli, tmp_path):
    if "\n  run" not in run_cli("--help").stdout:
        pytest.fail("no run subcommand in this build")
    out = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text(run_cli("run", "--print-default-config").stdout)
    r = run_cli("run", cfg, "--quiet", "--set", "measure.n=16", "--set", "measure.d=2", "--set", "integrate.t_end=2",
                "--set", "observe.every=0.5", "--out", out,
                env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert r.returncode == 0, r.stderr
    if "plots skipped" in r.stdout:
        pytest.fail("the CLI did not find the package (ATTNFLOW_CLI from another build)")
    assert_png(out / "observables.png")
    assert_png(out / "trajectories.png")


def test_icl_largeprompt_and_fit_job_directories(tmp_path):
    # Real outputs of the `icl`, `largeprompt` and `fit` jobs (through the bindings, small sizes).
    cfg = attnflow.Config.parse(attnflow.default_icl_config_toml(), "icl")
    for s in ("train.prompt=20", "train.steps=15", "train.batch=8", "eval.prompts=0", "data.d=3"):
        cfg.set(s)
    attnflow.run_icl(attnflow.parse_icl_config(cfg), cfg.resolved(), str(tmp_path / "icl"))
    assert [os.path.basename(p) for p in plot.plot_directory(str(tmp_path / "icl"), strict=True)] == ["risk.png"]
    assert_png(tmp_path / "icl" / "risk.png")
    cfg = attnflow.Config.parse(attnflow.default_largeprompt_config_toml(), "largeprompt")
    for s in ("experiment.lengths=[8, 32, 128]", "experiment.prompts=4", "experiment.queries=4"):
        cfg.set(s)
    attnflow.run_largeprompt(attnflow.parse_largeprompt_config(cfg), cfg.resolved(), str(tmp_path / "lp"))
    got = plot.plot_directory(str(tmp_path / "lp"), strict=True)
    assert [os.path.basename(p) for p in got] == ["concentration.png"]
    assert_png(got[0])
    cfg = attnflow.Config.parse(attnflow.default_fit_config_toml(), "fit")
    for s in ("task.train_size=8", "task.test_size=4", "task.n_min=4", "task.n_max=6",
              "train.steps=10", "train.eval_every=2", "train.batch_size=4", "model.depth=1"):
        cfg.set(s)
    attnflow.run_fit(attnflow.parse_fit_config(cfg), cfg.resolved(), str(tmp_path / "fit"))
    got = plot.plot_directory(str(tmp_path / "fit"), strict=True)
    assert [os.path.basename(p) for p in got] == ["loss.png"]
    assert_png(got[0])
