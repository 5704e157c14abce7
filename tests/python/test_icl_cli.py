"""attnflow icl / largeprompt end to end (docs/math.md section 7): output files and columns, the
infinite-prompt ODE against an independent NumPy integration of the same flow, the closed-form
risk and fixed point, config errors naming the key, no output left behind on failure."""
import json
import tomllib

import numpy as np
import pytest

# The CLI's RK4 (dt = lr) and this NumPy RK4 take the same steps in float64: rounding only.
ODE_TOL = 1e-9
# Conservation of |A|_F^2 - b^2 under RK4 with dt = 0.0025 (O(dt^4) drift, ~2e-10).
BALANCE_TOL = 2e-9
# Closed forms evaluated by the CLI and by NumPy: rounding only.
EXACT_TOL = 1e-10


def toeplitz(d, rho):
    i = np.arange(d)
    return rho ** np.abs(i[:, None] - i[None, :])


def flow(state, s):
    """The flow of docs/math.md section 7.4:
    dA/dt = b S^2 - b^2 S^2 A S, db/dt = tr(A^T S^2) - b tr(A^T S^2 A S)."""
    a, b = state
    s2 = s @ s
    return (b * s2 - b * b * s2 @ a @ s, np.trace(a.T @ s2) - b * np.trace(a.T @ s2 @ a @ s))


def rk4(a, b, s, dt, steps):
    for _ in range(steps):
        k1 = flow((a, b), s)
        k2 = flow((a + dt / 2 * k1[0], b + dt / 2 * k1[1]), s)
        k3 = flow((a + dt / 2 * k2[0], b + dt / 2 * k2[1]), s)
        k4 = flow((a + dt * k3[0], b + dt * k3[1]), s)
        a = a + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        b = b + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return a, b


def risk(a, b, s):
    m = b * s @ a - np.eye(len(s))
    return 0.5 * np.trace(m @ s @ m.T)


@pytest.fixture
def config(tmp_path, run_cli):
    text = run_cli("icl", "--print-default-config", check=True).stdout
    tomllib.loads(text)  # the printed default is valid TOML
    path = tmp_path / "icl.toml"
    path.write_text(text)
    return path


def read_csv(path):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return header, np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def test_finite_prompt_training_writes_outputs(config, tmp_path, run_cli):
    out = tmp_path / "sgd"
    r = run_cli("icl", config, "--out", out, "--set", "train.steps=30", "--set", "train.prompt=50",
                "--set", "train.batch=16", "--set", "eval.prompts=64", "--set", "data.d=3",
                "--no-plots", "--threads", "2")
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(out / "risk.csv")
    assert header[:2] == ["step", "time"] and "risk" in header
    assert rows.shape[0] == 30 and rows[0, 0] == 0 and rows[-1, 0] == 29
    final = json.loads((out / "final.json").read_text())
    a, b = np.array(final["A"]), final["b"]
    assert a.shape == (3, 3)
    s = toeplitz(3, 0.5)
    assert final["risk_infinite"] == pytest.approx(risk(a, b, s), rel=EXACT_TOL)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "icl" and summary["attnflow_version"]
    assert summary["finite"] is True and summary["prompt"] == 50
    assert summary["risk_eval"]["mean"] > 0
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["train"]["steps"] == 30 and resolved["data"]["d"] == 3


def test_same_seed_same_result_on_1_and_2_threads(config, tmp_path, run_cli):
    finals = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        r = run_cli("icl", config, "--out", out, "--set", "train.steps=5", "--set", "train.prompt=200",
                    "--set", "train.batch=8", "--set", "eval.prompts=0", "--threads", threads, "--no-plots")
        assert r.returncode == 0, r.stderr
        finals.append((out / "final.json").read_text())
    assert finals[0] == finals[1]


