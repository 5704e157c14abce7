"""attnflow ot end to end: report.json / summary.json / f.npy / g.npy / plan.npy against a dense
NumPy log-domain Sinkhorn written here (independent of the library) and a brute-force
assignment for --exact; every bad input gives "attnflow: error: ..." and leaves no output."""
import json
import itertools

import numpy as np
import pytest


def dense_sinkhorn(c, a, b, eps, tol=1e-13, max_iter=100000):
    """Plan of min <C, pi> + eps KL(pi | a b^T), log domain, plain NumPy."""
    f, g = np.zeros(len(a)), np.zeros(len(b))

    def lse(m, axis):
        mx = m.max(axis=axis, keepdims=True)
        return (mx + np.log(np.exp(m - mx).sum(axis=axis, keepdims=True))).squeeze(axis)

    for _ in range(max_iter):
        f = -eps * lse(np.log(b)[None, :] + (g[None, :] - c) / eps, 1)
        g = -eps * lse(np.log(a)[:, None] + (f[:, None] - c) / eps, 0)
        plan = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - c) / eps)
        if np.abs(plan.sum(1) - a).sum() < tol:
            break
    return plan


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 3))
    y = rng.standard_normal((17, 3)) + 0.5
    a = rng.uniform(0.1, 1.0, 24)
    b = rng.uniform(0.1, 1.0, 17)
    files = {}
    for name, arr in dict(x=x, y=y, a=a, b=b).items():
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], arr)
    return dict(x=x, y=y, a=a / a.sum(), b=b / b.sum(), files=files, dir=tmp_path)


def test_sinkhorn_report_potentials_and_plan(run_cli, data):
    f = data["files"]
    out = data["dir"] / "out"
    eps = 0.5
    r = run_cli("ot", "--x", f["x"], "--y", f["y"], "--a", f["a"], "--b", f["b"], "--eps", eps,
                "--tol", 1e-12, "--plan", "--out", out, "--threads", 2)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert json.loads((out / "summary.json").read_text()) == rep
    assert rep["kind"] == "ot" and rep["method"] == "sinkhorn" and "attnflow_version" in rep
    for key in ["cost", "objective", "iterations", "marginal_error", "converged", "eps"]:
        assert key in rep
    assert rep["converged"] and rep["marginal_error"] <= 1e-12 and rep["eps"] == eps
    c = ((data["x"][:, None, :] - data["y"][None, :, :]) ** 2).sum(-1)
    ref = dense_sinkhorn(c, data["a"], data["b"], eps)
    plan = np.load(out / "plan.npy")
    # Both converged to 1e-12; entries are O(1e-3).
    np.testing.assert_allclose(plan, ref, rtol=0, atol=1e-11)
    assert rep["cost"] == pytest.approx((ref * c).sum(), rel=1e-10)
    fpot, gpot = np.load(out / "f.npy"), np.load(out / "g.npy")
    # The plan is a_i b_j exp((f_i + g_j - C_ij) / eps) (potentials in cost units).
    rebuilt = data["a"][:, None] * data["b"][None, :] * np.exp((fpot[:, None] + gpot[None, :] - c) / eps)
    np.testing.assert_allclose(rebuilt, plan, rtol=1e-9, atol=0)
    # Progress: an iteration whose marginal error is not measured (eps scaling) says so, never "nan".
    assert "ot: iteration 1, eps " in r.stderr and "marginal error not measured yet" in r.stderr, r.stderr
    assert "nan" not in r.stderr.lower(), r.stderr


def test_exact_matches_brute_force(run_cli, tmp_path):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    best = min(sum(c[i, s[i]] for i in range(6)) / 6 for s in itertools.permutations(range(6)))
    out = tmp_path / "exact"
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--exact", "--plan", "--out", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"] == "exact" and rep["converged"]
    assert rep["cost"] == pytest.approx(best, rel=1e-10)
    assert rep["w2"] == pytest.approx(np.sqrt(best), rel=1e-10)
    plan = np.load(out / "plan.npy")
    np.testing.assert_allclose(plan.sum(1), np.full(6, 1 / 6), atol=1e-11)


