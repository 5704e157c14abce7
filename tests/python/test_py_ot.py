"""attnflow.sinkhorn / exact OT from Python against independent dense NumPy references
(docs/math.md section 3): marginals, costs, the entropic objective, divergences, plans, W_p by
brute force over permutations, and the library's error texts as ValueError."""
import itertools

import numpy as np
import pytest

import attnflow

# The solver stops at tol on sum_i |sum_j pi_ij - a_i|; the reference runs to machine precision.
TOL = 1e-10
# Cost and objective: float64 streaming reductions vs the dense reference at the same tolerance.
COST_RTOL = 1e-8


def dense_sinkhorn(c, a, b, eps, iters=2000):
    """Plain log-domain Sinkhorn of docs/math.md section 3 on a dense cost (the reference)."""
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(iters):
        t = (g[None, :] - c) / eps + np.log(b)[None, :]
        f = -eps * (t.max(1) + np.log(np.exp(t - t.max(1, keepdims=True)).sum(1)))
        t = (f[:, None] - c) / eps + np.log(a)[:, None]
        g = -eps * (t.max(0) + np.log(np.exp(t - t.max(0, keepdims=True)).sum(0)))
    return a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - c) / eps)


@pytest.fixture
def clouds():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((17, 2)), rng.standard_normal((13, 2)) + 0.5
    a, b = rng.uniform(0.2, 1, 17), rng.uniform(0.2, 1, 13)
    return x, y, a / a.sum(), b / b.sum()


def test_sinkhorn_matches_dense_reference(clouds):
    x, y, a, b = clouds
    eps = 0.3
    r = attnflow.sinkhorn(x, y, a, b, eps=eps, tol=1e-12)
    assert r.converged and r.iterations > 0 and r.marginal_error <= 1e-12
    c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    pi = dense_sinkhorn(c, a, b, eps)
    np.testing.assert_allclose(r.cost, (pi * c).sum(), rtol=COST_RTOL)
    kl = (pi * np.log(pi / (a[:, None] * b[None, :]))).sum()
    np.testing.assert_allclose(r.objective, (pi * c).sum() + eps * kl, rtol=COST_RTOL)
    assert r.f.shape == (17,) and r.g.shape == (13,)
    # The plan from the potentials (f, g in cost units) has both marginals.
    plan = a[:, None] * b[None, :] * np.exp((r.f[:, None] + r.g[None, :] - c) / eps)
    np.testing.assert_allclose(plan.sum(1), a, atol=TOL)
    np.testing.assert_allclose(plan.sum(0), b, atol=TOL)
    np.testing.assert_allclose(plan, pi, atol=1e-9)
    cost = attnflow.TransportCost.sqeuclidean(x, y)
    np.testing.assert_allclose(attnflow.transport_plan(cost, r), pi, atol=1e-9)
    np.testing.assert_allclose(attnflow.barycentric_map(cost, r, y), (pi / a[:, None]) @ y, atol=1e-9)


def test_three_call_forms_agree(clouds):
    x, y, a, b = clouds
    opt = attnflow.SinkhornOptions()
    opt.eps, opt.tol = 0.5, 1e-11
    r1 = attnflow.sinkhorn(x, y, a, b, eps=0.5, tol=1e-11)
    r2 = attnflow.sinkhorn(attnflow.Measure(x, a), attnflow.Measure(y, b), opt)
    r3 = attnflow.sinkhorn(a, b, attnflow.TransportCost.sqeuclidean(x, y), opt)
    assert r1.cost == r2.cost == r3.cost and r1.iterations == r2.iterations == r3.iterations


def test_sinkhorn_equals_cli_bit_for_bit(run_cli, clouds, tmp_path):
    x, y, a, b = clouds
    if "\n  ot " not in run_cli("--help").stdout:
        pytest.fail("the ot subcommand is not in this build")
    for n, arr in dict(x=x, y=y, a=a, b=b).items():
        np.save(tmp_path / f"{n}.npy", arr)
    out = tmp_path / "ot"
    r = run_cli("ot", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy", "--a", tmp_path / "a.npy",
                "--b", tmp_path / "b.npy", "--eps", 0.3, "--tol", 1e-12, "--plan", "--out", out)
    assert r.returncode == 0, r.stderr
    import json

    s = json.loads((out / "summary.json").read_text())
    py = attnflow.sinkhorn(x, y, a, b, eps=0.3, tol=1e-12)
    assert s["kind"] == "ot" and s["cost"] == py.cost and s["iterations"] == py.iterations
    assert np.array_equal(np.load(out / "f.npy"), py.f) and np.array_equal(np.load(out / "g.npy"), py.g)
    plan = attnflow.transport_plan(attnflow.TransportCost.sqeuclidean(x, y), py)
    assert np.array_equal(np.load(out / "plan.npy"), plan)