def test_infinite_prompt_reaches_the_fixed_point(config, tmp_path, run_cli):
    out = tmp_path / "ode"
    r = run_cli("icl", config, "--out", out, "--set", "train.prompt=infinite", "--set", "train.steps=4000",
                "--set", "train.lr=0.05", "--set", "train.ode_dt=0.0025", "--set", "model.init_scale=0.5",
                "--set", "train.log_every=100",
                "--no-plots")
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(out / "risk.csv")
    final = json.loads((out / "final.json").read_text())
    a, b = np.array(final["A"]), final["b"]
    s = toeplitz(5, 0.5)
    # The balanced start stays balanced: |A|_F^2 - b^2 is conserved up to RK4's O(dt^4)
    # error (3e-5 at dt = 0.05, so ~2e-10 at dt = 0.0025).
    assert np.max(np.abs(rows[:, header.index("balance")])) < BALANCE_TOL
    # The risk column is the closed-form R(A, b), here checked at the final state.
    assert rows[-1, header.index("risk")] == pytest.approx(risk(a, b, s), rel=1e-8, abs=1e-15)
    # Fixed point: b = tr(S^-2)^(1/4), A = S^-1 / b, reached by t = 200 (b S A = I).
    si = np.linalg.inv(s)
    b_star = np.trace(si @ si) ** 0.25
    assert final["fixed_point"]["b"] == pytest.approx(b_star, rel=EXACT_TOL)
    np.testing.assert_allclose(np.array(final["fixed_point"]["A"]), si / b_star, rtol=EXACT_TOL, atol=EXACT_TOL)
    assert b == pytest.approx(b_star, rel=1e-4)
    np.testing.assert_allclose(b * s @ a, np.eye(5), atol=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt"] == "infinite" and summary["converged"] is True


def test_infinite_prompt_trajectory_matches_numpy(tmp_path, run_cli):
    # A covariance file; the 100-step run must equal the 60-step run continued by NumPy's
    # RK4 of the flow of docs/math.md section 7.4, 40 steps (an independent implementation).
    s = np.array([[1.0, 0.3], [0.3, 0.8]])
    np.save(tmp_path / "s.npy", s)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nd = 2\ncovariance_file = "{tmp_path / "s.npy"}"\n'
                   '[train]\nprompt = "infinite"\nsteps = 100\nlr = 0.02\n[model]\ninit_scale = 0.4\n')
    out = tmp_path / "o"
    r = run_cli("icl", cfg, "--out", out, "--no-plots")
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(out / "risk.csv")
    final = json.loads((out / "final.json").read_text())
    out2 = tmp_path / "o2"
    r = run_cli("icl", cfg, "--out", out2, "--set", "train.steps=60", "--no-plots")
    assert r.returncode == 0, r.stderr
    mid = json.loads((out2 / "final.json").read_text())
    a, b = rk4(np.array(mid["A"]), mid["b"], s, 0.02, 40)
    np.testing.assert_allclose(a, np.array(final["A"]), rtol=ODE_TOL, atol=ODE_TOL)
    assert b == pytest.approx(final["b"], rel=ODE_TOL)
    assert rows[0, header.index("risk")] > rows[-1, header.index("risk")]


@pytest.mark.parametrize("assignment, message", [
    ("train.lr=-1", "train.lr = -1, must be > 0"),
    ("train.prompt=abc", "train.prompt = abc, must be a prompt length >= 1 or \"infinite\""),
    ("train.batch=0", "train.batch = 0, must be >= 1"),
    ("data.noise=-0.5", "data.noise = -0.5, must be >= 0"),
    ("data.covariance_file=\"/nonexistent.npy\"", "data.covariance_file = \"/nonexistent.npy\""),
    ("train.stepz=3", "unknown key 'train.stepz'"),
    ("model.kind=\"relu\"", "model = \"relu\", must be one of softmax, linear"),
])
def test_bad_config_names_the_key(config, tmp_path, run_cli, assignment, message):
    out = tmp_path / "bad"
    r = run_cli("icl", config, "--out", out, "--set", assignment, "--no-plots")
    assert r.returncode != 0
    assert r.stderr.startswith("attnflow: error: ")
    assert message in r.stderr, r.stderr
    assert not out.exists()


