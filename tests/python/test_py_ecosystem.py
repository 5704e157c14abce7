"""Calls that fit the NumPy / POT / pandas habits: POT's call shapes with POT's
meaning (sinkhorn(a, b, M, reg), sinkhorn2, emd, emd2 = squared cost) against independent
references (POT itself when installed, brute force otherwise); weight vectors where points
are expected are refused with a message that says so; results print readably, convert to
dicts and tables; Measure.size is a property; option fields take the CLI's strings and fail
with the CLI's message."""
import itertools

import numpy as np
import pytest

import attnflow


@pytest.fixture
def pot_problem():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    a, b = rng.uniform(0.5, 1, 6), rng.uniform(0.5, 1, 6)
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return x, y, a / a.sum(), b / b.sum(), M


def dense_sinkhorn_plan(a, b, M, reg, iters=5000):
    """Plain log-domain Sinkhorn on the dense cost (the independent reference)."""
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(iters):
        t = (g[None, :] - M) / reg + np.log(b)[None, :]
        f = -reg * (t.max(1) + np.log(np.exp(t - t.max(1, keepdims=True)).sum(1)))
        t = (f[:, None] - M) / reg + np.log(a)[:, None]
        g = -reg * (t.max(0) + np.log(np.exp(t - t.max(0, keepdims=True)).sum(0)))
    return a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - M) / reg)