def test_divergence_is_zero_iff_equal(clouds):
    x, y, a, b = clouds
    same = attnflow.sinkhorn_divergence(x, x, a, a, eps=1.0, tol=1e-11)
    diff = attnflow.sinkhorn_divergence(x, y, a, b, eps=1.0, tol=1e-11)
    assert same.converged and diff.converged
    assert abs(same.value) < 1e-9 and diff.value > 1e-3
    np.testing.assert_allclose(diff.value, diff.ot_xy - diff.ot_xx / 2 - diff.ot_yy / 2, rtol=1e-12)


def test_exact_ot_and_wasserstein_match_brute_force():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    # Uniform equal-size OT: an optimal plan is a permutation (Birkhoff).
    best2 = min(d2[range(6), p].mean() for p in itertools.permutations(range(6)))
    best1 = min(np.sqrt(d2[range(6), p]).mean() for p in itertools.permutations(range(6)))
    r = attnflow.exact_ot(np.full(6, 1 / 6), np.full(6, 1 / 6), d2)
    assert r.converged
    np.testing.assert_allclose(r.cost, best2, rtol=1e-10)
    np.testing.assert_allclose(r.dense_plan().sum(0), np.full(6, 1 / 6), atol=1e-11)
    np.testing.assert_allclose(attnflow.wasserstein(x, y, 2) ** 2, best2, rtol=1e-10)
    np.testing.assert_allclose(attnflow.wasserstein(x, y, 1), best1, rtol=1e-10)
    # eps -> 0: the entropic cost tends to the exact one (docs/math.md section 1.5, fact 2).
    e = attnflow.sinkhorn(x, y, eps=1e-3, tol=1e-9, max_iterations=100000)
    assert abs(e.cost - best2) < 1e-2


@pytest.mark.parametrize("call, text", [
    (lambda x, y: attnflow.sinkhorn(x, y, eps=-0.1), "sinkhorn: eps = -0.1, must be > 0"),
    (lambda x, y: attnflow.sinkhorn(x, y), "sinkhorn: eps = None, must be > 0"),
    (lambda x, y: attnflow.sinkhorn(x, y, eps=0.1, tol=0.0), "sinkhorn: tol = 0, must be > 0"),
    (lambda x, y: attnflow.sinkhorn(x, y[:, :1], eps=0.1), "dimension"),
    (lambda x, y: attnflow.sinkhorn(x, y, a=-np.ones(17), eps=0.1), "weights[0] = -"),
    (lambda x, y: attnflow.wasserstein(x, y, 3), "p = 3"),
])
def test_errors_are_value_errors_with_text(clouds, call, text):
    x, y, _, _ = clouds
    with pytest.raises(ValueError) as e:
        call(x, y)
    assert text in str(e.value)


def test_non_convergence_is_a_status_not_an_exception(clouds):
    x, y, a, b = clouds
    r = attnflow.sinkhorn(x, y, a, b, eps=1e-3, tol=1e-14, max_iterations=3, eps_scaling=False)
    assert not r.converged and r.iterations == 3 and r.marginal_error > 1e-14 and r.message


def test_overrelaxed_sinkhorn_matches_dense_reference_in_fewer_iterations():
    # eps = 0.01 of the max cost of points in the unit square: plain Sinkhorn contracts by about
    # 0.9 per iteration there (docs/math.md section 3.3, over-relaxation).
    rng = np.random.default_rng(3)
    x, y = rng.random((150, 2)), rng.random((120, 2))
    a, b = np.full(150, 1 / 150), np.full(120, 1 / 120)
    eps = 0.02
    plain = attnflow.sinkhorn(x, y, eps=eps, tol=1e-9)
    fast = attnflow.sinkhorn(x, y, eps=eps, tol=1e-9, overrelax=1.6)
    assert plain.converged and fast.converged
    assert fast.iterations - fast.stages < (plain.iterations - plain.stages) / 2, (plain.iterations, fast.iterations)
    c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    pi = dense_sinkhorn(c, a, b, eps, iters=5000)
    plan = a[:, None] * b[None, :] * np.exp((fast.f[:, None] + fast.g[None, :] - c) / eps)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-15)  # columns exact: a plain g-update last
    assert abs(np.abs(plan.sum(1) - a).sum() - fast.marginal_error) < 1e-12
    assert np.abs(plan - pi).sum() < 1e-8
    np.testing.assert_allclose(fast.cost, (pi * c).sum(), rtol=1e-7)
    # POT's call shape takes it too, and the options object carries it.
    r = attnflow.sinkhorn(a, b, c, 0.02, tol=1e-9, overrelax=1.6)
    assert r.iterations == fast.iterations and r.converged
    opt = attnflow.SinkhornOptions()
    opt.eps, opt.tol, opt.overrelax = eps, 1e-9, 1.6
    assert attnflow.sinkhorn(attnflow.Measure(x), attnflow.Measure(y), opt).cost == fast.cost
    with pytest.raises(ValueError, match=r"sinkhorn: overrelax = 2, must be in \(0, 2\)"):
        attnflow.sinkhorn(x, y, eps=eps, overrelax=2.0)
