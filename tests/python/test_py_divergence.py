"""attnflow.sinkhorn_divergence against an independent debiased divergence computed with POT
(python3-pot): the three entropic plans from POT's log-domain Sinkhorn, their entropic
objectives <C, pi> + eps KL(pi | a x b) in NumPy, debiased. Also: the default options converge
on spread-out clouds where the self-terms used to stall under eps-scaling, and what POT's own
empirical_sinkhorn_divergence computes instead (the debiased transport cost)."""
import warnings

import numpy as np
import pytest

import attnflow

import ot  # noqa: E402  python3-pot (scripts/install-deps.sh)


def entropic_objective(pi, c, a, b, eps):
    """<C, pi> + eps KL(pi | a x b) of a plan (independent of attnflow)."""
    ab = np.outer(a, b)
    mask = pi > 0
    kl = np.sum(pi[mask] * np.log(pi[mask] / ab[mask])) - pi.sum() + 1.0
    return float(np.sum(c * pi) + eps * kl)


def pot_plan(x, y, a, b, eps, stop=1e-14, iters=50000):
    c = ot.dist(x, y)  # squared Euclidean, as attnflow's cost
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a POT non-convergence warning fails the test
        pi = ot.sinkhorn(a, b, c, eps, method="sinkhorn_log", stopThr=stop, numItermax=iters)
    assert np.abs(pi.sum(1) - a).sum() + np.abs(pi.sum(0) - b).sum() < 1e-12
    return pi, c


def symmetric_self_objective(x, a, eps, tol=1e-13, iters=100000):
    """OT_eps(mu, mu) by a NumPy averaged (symmetric) Sinkhorn, written independently:
    f <- (f + F(f)) / 2 with F(f)_i = -eps log sum_j a_j exp((f_j - C_ij) / eps)."""
    c = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    la = np.log(a)
    f = np.zeros(len(a))
    for _ in range(iters):
        t = la[None, :] + (f[None, :] - c) / eps
        mx = t.max(1)
        fn = -eps * (mx + np.log(np.exp(t - mx[:, None]).sum(1)))
        pi = np.exp(la[:, None] + la[None, :] + (f[:, None] + f[None, :] - c) / eps)
        if np.abs(pi.sum(1) - a).sum() <= tol:
            return entropic_objective(pi, c, a, a, eps)
        f = 0.5 * (f + fn)
    raise AssertionError("reference symmetric Sinkhorn did not converge")


def pot_divergence(x, y, a, b, eps):
    pxy, cxy = pot_plan(x, y, a, b, eps)
    pxx, cxx = pot_plan(x, x, a, a, eps)
    pyy, cyy = pot_plan(y, y, b, b, eps)
    oxy = entropic_objective(pxy, cxy, a, b, eps)
    oxx = entropic_objective(pxx, cxx, a, a, eps)
    oyy = entropic_objective(pyy, cyy, b, b, eps)
    cost = np.sum(cxy * pxy) - 0.5 * np.sum(cxx * pxx) - 0.5 * np.sum(cyy * pyy)
    return oxy - 0.5 * oxx - 0.5 * oyy, (oxy, oxx, oyy), cost


def test_divergence_matches_pot_at_tight_tolerance():
    # eps = 0.5 on clouds of scale 1: POT's alternating log-Sinkhorn reaches 1e-14 on all three
    # terms (at smaller eps it stalls on the self-terms, which is what 13.4 was about).
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((30, 2)) + 0.5
    a, b = rng.uniform(0.2, 1, 40), rng.uniform(0.2, 1, 30)
    a, b = a / a.sum(), b / b.sum()
    eps = 0.5
    ref, (oxy, oxx, oyy), _ = pot_divergence(x, y, a, b, eps)
    d = attnflow.sinkhorn_divergence(x, y, a, b, eps=eps, tol=1e-13)
    assert d.converged, d.message
    assert d.ot_xy == pytest.approx(oxy, rel=1e-10, abs=1e-12)
    assert d.ot_xx == pytest.approx(oxx, rel=1e-10, abs=1e-12)
    assert d.ot_yy == pytest.approx(oyy, rel=1e-10, abs=1e-12)
    assert d.value == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert d.value > 0


@pytest.fixture
def spread_clouds():
    """The setting of the report: x (200, 3), y (150, 3), eps = 0.1 (eps << diameter^2)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((200, 3)), rng.standard_normal((150, 3)) + 0.5


def test_defaults_converge_on_spread_clouds(spread_clouds):
    x, y = spread_clouds
    a, b = np.full(200, 1 / 200), np.full(150, 1 / 150)
    eps = 0.1
    d = attnflow.sinkhorn_divergence(x, y, eps=eps)  # default tol 1e-6, max_iterations 10000
    assert d.converged, d.message
    assert d.message == ""
    # Reference: POT for the cross term (converges in a few hundred iterations), an independent
    # NumPy symmetric Sinkhorn for the self-terms (POT's alternating one stalls near 1e-8 here).
    pxy, cxy = pot_plan(x, y, a, b, eps)
    oxy = entropic_objective(pxy, cxy, a, b, eps)
    oxx = symmetric_self_objective(x, a, eps)
    oyy = symmetric_self_objective(y, b, eps)
    ref = oxy - 0.5 * oxx - 0.5 * oyy
    # At the default tol 1e-6 on the marginal violation, each objective is within ~tol * max C.
    assert d.value == pytest.approx(ref, abs=1e-5)
    tight = attnflow.sinkhorn_divergence(x, y, eps=eps, tol=1e-12)
    assert tight.converged, tight.message
    assert tight.ot_xx == pytest.approx(oxx, rel=1e-9)
    assert tight.ot_yy == pytest.approx(oyy, rel=1e-9)
    assert tight.ot_xy == pytest.approx(oxy, rel=1e-9)
    assert tight.value == pytest.approx(ref, rel=1e-8)


def test_self_terms_use_the_symmetric_update(spread_clouds):
    """OT_eps(mu, mu) alone: the alternating solve misses tol 1e-6 within 10000 iterations under
    eps-scaling, the divergence's symmetric solve does not (and agrees with a tight solve)."""
    x, _ = spread_clouds
    alt = attnflow.sinkhorn(x, x, eps=0.1)
    assert not alt.converged  # the stall the symmetric update removes
    d = attnflow.sinkhorn_divergence(x, x, eps=0.1)
    assert d.converged and d.value == 0.0
    assert d.ot_xx == pytest.approx(symmetric_self_objective(x, np.full(200, 1 / 200), 0.1),
                                    abs=1e-5)


def test_pot_empirical_divergence_debiases_the_transport_cost():
    """What the docstring says: POT's empirical_sinkhorn_divergence is the debiased <C, pi_eps>
    (clipped at 0), not the debiased entropic objective attnflow returns."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((30, 2)) + 0.5
    a, b = np.full(40, 1 / 40), np.full(30, 1 / 30)
    eps = 0.5
    ref, _, cost = pot_divergence(x, y, a, b, eps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot_value = ot.bregman.empirical_sinkhorn_divergence(x, y, eps, a, b, numIterMax=50000)
    assert float(pot_value) == pytest.approx(max(cost, 0.0), rel=1e-6)
    d = attnflow.sinkhorn_divergence(x, y, eps=eps, tol=1e-13)
    assert d.value == pytest.approx(ref, rel=1e-9)
    assert abs(d.value - float(pot_value)) > 1e-3  # different objectives, different numbers