def test_pot_sinkhorn_call_shape(pot_problem):
    x, y, a, b, M = pot_problem
    r = attnflow.sinkhorn(a, b, M, 0.5, tol=1e-12)
    assert isinstance(r, attnflow.SinkhornResult) and r.converged
    plan = attnflow.transport_plan(attnflow.TransportCost.dense(M), r)
    ref = dense_sinkhorn_plan(a, b, M, 0.5)
    np.testing.assert_allclose(plan, ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(r.cost, (ref * M).sum(), rtol=1e-8)
    # eps= works in place of the positional reg; both given is an error.
    assert attnflow.sinkhorn(a, b, M, eps=0.5, tol=1e-12).cost == r.cost
    assert attnflow.sinkhorn(a, b, M, reg=0.5, tol=1e-12).cost == r.cost  # POT's keyword
    with pytest.raises(ValueError, match="reg and eps both given"):
        attnflow.sinkhorn(a, b, M, reg=0.5, eps=0.5)
    with pytest.raises(ValueError, match="reg .* and eps both given"):
        attnflow.sinkhorn(a, b, M, 0.5, eps=0.5)
    # sinkhorn2 = POT's value <M, pi> (the linear term).
    np.testing.assert_allclose(attnflow.sinkhorn2(a, b, M, 0.5, tol=1e-12), (ref * M).sum(), rtol=1e-8)
    # The point-cloud form with the same clouds gives the same cost.
    rp = attnflow.sinkhorn(x, y, a, b, eps=0.5, tol=1e-12)
    np.testing.assert_allclose(rp.cost, r.cost, rtol=1e-8)


def test_emd2_is_the_squared_cost_and_wasserstein_its_root(pot_problem):
    x, y, _, _, M = pot_problem
    u = np.full(6, 1 / 6)
    # Uniform weights on 6 points: the optimum is a permutation (brute force reference).
    best = min(sum(M[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6))) / 6
    np.testing.assert_allclose(attnflow.emd2(u, u, M), best, rtol=1e-10)
    np.testing.assert_allclose(attnflow.emd2([], [], M), best, rtol=1e-10)  # POT: [] = uniform
    np.testing.assert_allclose(attnflow.wasserstein(x, y) ** 2, best, rtol=1e-9)
    plan = attnflow.emd(u, u, M)
    assert plan.shape == (6, 6)
    np.testing.assert_allclose(plan.sum(1), u, atol=1e-12)
    np.testing.assert_allclose((plan * M).sum(), best, rtol=1e-10)


def test_against_pot_when_installed(pot_problem):
    ot = pytest.importorskip("ot")
    _, _, a, b, M = pot_problem
    np.testing.assert_allclose(attnflow.emd2(a, b, M), ot.emd2(a, b, M), rtol=1e-9)
    np.testing.assert_allclose(attnflow.sinkhorn2(a, b, M, 0.5, tol=1e-12),
                               ot.sinkhorn2(a, b, M, 0.5, stopThr=1e-14, numItermax=100000),
                               rtol=1e-7)


def test_weight_vectors_where_points_are_expected_are_refused(pot_problem):
    _, _, a, b, _ = pot_problem
    for call, ctx in [(lambda: attnflow.wasserstein(a, b), "wasserstein"),
                      (lambda: attnflow.sinkhorn(a, b, eps=0.1), "sinkhorn"),
                      (lambda: attnflow.sinkhorn_divergence(a, b, eps=0.1), "sinkhorn_divergence"),
                      (lambda: attnflow.attention(a), "attention"),
                      (lambda: attnflow.Measure(a), "Measure")]:
        with pytest.raises(ValueError, match=rf"{ctx}: \w+ has shape \(6,\), must be \(n, d\) "
                                             r"points: a 1-D array here is a weight vector"):
            call()
    # 1-D points are allowed as a column.
    assert attnflow.wasserstein(a[:, None], b[:, None]) >= 0


def test_sinkhorn_pot_call_with_a_bad_cost_names_it(pot_problem):
    _, _, a, b, M = pot_problem
    with pytest.raises(ValueError, match=r"M: array of shape \(6, 6, 1\)"):
        attnflow.emd2(a, b, M[:, :, None])
    with pytest.raises(TypeError, match="M: dtype = float32, must be float64"):
        attnflow.emd2(a, b, M.astype(np.float32))


def test_results_repr_to_dict():
    x = np.random.default_rng(1).standard_normal((7, 2))
    r = attnflow.sinkhorn(x, x[::-1].copy(), eps=0.3)
    text = repr(r)
    assert text.startswith("SinkhornResult(") and "at 0x" not in text
    assert "converged=True" in text and "f=<float64 array (7,)>" in text
    d = r.to_dict()
    assert d["converged"] is True and d["iterations"] == r.iterations
    assert np.array_equal(d["f"], r.f)
    res = attnflow.attention_result(x, normalization="sinkhorn")
    d = res.to_dict()
    assert isinstance(d["status"][0], dict) and d["status"][0]["converged"] is True
    assert "NormalizationStatus(" in repr(res.status[0])
    # Every class with fields has to_dict and a repr that is not the default.
    for name in attnflow.__all__:
        cls = getattr(attnflow, name)
        if isinstance(cls, type) and not hasattr(cls, "__members__") and \
                any(isinstance(v, property) for v in vars(cls).values()):
            assert hasattr(cls, "to_dict"), name
            assert cls.__repr__ is not object.__repr__, name
    opts = attnflow.FlowOptions()
    assert "kind='sa'" in repr(opts) or "kind=" in repr(opts)


def test_tabular_results_convert_to_pandas():
    data = attnflow.IclData(np.eye(2))
    o = attnflow.IclTrainOptions()
    o.prompt_length, o.steps, o.log_every, o.batch = 8, 6, 2, 4
    res = attnflow.icl_train(data, attnflow.IclParams(np.eye(2) * 0.1, 0.5), o)
    rows = list(res)
    assert len(rows) == len(res.history) and rows[0]["step"] == res.history[0].step
    pd = pytest.importorskip("pandas")  # python3-pandas (install-deps.sh)
    df = res.to_pandas()
    assert list(df["step"]) == [h.step for h in res.history]
    assert pd.DataFrame(res).equals(df)
    # The rows themselves convert too (pandas.DataFrame(r.rows) must not give one column of objects).
    rows_df = pd.DataFrame(res.history)
    assert set(rows_df.columns) == set(res.history[0].keys()) and len(rows_df) == len(res.history)
    assert list(rows_df["risk"]) == [h.risk for h in res.history]
    assert res.history[0]["step"] == res.history[0].step and dict(res.history[0])["b"] == res.history[0].b
    with pytest.raises(KeyError):
        res.history[0]["nope"]
    assert "risk" in df.columns and len(df) == len(res.history)


def test_measure_size_is_a_property_consistent_with_points():
    mu = attnflow.Measure(np.zeros((5, 3)), np.arange(1.0, 6.0))
    assert mu.size == len(mu.points) == len(mu.weights) == len(mu) == 5
    assert mu.dim == mu.points.shape[1] == 3
    assert repr(mu) == "Measure(n=5, d=3)"


def test_option_fields_take_cli_strings_and_fail_with_cli_messages():
    o = attnflow.FlowOptions()
    o.kind = "usa"
    assert o.kind == attnflow.FieldKind.usa
    tau = o.scheme.tau
    o.scheme = "pre-ln"  # the struct-valued field takes the scheme name, keeping tau
    assert o.scheme.scheme == attnflow.Scheme("pre-ln") and o.scheme.tau == tau
    with pytest.raises(ValueError, match="must be one of"):
        o.scheme = "pre-lm"
    with pytest.raises(ValueError, match="must be one of"):
        o.kind = "bogus"
    a = attnflow.AttentionOptions()
    a.normalization = "sinkhorn"
    assert a.normalization == attnflow.Normalization.sinkhorn
    with pytest.raises(ValueError, match=r"normalization = \"softmx\", must be one of softmax, "
                                         r"sinkhorn, none"):
        a.normalization = "softmx"
    t = attnflow.OptimizerOptions()
    t.kind = "sgd"
    assert t.kind == attnflow.OptimizerKind.sgd


def test_numpy_2_with_a_pybind11_that_cannot_read_it_is_a_clear_import_error():
    # pybind11 < 2.12 reads NumPy 1.x structures only: such a build refuses NumPy 2 at import
    # with both versions named; a newer pybind11 imports.
    import subprocess
    import sys
    from attnflow import _build_info
    code = ("import numpy; numpy.__version__ = '2.0.0'\n"
            "try:\n    import attnflow\n    print('imported')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    pb = tuple(int(p) for p in _build_info.PYBIND11_VERSION.split(".")[:2])
    if pb < (2, 12):
        assert f"built with pybind11 {_build_info.PYBIND11_VERSION}" in out
        assert "NumPy 2.0.0 is installed" in out and "numpy<2" in out
    else:
        assert out.strip() == "imported"
    assert _build_info.VERSION == attnflow.__version__
