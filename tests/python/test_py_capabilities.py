"""Theory, large-prompt / ICL and model bindings against closed forms written here from
docs/math.md sections 4, 6 and 7, finite differences for gradients, and the CLI's theory output."""
import json
import math

import numpy as np
import pytest

import attnflow

# Closed forms evaluated in float64 by two different expressions: rounding only.
RTOL = 1e-12


def long_context_formula(n, rho, gamma):
    beta = gamma * math.log(n)
    z = math.exp(beta) + (n - 1) * math.exp(beta * rho)
    a, b = math.exp(beta) / z, math.exp(beta * rho) / z
    num = (1 - rho) * (2 * a * b + (n - 2) * b * b) + rho
    den = (1 - rho) * (a * a + (n - 1) * b * b) + rho
    return num / den


@pytest.mark.parametrize("n, rho, gamma", [(10, 0.3, 0.5), (1000, 0.5, 2.0), (50, 0.1, 1.2)])
def test_long_context_cosine_matches_spec_formula(n, rho, gamma):
    np.testing.assert_allclose(attnflow.long_context_cosine(n, rho, gamma),
                               long_context_formula(n, rho, gamma), rtol=1e-10)
    # The kernel computation of the same layer (no formula) agrees.
    np.testing.assert_allclose(attnflow.long_context_direct(n, rho, gamma),
                               long_context_formula(n, rho, gamma), rtol=1e-9)
    assert attnflow.long_context_gamma_c(rho) == pytest.approx(1 / (1 - rho), rel=RTOL)


def test_long_context_equals_cli(run_cli):
    r = run_cli("theory", "long-context", "--n", 1000, "--rho", 0.5, "--gamma", 1.5)
    if r.returncode != 0:
        pytest.fail(f"theory long-context not available: {r.stderr.strip()[:200]}")
    j = json.loads(r.stdout)
    py = attnflow.long_context(1000, 0.5, 1.5)
    assert j["cosine"] == py.cosine and j["regime"] == py.regime and j["limit"] == py.limit


def test_equiangular_rates_match_spec():
    o = attnflow.EquiangularOptions()
    o.n, o.beta = 8, 2.0
    for model in ("sa", "usa"):
        o.model = model
        rho = 0.4
        e = math.exp(o.beta * rho)
        drho = (2 * e * (1 - rho) * ((o.n - 1) * rho + 1) / (math.exp(o.beta) + (o.n - 1) * e)
                if model == "sa" else (2 / o.n) * e * (1 - rho) * ((o.n - 1) * rho + 1))
        r = attnflow.equiangular_rates(o, 0.0, 1 - rho, 1.0)
        np.testing.assert_allclose(-r.du, drho, rtol=RTOL)
    sol = attnflow.solve_equiangular(o, np.array([0.0, 1.0, 5.0]))
    assert sol.rho[0] == o.rho0 and sol.rho[2] > sol.rho[1] > sol.rho[0]


def test_bessel_ratio_matches_series():
    def iv(k, x):  # I_k(x) by its power series (converges for every x)
        return sum((x / 2) ** (2 * m + k) / (math.factorial(m) * math.factorial(m + k)) for m in range(80))

    for k, beta in ((1, 0.5), (3, 4.0), (6, 10.0)):
        np.testing.assert_allclose(attnflow.bessel_ratio(k, beta), iv(k, beta) / iv(0, beta), rtol=1e-12)
    p = attnflow.predict_clusters(20.0)
    rates = [k * k * iv(k, 20.0) / iv(0, 20.0) / 20.0 for k in range(1, len(p.rates) + 1)]
    assert p.predicted_clusters == int(np.argmax(rates)) + 1


def test_gaussian_prompt_is_linear_and_empirical_prompt_is_softmax():
    rng = np.random.default_rng(2)
    d = 3
    u, v = rng.standard_normal((d, d)) * 0.3, rng.standard_normal((2, d))
    m, g = rng.standard_normal(d), np.eye(d) * 0.5
    z = rng.standard_normal((4, d))
    op = attnflow.PromptOperator(u, v)
    out = attnflow.gaussian_prompt(op, m, g, z).out
    np.testing.assert_allclose(out, (v @ m)[None, :] + z @ (v @ g @ u).T, rtol=1e-12, atol=1e-14)
    tokens = rng.standard_normal((50, d))
    emp = attnflow.empirical_prompt(op, attnflow.Measure(tokens), z).out
    s = z @ u.T @ tokens.T
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(emp, p @ tokens @ v.T, rtol=1e-10, atol=1e-12)


def test_icl_infinite_risk_and_fixed_point():
    s = attnflow.toeplitz_covariance(4, 0.5)
    np.testing.assert_allclose(s, 0.5 ** np.abs(np.subtract.outer(range(4), range(4))), rtol=RTOL)
    data = attnflow.IclData(s)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 4)), 0.7
    m = b * s @ a - np.eye(4)
    risk = 0.5 * np.trace(m @ s @ m.T)
    np.testing.assert_allclose(attnflow.icl_infinite_risk(data, attnflow.IclParams(a, b)), risk, rtol=1e-12)
    fp = attnflow.icl_fixed_point(s)
    np.testing.assert_allclose(fp.b, np.trace(np.linalg.inv(s @ s)) ** 0.25, rtol=1e-12)
    assert attnflow.icl_infinite_risk(data, fp) < 1e-20


def test_model_gradient_matches_finite_differences():
    spec = attnflow.ModelSpec()
    spec.dim, spec.depth, spec.heads = 2, 2, 1
    model = attnflow.random_model(spec, attnflow.Rng(3))
    rng = np.random.default_rng(1)
    x, target = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    ex = attnflow.Example(attnflow.Measure(x), target)
    loss, grad, dx = attnflow.loss_and_gradient(model, ex)
    assert loss == attnflow.model_loss(model, ex)
    h = 1e-6  # central differences: error ~ h^2 * third derivative, far below 1e-6
    for i, j in ((0, 0), (3, 1), (5, 0)):
        xp, xm = x.copy(), x.copy()
        xp[i, j] += h
        xm[i, j] -= h
        fd = (attnflow.model_loss(model, attnflow.Example(attnflow.Measure(xp), target))
              - attnflow.model_loss(model, attnflow.Example(attnflow.Measure(xm), target))) / (2 * h)
        np.testing.assert_allclose(dx[i, j], fd, rtol=1e-6, atol=1e-8)
    back = attnflow.Model.from_bytes(model.to_bytes())
    assert np.array_equal(attnflow.evaluate(back, attnflow.Measure(x), x),
                          attnflow.evaluate(model, attnflow.Measure(x), x))
    with pytest.raises(ValueError, match="model file"):
        attnflow.Model.from_bytes(b"garbage")
