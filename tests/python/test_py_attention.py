"""The Python package's core: attention and the kernel against a dense NumPy reference of
docs/math.md sections 1-2 and against the CLI on the same .npy inputs (bit for bit), ValueError
texts, zero-copy float64 input, float32 / non-contiguous conversion, the GIL released,
thread-count independence."""
import threading

import numpy as np
import pytest

import attnflow
from attnflow import _attnflow as ext

# Library (streaming, tiled) vs this dense reference: both float64, different summation order.
RTOL = 1e-10
ATOL = 1e-12
# Sinkhorn marginals: the library stops at tol = 1e-12 on the marginal violation.
MARGINAL_TOL = 1e-10


def dense_attention(x, y, v, wy, beta, q=None, k=None, normalization="softmax"):
    """docs/math.md section 1: P_ij = b_j k_ij / sum_l b_l k_il (softmax) or b_j k_ij (none)."""
    qx = x @ q.T if q is not None else x
    ky = y @ k.T if k is not None else y
    s = beta * qx @ ky.T
    if normalization == "none":
        return (wy[None, :] * np.exp(s)) @ v
    p = wy[None, :] * np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ v


def dense_sinkhorn_coupling(x, y, wx, wy, beta, iters=2000):
    """pi = diag(a) exp(f) K exp(g) diag(b) in Pi(a, b) for s = beta <x, y> (log domain)."""
    s = beta * x @ y.T
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(iters):
        t = s + g[None, :] + np.log(wy)[None, :]
        f = -(t.max(1) + np.log(np.exp(t - t.max(1, keepdims=True)).sum(1)))
        t = s + f[:, None] + np.log(wx)[:, None]
        g = -(t.max(0) + np.log(np.exp(t - t.max(0, keepdims=True)).sum(0)))
    return wx[:, None] * wy[None, :] * np.exp(s + f[:, None] + g[None, :])


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return dict(x=rng.standard_normal((23, 3)), y=rng.standard_normal((31, 3)),
                v=rng.standard_normal((31, 2)), wx=rng.uniform(0.1, 1, 23),
                wy=rng.uniform(0.1, 1, 31), q=rng.standard_normal((2, 3)),
                k=rng.standard_normal((2, 3)))


@pytest.mark.parametrize("normalization", ["softmax", "none"])
def test_attention_matches_dense_reference(data, normalization):
    d = data
    got = attnflow.attention(d["x"], d["y"], d["v"], d["wx"], d["wy"], beta=1.3, q=d["q"],
                             k=d["k"], normalization=normalization)
    ref = dense_attention(d["x"], d["y"], d["v"], d["wy"] / d["wy"].sum(), 1.3, d["q"], d["k"],
                          normalization)
    assert got.dtype == np.float64 and got.shape == (23, 2)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_sinkhorn_attention_is_the_coupling_conditional(data):
    d = data
    a, b = d["wx"] / d["wx"].sum(), d["wy"] / d["wy"].sum()
    r = attnflow.attention_result(d["x"], d["y"], d["v"], d["wx"], d["wy"], beta=0.8,
                                  normalization="sinkhorn", tol=1e-12)
    assert r.status[0].converged and r.status[0].iterations > 1
    pi = dense_sinkhorn_coupling(d["x"], d["y"], a, b, 0.8)
    np.testing.assert_allclose(pi.sum(0), b, atol=MARGINAL_TOL)
    np.testing.assert_allclose(r.out, (pi / a[:, None]) @ d["v"], rtol=1e-8, atol=1e-9)


def test_one_sinkhorn_iteration_is_softmax(data):
    d = data
    soft = attnflow.attention(d["x"], d["y"], d["v"], beta=2.0)
    one = attnflow.attention(d["x"], d["y"], d["v"], beta=2.0, normalization="sinkhorn",
                             sinkhorn_iterations=1)
    np.testing.assert_allclose(one, soft, rtol=RTOL, atol=ATOL)