@pytest.mark.parametrize("args, message", [
    (["--eps", "-0.1"], "ot: --eps = -0.1, must be > 0 (or use --exact)"),
    (["--eps", "0"], "ot: --eps = 0, must be > 0 (or use --exact)"),
    ([], "ot: --eps = 0, must be > 0 (or use --exact)"),
    (["--eps", "0.1", "--tol", "0"], "sinkhorn: tol = 0, must be > 0"),
    (["--eps", "0.1", "--cost", "cosine"], "ot: --cost = \"cosine\", must be sqeuclidean or euclidean"),
    (["--eps", "0.1", "--a", "NEG"], "ot: source (--x, --a): weights[0] = -1, must be >= 0"),
    (["--eps", "0.1", "--b", "ZERO"], "ot: target (--y, --b): total weight = 0, must be > 0"),
    (["--eps", "0.1", "--y", "Y2D"], "ot: --x has dimension 3 and --y has dimension 2, must be equal"),
    (["--eps", "0.1", "--x", "XNAN"], "ot: source (--x, --a): points[1, 2] = nan, must be finite"),
    (["--eps", "0.1", "--a", "ASHORT"], "weights size = 3, must equal the number of points (24)"),
])
def test_bad_input_messages_and_no_output(run_cli, data, args, message):
    d = data["dir"]
    a = np.ones(24)
    a[0] = -1
    xn = data["x"].copy()
    xn[1, 2] = np.nan
    bad = {"NEG": a, "ZERO": np.zeros(17), "Y2D": np.zeros((17, 2)), "XNAN": xn, "ASHORT": np.ones(3)}
    for name, arr in bad.items():
        np.save(d / f"{name}.npy", arr)
    files = {"--x": data["files"]["x"], "--y": data["files"]["y"]}
    rest = []
    for flag, value in zip(args[::2], args[1::2]):
        value = d / f"{value}.npy" if value in bad else value
        if flag in files:
            files[flag] = value
        else:
            rest += [flag, value]
    out = d / "bad"
    r = run_cli("ot", "--x", files["--x"], "--y", files["--y"], *rest, "--out", out)
    assert r.returncode != 0
    assert r.stderr.startswith("attnflow: error: "), r.stderr
    assert message in r.stderr, r.stderr
    assert not out.exists()


def test_plan_size_guard_and_exclusive_options(run_cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5001, 1)))
    np.save(tmp_path / "y.npy", np.zeros((5000, 1)))
    out = tmp_path / "big"
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--eps", 1, "--plan", "--out", out)
    assert r.returncode != 0
    assert "ot: --plan with n * m = 5001 * 5000 = 25005000, must be <= 25000000" in r.stderr
    assert not out.exists()
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--exact", "--out", out)
    assert r.returncode != 0 and "exact_ot: n * m = 5001 * 5000 = 25005000, must be <= 4000000" in r.stderr
    assert not out.exists()
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--exact", "--eps", 1, "--out", out)
    assert r.returncode != 0 and r.stderr.startswith("attnflow: error: ") and "excludes" in r.stderr
    assert not out.exists()


def test_help_and_attention_sinkhorn_cli(run_cli, data):
    r = run_cli("ot", "--help")
    assert r.returncode == 0 and "--eps" in r.stdout and "--exact" in r.stdout and "--plan" in r.stdout
    # attention --normalization sinkhorn --sinkhorn-iters 1 is softmax exactly.
    f = data["files"]
    outs = {}
    for name, extra in {"softmax": [], "sk1": ["--normalization", "sinkhorn", "--sinkhorn-iters", 1]}.items():
        path = data["dir"] / f"{name}.npy"
        r = run_cli("attention", "--x", f["x"], "--y", f["y"], "--beta", 0.7, "--out", path, *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = np.load(path)
    assert np.array_equal(outs["softmax"], outs["sk1"])
