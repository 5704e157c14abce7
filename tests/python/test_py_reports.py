"""The library's reports are the objects the CLI formats: solve_ot gives what `attnflow ot`
writes (report.json, f.npy, g.npy, plan.npy) and clusters_report what `attnflow theory
clusters` prints, key for key and bit for bit (the wall time aside)."""
import json

import numpy as np
import pytest

from attnflow import _attnflow as ext


@pytest.fixture
def clouds(tmp_path):
    rng = np.random.default_rng(5)
    arrays = dict(x=rng.standard_normal((14, 3)), y=rng.standard_normal((11, 3)) + 0.3,
                  a=rng.uniform(0.1, 1.0, 14), b=rng.uniform(0.1, 1.0, 11))
    files = {}
    for name, arr in arrays.items():
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], arr)
    return arrays, files


def without_time(report):
    report = dict(report)
    assert report.pop("seconds") >= 0.0
    return report


@pytest.mark.parametrize("method_args, kwargs", [
    (["--eps", "0.3", "--tol", "1e-11", "--plan"], dict(eps=0.3, tol=1e-11, plan=True)),
    (["--eps", "0.3", "--no-eps-scaling", "--max-iter", "7"],
     dict(eps=0.3, eps_scaling=False, max_iterations=7)),
    (["--exact", "--cost", "euclidean", "--plan"], dict(exact=True, cost="euclidean", plan=True)),
])
def test_solve_ot_is_the_cli_report(run_cli, clouds, tmp_path, method_args, kwargs):
    arrays, files = clouds
    out = tmp_path / "out"
    r = run_cli("ot", "--x", files["x"], "--y", files["y"], "--a", files["a"], "--b", files["b"],
                *method_args, "--out", out)
    assert r.returncode == 0, r.stderr
    cli = json.loads((out / "report.json").read_text())
    mu = ext.Measure(arrays["x"], arrays["a"])
    nu = ext.Measure(arrays["y"], arrays["b"])
    rep = ext.solve_ot(mu, nu, **kwargs)
    assert without_time(json.loads(rep.to_json())) == without_time(cli)
    # The object's fields are the report's keys.
    assert (rep.method, rep.cost, rep.iterations, rep.converged) == (
        cli["method"], cli["cost"], cli["iterations"], cli["converged"])
    assert (rep.n, rep.m, rep.dim, rep.has_plan) == (14, 11, 3, cli["plan"])
    np.testing.assert_array_equal(rep.f, np.load(out / "f.npy"))
    np.testing.assert_array_equal(rep.g, np.load(out / "g.npy"))
    if rep.has_plan:
        np.testing.assert_array_equal(rep.plan, np.load(out / "plan.npy"))
    else:
        assert rep.plan.size == 0 and not (out / "plan.npy").exists()


def test_solve_ot_defaults_and_errors_come_from_the_library():
    mu = ext.Measure(np.random.default_rng(1).standard_normal((3, 2)))
    with pytest.raises(ValueError, match=r"ot: eps = 0, must be > 0 \(or use exact\)"):
        ext.solve_ot(mu, mu)
    with pytest.raises(ValueError, match="ot: cost = \"cosine\", must be sqeuclidean or euclidean"):
        ext.solve_ot(mu, mu, eps=1.0, cost="cosine")
    rep = ext.solve_ot(mu, mu, eps=1.0)
    assert rep.tol == ext.SinkhornOptions().tol
    assert rep.eps_scaling == ext.SinkhornOptions().scaling


@pytest.mark.parametrize("beta, k_max", [(8.0, 0), (3.5, 5), (ext.kUsaBetaMax, 4), (750.0, 4)])
def test_clusters_report_is_the_cli_json(run_cli, beta, k_max):
    r = run_cli("theory", "clusters", "--d", 2, "--beta", repr(beta), "--k-max", k_max)
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    rep = ext.clusters_report(beta, k_max)
    assert json.loads(rep.to_json()) == cli
    assert rep.predicted_clusters == cli["predicted_clusters"] and len(rep.modes) == len(cli["modes"])
    # USA rates stop at kUsaBetaMax, where I_0(beta) ~ e^beta still fits a double.
    usa = beta <= ext.kUsaBetaMax
    assert all(m.has_growth_rate_usa == usa for m in rep.modes)
    assert all(("growth_rate_usa" in m) == usa for m in cli["modes"])


@pytest.mark.parametrize("direct", [False, True])
def test_long_context_report_is_the_cli_json(run_cli, direct):
    args = ["theory", "long-context", "--n", 2000, "--rho", 0.4, "--gamma", 1.2] + (["--direct"] if direct else [])
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    rep = ext.long_context(2000, 0.4, 1.2, direct=direct)
    assert json.loads(rep.to_json()) == cli
    assert rep.has_direct == direct and ("cosine_direct" in cli) == direct
    if direct:
        assert rep.cosine_direct == pytest.approx(rep.cosine, rel=1e-9)


def test_long_context_direct_refuses_a_size_it_cannot_hold():
    with pytest.raises(ValueError, match=r"theory long-context: n = 200000000, must be an integer <= 1e8 with direct"):
        ext.long_context(2e8, 0.5, 1.0, direct=True)
    assert not ext.long_context(2e8, 0.5, 1.0).has_direct  # the formula alone takes any n