def test_multi_head_sums_heads(data):
    d = data
    rng = np.random.default_rng(1)
    heads, ref = [], 0
    for h in range(2):
        q, k = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
        v, w = rng.standard_normal((4, 2)), rng.standard_normal((3, 4))
        heads.append(attnflow.AttentionHead(q=q, k=k, v=v, w=w))
        ref = ref + dense_attention(d["x"], d["y"], d["v"] @ v.T, np.full(31, 1 / 31), 0.9, q, k) @ w.T
    got = attnflow.attention(d["x"], d["y"], d["v"], beta=0.9, heads=heads)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("normalization", ["softmax", "sinkhorn", "none"])
def test_equals_cli_bit_for_bit(run_cli, data, tmp_path, normalization):
    d = data
    for name in ("x", "y", "v", "wx", "wy", "q", "k"):
        np.save(tmp_path / f"{name}.npy", d[name])
    out = tmp_path / "out.npy"
    r = run_cli("attention", *[a for n in ("x", "y", "v", "wx", "wy", "q", "k")
                               for a in (f"--{n}", tmp_path / f"{n}.npy")],
                "--beta", 1.1, "--normalization", normalization, "--out", out)
    assert r.returncode == 0, r.stderr
    got = attnflow.attention(d["x"], d["y"], d["v"], d["wx"], d["wy"], beta=1.1, q=d["q"],
                             k=d["k"], normalization=normalization)
    assert np.array_equal(got, np.load(out))


def test_lse_reduce_matches_dense(data):
    d = data
    col = np.log(d["wy"])
    lse, out = attnflow.lse_reduce(d["x"], d["y"], col, d["v"])
    s = d["x"] @ d["y"].T + col[None, :]
    m = s.max(1, keepdims=True)
    ref_lse = (m + np.log(np.exp(s - m).sum(1, keepdims=True)))[:, 0]
    np.testing.assert_allclose(lse, ref_lse, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out, np.exp(s - ref_lse[:, None]) @ d["v"], rtol=RTOL, atol=ATOL)
    lse2, out2 = attnflow.lse_reduce(d["x"], d["y"])
    assert out2.shape == (23, 0)
    np.testing.assert_allclose(lse2, np.log(np.exp(d["x"] @ d["y"].T).sum(1)), rtol=RTOL)


def test_float64_c_order_is_not_copied():
    x = np.random.default_rng(0).standard_normal((200_000, 8))  # 12.8 MB
    assert ext._ref_address(x) == x.ctypes.data  # the C++ Ref sees NumPy's own buffer
    # Converted inputs are copies (a different buffer), and give the same numbers.
    assert ext._ref_address(x.astype(np.float32)) != x.ctypes.data
    assert ext._ref_address(np.asfortranarray(x[:100])) != x.ctypes.data
    # Outputs come back as NumPy arrays owning the C++ result (no copy out): writeable float64.
    lse, out = attnflow.lse_reduce(x[:50], x[:60], None, x[:60])
    assert lse.dtype == np.float64 and out.flags.c_contiguous and out.flags.writeable
    mu = attnflow.Measure(x[:10])
    assert np.shares_memory(mu.points, mu.points) and not mu.points.flags.writeable


def test_float32_is_refused_and_non_contiguous_inputs_are_converted(data):
    d = data
    x32 = d["x"].astype(np.float32)
    # float32 is never promoted silently: refused, naming the argument and the fix.
    with pytest.raises(TypeError, match=r"x: dtype = float32, must be float64 .*x\.astype\(numpy\.float64\)"):
        attnflow.attention(x32, d["y"], beta=1.5)
    with pytest.raises(TypeError, match="wy: dtype = float32, must be float64"):
        attnflow.attention(d["x"], d["y"], wy=d["wy"].astype(np.float32))
    with pytest.raises(TypeError, match="points: dtype = float32"):
        attnflow.Measure(x32)
    with pytest.raises(TypeError, match="y: dtype = float16"):
        attnflow.sinkhorn(d["x"], d["y"].astype(np.float16), eps=0.1)
    # Integer arrays convert exactly.
    assert np.array_equal(attnflow.attention(np.arange(6).reshape(3, 2)),
                          attnflow.attention(np.arange(6.0).reshape(3, 2)))
    wide = np.random.default_rng(3).standard_normal((23, 6))
    strided = wide[:, ::2]  # non-contiguous view
    assert not strided.flags.c_contiguous
    assert np.array_equal(attnflow.attention(strided, d["y"]),
                          attnflow.attention(np.ascontiguousarray(strided), d["y"]))
    assert np.array_equal(attnflow.attention(np.asfortranarray(d["x"]), d["y"]),
                          attnflow.attention(d["x"], d["y"]))
    lse_t, _ = attnflow.lse_reduce(d["x"][::2], d["y"])
    lse_c, _ = attnflow.lse_reduce(np.ascontiguousarray(d["x"][::2]), d["y"])
    assert np.array_equal(lse_t, lse_c)


