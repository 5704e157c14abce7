"""attnflow theory end to end (docs/math.md section 6): the equiangular CSV against an
independent NumPy RK4 solution of its ODE, long-context JSON against a dense NumPy attention
layer, the cluster prediction against Bessel functions by quadrature; help and error messages."""
import csv
import json

import numpy as np
import pytest

# NumPy RK4 at 4000 steps vs the CLI's dopri5 at rtol 1e-12: both ~1e-12 accurate.
ODE_RTOL = 1e-9
# Dense attention in NumPy vs the closed-form formula: summation order only.
LAYER_RTOL = 1e-12


def spec_rhs(rho, n, beta, model):
    if model == "sa":
        return (2 * np.exp(beta * (rho - 1)) * (1 - rho) * ((n - 1) * rho + 1)
                / (1 + (n - 1) * np.exp(beta * (rho - 1))))
    return (2 / n) * np.exp(beta * rho) * (1 - rho) * ((n - 1) * rho + 1)


def rk4(rho0, t_end, n, beta, model, steps=4000):
    h, rho, out = t_end / steps, rho0, [rho0]
    for _ in range(steps):
        k1 = spec_rhs(rho, n, beta, model)
        k2 = spec_rhs(rho + h / 2 * k1, n, beta, model)
        k3 = spec_rhs(rho + h / 2 * k2, n, beta, model)
        k4 = spec_rhs(rho + h * k3, n, beta, model)
        rho += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(rho)
    return np.array(out)


def read_table(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


@pytest.mark.parametrize("model, n, beta, rho0, t_end", [
    ("sa", 32, 1.0, 0.0, 8.0), ("sa", 5, 4.0, 0.3, 5.0), ("usa", 8, 2.0, 0.1, 0.5)])
def test_equiangular_matches_numpy_rk4(run_cli, tmp_path, model, n, beta, rho0, t_end):
    out = tmp_path / "eq.csv"
    r = run_cli("theory", "equiangular", "--model", model, "--n", n, "--beta", beta,
                "--rho0", rho0, "--t-end", t_end, "--samples", 41, "--out", out)
    assert r.returncode == 0, r.stderr
    header, table = read_table(out)
    assert header[:2] == ["t", "rho"]
    assert table.shape == (41, 4)
    np.testing.assert_allclose(table[:, 0], np.linspace(0, t_end, 41), rtol=1e-15, atol=1e-15)
    ref = rk4(rho0, t_end, n, beta, model)[::100]
    np.testing.assert_allclose(table[:, 1], ref, rtol=ODE_RTOL, atol=ODE_RTOL)
    np.testing.assert_allclose(table[:, 2], 1 - table[:, 1], atol=1e-15)


def test_equiangular_schemes_run_and_decay(run_cli, tmp_path):
    finals = {}
    for scheme in ["post-ln", "pre-ln", "mix-ln", "peri-ln", "ngpt", "sqrt"]:
        out = tmp_path / f"{scheme}.csv"
        r = run_cli("theory", "equiangular", "--scheme", scheme, "--n", 16, "--beta", 2,
                    "--rho0", 0.2, "--t-end", 20, "--out", out)
        assert r.returncode == 0, r.stderr
        _, table = read_table(out)
        assert np.all(np.diff(table[:, 1]) >= 0), scheme  # rho increases under every scheme
        finals[scheme] = table[-1, 2]
    # post-LN (rate 2) is exponentially faster than pre-LN (t^-2).
    assert finals["post-ln"] < 1e-6 * finals["pre-ln"]


def dense_layer_cosine(n, rho, gamma):
    gram = (1 - rho) * np.eye(n) + rho * np.ones((n, n))
    x = np.linalg.cholesky(gram)  # rows: exact equiangular tokens
    s = gamma * np.log(n) * x @ x.T
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = p @ x
    return out[0] @ out[1] / (np.linalg.norm(out[0]) * np.linalg.norm(out[1]))


@pytest.mark.parametrize("n, rho, gamma", [(40, 0.5, 1.0), (40, 0.5, 2.0), (200, 0.2, 3.0)])
def test_long_context_json(run_cli, n, rho, gamma):
    r = run_cli("theory", "long-context", "--n", n, "--rho", rho, "--gamma", gamma, "--direct")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["gamma_c"] == pytest.approx(1 / (1 - rho), rel=1e-15)
    ref = dense_layer_cosine(n, rho, gamma)
    assert j["cosine"] == pytest.approx(ref, rel=LAYER_RTOL)
    assert j["cosine_direct"] == pytest.approx(ref, rel=LAYER_RTOL)
    gc = 1 / (1 - rho)
    expected = 1.0 if gamma < gc else (4 * rho / (1 + 3 * rho) if gamma == gc else rho)
    assert j["limit"] == pytest.approx(expected, rel=1e-15)


def bessel_i(k, beta, m=2000):
    """I_k(beta) = (1/pi) int_0^pi e^{beta cos t} cos(k t) dt (trapezoid: spectral accuracy)."""
    t = np.linspace(0, np.pi, m + 1)
    f = np.exp(beta * np.cos(t)) * np.cos(k * t)
    return (f.sum() - 0.5 * (f[0] + f[-1])) / m


@pytest.mark.parametrize("beta", [0.5, 2.0, 6.0, 20.0])
def test_clusters_prediction(run_cli, beta):
    r = run_cli("theory", "clusters", "--d", 2, "--beta", beta)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    values = [k * k * bessel_i(k, beta) for k in range(1, 40)]
    assert j["predicted_clusters"] == 1 + int(np.argmax(values))
    for mode in j["modes"][:6]:
        k = mode["k"]
        assert mode["growth_rate_usa"] == pytest.approx(k * k * bessel_i(k, beta) / beta, rel=1e-10)
        energy = np.mean(np.exp(beta * np.cos(2 * np.pi * np.arange(k) / k))) / (2 * beta)
        assert mode["log_energy_k_clusters"] == pytest.approx(np.log(energy), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("args, message", [
    (["equiangular", "--model", "mlp", "--out", "X"], "theory equiangular: model = mlp, must be one of sa, usa"),
    (["equiangular", "--scheme", "layer", "--out", "X"], 'scheme = "layer", must be one of'),
    (["equiangular", "--rho0", "2", "--out", "X"], "theory equiangular: rho0 = 2, must be in"),
    (["equiangular", "--n", "1", "--out", "X"], "theory equiangular: n = 1, must be >= 2"),
    (["long-context", "--rho", "1"], "theory long-context: rho = 1, must be in [0, 1)"),
    (["clusters", "--d", "3"], "theory clusters: --d = 3, must be 2"),
    (["clusters", "--beta", "-2"], "theory clusters: beta = -2, must be > 0"),
])
def test_bad_input_message_and_no_output(run_cli, tmp_path, args, message):
    args = [str(tmp_path / "out.csv") if a == "X" else a for a in args]
    r = run_cli("theory", *args)
    assert r.returncode != 0
    assert r.stderr.startswith("attnflow: error: ")
    assert message in r.stderr
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("sub", ["", "equiangular", "long-context", "clusters"])
def test_help(run_cli, sub):
    r = run_cli("theory", *([sub] if sub else []), "--help")
    assert r.returncode == 0 and "Usage" in r.stdout