def test_largeprompt_concentration(tmp_path, run_cli):
    text = run_cli("largeprompt", "--print-default-config", check=True).stdout
    tomllib.loads(text)
    cfg = tmp_path / "lp.toml"
    cfg.write_text(text)
    for law in ("gaussian", "rademacher"):
        out = tmp_path / law
        r = run_cli("largeprompt", cfg, "--out", out, "--set", f'tokens.law="{law}"',
                    "--set", "experiment.lengths=[16, 64, 256, 1024]", "--set", "experiment.prompts=8",
                    "--set", "experiment.queries=4", "--no-plots")
        assert r.returncode == 0, r.stderr
        header, rows = read_csv(out / "concentration.csv")
        assert header[:4] == ["L", "output_error", "grad_u_error", "grad_v_error"]
        assert list(rows[:, 0]) == [16, 64, 256, 1024]
        assert rows[-1, 1] < rows[0, 1]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["kind"] == "largeprompt" and summary["law"] == law
        fit = summary["slopes"]["output_error"]
        assert fit["lower"] <= fit["slope"] <= fit["upper"]
        # The slope is the least-squares slope of the written table.
        slope = np.polyfit(np.log(rows[:, 0]), np.log(rows[:, 1]), 1)[0]
        assert fit["slope"] == pytest.approx(slope, rel=1e-9)
    r = run_cli("largeprompt", cfg, "--out", tmp_path / "bad", "--set", 'tokens.law="cauchy"')
    assert r.returncode != 0 and 'tokens: law = "cauchy", must be one of gaussian, rademacher' in r.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("prompt", ["100", "infinite"])
def test_divergence_is_an_error_naming_the_step_and_never_a_nan(config, tmp_path, run_cli, prompt):
    # train.lr = 100 wrote NaN into risk.csv and "finite": true; now the run
    # fails (status 1) naming the step, and what it keeps is finite and says so.
    out = tmp_path / f"lr100_{prompt}"
    r = run_cli("icl", config, "--out", out, "--set", "train.lr=100", "--set", f"train.prompt={prompt}",
                "--set", "train.steps=40", "--set", "train.batch=16", "--set", "data.d=3", "--no-plots")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads((out / "summary.json").read_text())
    step = summary["diverged_step"]
    assert isinstance(step, int) and 0 <= step < 40
    assert f"diverged at step {step}" in r.stderr and "lr = 100 is too large" in r.stderr
    assert summary["finite"] is False and summary["converged"] is False
    assert f"diverged at step {step}" in summary["message"]
    _, rows = read_csv(out / "risk.csv")
    assert rows.shape[0] >= 1 and np.all(np.isfinite(rows)) and np.all(rows[:, 0] <= step)
    assert "NaN" not in (out / "final.json").read_text() and "null" not in (out / "final.json").read_text()


def test_converged_is_false_when_training_stops_far_from_the_fixed_point(config, tmp_path, run_cli):
    out = tmp_path / "short"
    r = run_cli("icl", config, "--out", out, "--set", "train.steps=2", "--set", "train.prompt=infinite",
                "--set", "train.lr=0.01", "--set", "data.d=3", "--no-plots")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finite"] is True and summary["diverged_step"] is None
    assert summary["converged"] is False and summary["bsa_minus_identity"] > 1e-3


def test_python_objects_carry_the_status(tmp_path):
    import attnflow

    cfg = attnflow.Config.parse(attnflow.default_icl_config_toml(), "icl")
    for s in ("train.prompt=infinite", "train.steps=40", "train.lr=100", "data.d=3"):
        cfg.set(s)
    rc = attnflow.parse_icl_config(cfg)
    summary = attnflow.run_icl(rc, cfg.resolved(), str(tmp_path / "icl"))
    assert summary.finished and summary.finite is False and summary.converged is False
    assert summary.diverged_step >= 0 and f"diverged at step {summary.diverged_step}" in summary.message
    on_disk = json.loads((tmp_path / "icl" / "summary.json").read_text())
    assert on_disk["diverged_step"] == summary.diverged_step and on_disk["finite"] is False