def test_unconvertible_inputs_are_rejected_clearly(data):
    with pytest.raises(TypeError, match=r"x: <class 'str'> given, must be a 2-D float array \(n, d\)"):
        attnflow.attention("not an array")
    with pytest.raises(TypeError, match=r"wx: <class 'list'> given, must be a 1-D float array \(n\)"):
        attnflow.attention(data["x"], wx=["a", "b"])
    # A 2-D array where a vector is expected: the shape is named, not "expected a float array
    # ..., got <class 'numpy.ndarray'>".
    with pytest.raises(ValueError, match=r"wx: array of shape \(23, 3\) and dtype float64, must be a 1-D"):
        attnflow.attention(data["x"], wx=data["x"])


@pytest.mark.parametrize("call, text", [
    (lambda d: attnflow.attention(d["x"], beta=float("nan")), "attention: beta = nan, must be finite"),
    (lambda d: attnflow.attention(d["x"], d["y"][:, :2]),
     "attention: queries have dimension 3 and keys 2, must be equal"),
    (lambda d: attnflow.attention(d["x"], wx=-d["wx"]), "queries (x, wx): weights[0] = "),
    (lambda d: attnflow.attention(d["x"], normalization="softmx"), "attention: normalization"),
    (lambda d: attnflow.attention(np.full((3, 2), np.inf)), "inf"),
    (lambda d: attnflow.attention(d["x"], d["y"], d["v"][:5]),
     "attention: values have 5 rows, must equal the number of keys (31)"),
    (lambda d: attnflow.attention(d["x"], normalization="sinkhorn", tol=-1.0),
     "attention: sinkhorn.tol = -1, must be > 0"),
])
def test_invalid_input_is_value_error_with_library_text(data, call, text):
    with pytest.raises(ValueError) as e:
        call(data)
    assert text in str(e.value)


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((300, 4)), rng.standard_normal((400, 4))
    before = attnflow.num_threads()
    try:
        attnflow.set_num_threads(1)
        one = attnflow.attention(x, y, beta=1.0, normalization="sinkhorn")
        attnflow.set_num_threads(2)
        two = attnflow.attention(x, y, beta=1.0, normalization="sinkhorn")
    finally:
        attnflow.set_num_threads(before)
    assert np.array_equal(one, two)


def test_gil_is_released_during_computation():
    # While a worker thread is inside lse_reduce, the main thread must be able to run Python
    # code: the counter advances between the worker's entry and exit. No timing is asserted.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 16))
    counts, started, done = [0], threading.Event(), threading.Event()
    seen = {}

    def worker():
        started.set()
        seen["before"] = counts[0]
        for _ in range(3):
            attnflow.lse_reduce(x, x, None, x)
        seen["after"] = counts[0]
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    while not done.is_set():
        counts[0] += 1
    t.join()
    assert seen["after"] > seen["before"]


def test_measure_and_rng_bindings():
    mu = attnflow.Measure(np.eye(3), np.array([1.0, 1.0, 2.0]))
    np.testing.assert_allclose(mu.weights, [0.25, 0.25, 0.5])
    assert mu.size == 3 and mu.dim == 3 and len(mu) == 3  # properties, like points / weights
    a, b = attnflow.Rng(42), attnflow.Rng(42)
    assert a.uniform() == b.uniform() and a.normal() == b.normal()
    x = attnflow.sample_sphere(10, 3, attnflow.Rng(1))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-14)
    e = attnflow.equiangular(4, 5, 0.3)
    g = e @ e.T
    np.testing.assert_allclose(g[~np.eye(4, dtype=bool)], 0.3, rtol=1e-14)
    with pytest.raises(ValueError, match="must be >= 0"):
        attnflow.Measure(np.eye(2), np.array([1.0, -1.0]))
