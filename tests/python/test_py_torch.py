"""attnflow.torch: autograd Functions on CPU tensors. gradcheck in float64 on small
cases (every input: points, values, weights, beta, q, k, head matrices; softmax, sinkhorn with
fixed iterations and to a tolerance, none; OT cost and Sinkhorn divergence), forward values
equal to the NumPy API bit for bit, zero-copy in and out, float32 refused, the nn.Modules
train (loss decreases), and the plain-PyTorch dense reference agrees with the gradients."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # python3-torch is a build dependency (install-deps.sh)
import attnflow  # noqa: E402
import attnflow.torch as aft  # noqa: E402

torch.manual_seed(0)


def t(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


@pytest.fixture
def small():
    rng = np.random.default_rng(5)
    return dict(x=rng.standard_normal((4, 3)), y=rng.standard_normal((5, 3)),
                v=rng.standard_normal((5, 2)), wx=rng.uniform(0.2, 1, 4),
                wy=rng.uniform(0.2, 1, 5), q=rng.standard_normal((2, 3)) * 0.7,
                k=rng.standard_normal((2, 3)) * 0.7, hv=rng.standard_normal((3, 2)),
                hw=rng.standard_normal((2, 3)))


@pytest.mark.parametrize("normalization, iters", [("softmax", 0), ("none", 0), ("sinkhorn", 4),
                                                  ("sinkhorn", 0)])
def test_attention_gradcheck_every_input(small, normalization, iters):
    d = small
    tol = 1e-13 if iters == 0 else 1e-9
    inputs = (t(d["x"]), t(d["y"]), t(d["v"]), t(d["wx"]), t(d["wy"]), t(0.8), t(d["q"]),
              t(d["k"]), t(d["hv"]), t(d["hw"]))

    def f(x, y, v, wx, wy, beta, q, k, hv, hw):
        return aft.attention(x, y, v, wx, wy, beta, q, k, normalization, head_v=hv, head_w=hw,
                             sinkhorn_iterations=iters, tol=tol)

    atol = 1e-5 if iters == 0 and normalization == "sinkhorn" else 1e-6
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=atol, rtol=1e-4)


def test_attention_gradcheck_self_attention_defaults(small):
    # y = None: the keys are the queries (with their weights), values = keys; q, k only.
    d = small
    x, wx, q, k = t(d["x"]), t(d["wx"]), t(d["q"]), t(d["k"])
    assert torch.autograd.gradcheck(
        lambda x, wx, q, k: aft.attention(x, None, None, wx, None, 1.2, q, k), (x, wx, q, k),
        eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(
        lambda x: aft.attention(x, normalization="sinkhorn", sinkhorn_iterations=3), (x,),
        eps=1e-6, atol=1e-6)


def test_attention_forward_equals_numpy_api_and_is_zero_copy(small):
    d = small
    x = t(d["x"])
    out = aft.attention(x, t(d["y"]), t(d["v"]), t(d["wx"]), t(d["wy"]), 0.8, t(d["q"]),
                        t(d["k"]), "sinkhorn", sinkhorn_iterations=5)
    ref = attnflow.attention(d["x"], d["y"], d["v"], d["wx"], d["wy"], 0.8, d["q"], d["k"],
                             "sinkhorn", sinkhorn_iterations=5)
    assert out.dtype == torch.float64 and np.array_equal(out.detach().numpy(), ref)
    heads = [attnflow.AttentionHead(d["q"], d["k"], d["hv"], d["hw"], "softmax")]
    out = aft.attention(x, t(d["y"]), t(d["v"]), q=t(d["q"]), k=t(d["k"]), head_v=t(d["hv"]),
                        head_w=t(d["hw"]))
    assert np.array_equal(out.detach().numpy(),
                          attnflow.attention(d["x"], d["y"], d["v"], heads=heads))
    # Zero-copy in: the C++ side sees the tensor's own buffer; out: the result's buffer is
    # shared between the tensor and NumPy.
    big = torch.randn(1000, 4, dtype=torch.float64)
    assert attnflow._attnflow._ref_address(aft._array(big, "x")) == big.data_ptr()
    arr = np.ones((3, 2))
    assert aft._tensor(arr).data_ptr() == arr.ctypes.data


@pytest.fixture
def two_heads(small):
    rng = np.random.default_rng(11)
    return dict(q2=rng.standard_normal((2, 3)) * 0.6, k2=rng.standard_normal((2, 3)) * 0.6,
                v2=rng.standard_normal((4, 2)), w2=rng.standard_normal((2, 4)))


@pytest.mark.parametrize("normalization, iters", [("softmax", 0), ("sinkhorn", 3)])
def test_attention_two_heads_gradcheck(small, two_heads, normalization, iters):
    # heads=[(q, k, v, w), (q, k, v, w)]: gradients with respect to every head's matrices,
    # the points, values, weights and beta.
    d, h = small, two_heads
    inputs = (t(d["x"]), t(d["y"]), t(d["v"]), t(d["wy"]), t(0.7), t(d["q"]), t(d["k"]),
              t(d["hv"]), t(d["hw"]), t(h["q2"]), t(h["k2"]), t(h["v2"]), t(h["w2"]))

    def f(x, y, v, wy, beta, q1, k1, v1, w1, q2, k2, v2, w2):
        return aft.attention(x, y, v, None, wy, beta, normalization=normalization,
                             heads=[(q1, k1, v1, w1), (q2, k2, v2, w2)],
                             sinkhorn_iterations=iters)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_attention_several_heads_equal_the_numpy_api_bit_for_bit(small, two_heads):
    d, h = small, two_heads
    ts = {k: t(a) for k, a in {**d, **h}.items()}
    # Three heads, 3- and 4-tuples (a missing / None matrix is the identity).
    heads_t = [(ts["q"], ts["k"], ts["hv"], ts["hw"]), (ts["q2"], ts["k2"], None),
               (ts["q2"], ts["k2"], ts["v2"], ts["w2"])]
    heads_np = [attnflow.AttentionHead(d["q"], d["k"], d["hv"], d["hw"], "softmax"),
                attnflow.AttentionHead(h["q2"], h["k2"], None, None, "softmax"),
                attnflow.AttentionHead(h["q2"], h["k2"], h["v2"], h["w2"], "softmax")]
    out = aft.attention(ts["x"], ts["y"], ts["v"], ts["wx"], ts["wy"], 0.9, heads=heads_t)
    ref = attnflow.attention(d["x"], d["y"], d["v"], d["wx"], d["wy"], 0.9, heads=heads_np)
    assert np.array_equal(out.detach().numpy(), ref)
    r = np.random.default_rng(3).standard_normal(ref.shape)
    (out * torch.from_numpy(r)).sum().backward()
    g = attnflow.attention_gradient(d["x"], d["y"], d["v"], d["wx"], d["wy"], 0.9,
                                    heads=heads_np, grad_out=r)
    assert np.array_equal(ts["x"].grad.numpy(), g["dx"])
    assert np.array_equal(ts["q"].grad.numpy(), g["dq"][0])
    assert np.array_equal(ts["hw"].grad.numpy(), g["head_dw"][0])
    # q2, k2 are used by heads 1 and 2: their gradients are the sums of both heads'.
    assert np.array_equal(ts["q2"].grad.numpy(), g["dq"][1] + g["dq"][2])
    assert np.array_equal(ts["k2"].grad.numpy(), g["dk"][1] + g["dk"][2])
    assert np.array_equal(ts["w2"].grad.numpy(), g["head_dw"][2])


def test_several_heads_bad_arguments_are_refused(small):
    x = t(small["x"])
    with pytest.raises(ValueError, match=r"heads and q/k/head_v/head_w both given"):
        aft.attention(x, q=t(small["q"]), heads=[(None, None, None)])
    with pytest.raises(ValueError, match=r"heads\[0\] is a tuple of 1, must be a \(q, k, v\) or \(q, k, v, w\)"):
        aft.attention(x, heads=[(t(small["q"]),)])
    with pytest.raises(ValueError, match=r"heads is empty, must be a non-empty list"):
        aft.attention(x, heads=[])
    with pytest.raises(ValueError, match=r"heads is a Tensor, must be a non-empty list"):
        aft.attention(x, heads=t(small["q"]))
    with pytest.raises(TypeError, match=r"heads\[1\]\[0\]: dtype = torch.float32"):
        aft.attention(x, heads=[(None, None, None), (t(small["q"]).float(), None, None)])


def test_attention_matches_plain_pytorch_autograd(small):
    # Independent reference: dense softmax attention with weights, by PyTorch autograd.
    d = small
    xs = [t(d[k]) for k in ("x", "y", "v", "wy", "q", "k")]
    beta = t(0.9)
    out = aft.attention(xs[0], xs[1], xs[2], None, xs[3], beta, xs[4], xs[5])
    r = torch.randn(out.shape, dtype=torch.float64)
    grads = torch.autograd.grad((out * r).sum(), xs + [beta])
    ys = [t(d[k]) for k in ("x", "y", "v", "wy", "q", "k")]
    beta2 = t(0.9)
    x, y, v, wy, q, k = ys
    s = beta2 * (x @ q.T) @ (y @ k.T).T + torch.log(wy / wy.sum())[None, :]
    ref = torch.softmax(s, dim=1) @ v
    ref_grads = torch.autograd.grad((ref * r).sum(), ys + [beta2])
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-13)
    for g, rg in zip(grads, ref_grads):
        np.testing.assert_allclose(g.numpy(), rg.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn", ["ot_cost", "sinkhorn_divergence"])
def test_ot_gradcheck_and_bitwise_values(small, fn):
    d = small
    opts = dict(eps=1.0, tol=1e-12, max_iterations=100000)
    f = getattr(aft, fn)
    x, y, a, b = t(d["x"]), t(d["y"]), t(d["wx"]), t(d["wy"])
    assert torch.autograd.gradcheck(lambda x, y, a, b: f(x, y, a, b, **opts), (x, y, a, b),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)
    value = f(x, y, a, b, **opts).item()
    if fn == "ot_cost":
        ref = attnflow.sinkhorn(d["x"], d["y"], d["wx"], d["wy"], **opts).objective
    else:
        ref = attnflow.sinkhorn_divergence(d["x"], d["y"], d["wx"], d["wy"], **opts).value
    assert value == ref  # bit for bit


def test_overrelaxed_ot_cost_gradient_equals_plain(small):
    # The same fixed point (docs/math.md section 3.3): values and envelope gradients agree to tol.
    d = small
    y = t(d["y"], grad=False)
    vals, grads = [], []
    for omega in (1.0, 1.6):
        xr = t(d["x"])
        v = aft.ot_cost(xr, y, eps=0.05, tol=1e-12, overrelax=omega)
        v.backward()
        vals.append(v.item())
        grads.append(xr.grad.numpy())
    np.testing.assert_allclose(vals[1], vals[0], rtol=1e-10)
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-9)


def test_float32_cuda_and_bad_arguments_are_refused(small):
    x32 = torch.tensor(small["x"], dtype=torch.float32)
    with pytest.raises(TypeError, match=r"x: dtype = torch.float32, must be torch.float64 .*x\.double\(\)"):
        aft.attention(x32)
    with pytest.raises(TypeError, match="y: dtype = torch.float32"):
        aft.ot_cost(t(small["x"]), torch.tensor(small["y"], dtype=torch.float32), eps=0.1)
    with pytest.raises(TypeError, match="x: ndarray given, must be a torch.Tensor"):
        aft.attention(small["x"])
    with pytest.raises(ValueError, match="sinkhorn: eps = None, must be > 0|eps = None"):
        aft.ot_cost(t(small["x"]), t(small["y"]))
    with pytest.raises(ValueError, match="attention: normalization"):
        aft.attention(t(small["x"]), normalization="softmx")


def test_in_place_change_before_backward_is_refused(small):
    x = t(small["x"])
    y = torch.tensor(small["y"])
    out = aft.attention(x, y)
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_non_converged_ot_warns(small):
    with pytest.warns(RuntimeWarning, match="attnflow.torch"):
        aft.ot_cost(t(small["x"]), t(small["y"]), eps=0.01, tol=1e-15, max_iterations=3)


def test_modules_train():
    gen = torch.Generator().manual_seed(1)
    n, d = 24, 3
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    target = torch.randn(n, d, dtype=torch.float64, generator=gen)
    layer = aft.MeasureAttention(d, normalization="softmax", learn_beta=True, generator=gen)
    assert {name for name, _ in layer.named_parameters()} == {"q", "k", "head_v", "head_w", "beta"}
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((layer(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    # Several heads: one parameter list per matrix, trained together.
    layer = aft.MeasureAttention(d, d_k=2, n_heads=3, generator=gen)
    assert {name for name, _ in layer.named_parameters()} == {
        f"{m}.{h}" for m in ("qs", "ks", "head_vs", "head_ws") for h in range(3)}
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((layer(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    # Point clouds moved toward a target by the Sinkhorn divergence.
    y = torch.randn(30, d, dtype=torch.float64, generator=gen) + 2.0
    z = x.clone().requires_grad_(True)
    div = aft.SinkhornDivergence(eps=0.5, tol=1e-5)
    start = div(z, y).item()
    opt = torch.optim.SGD([z], lr=5.0)
    for _ in range(10):
        opt.zero_grad()
        loss = div(z, y)
        loss.backward()
        opt.step()
    assert div(z, y).item() < 0.5 * start
    assert aft.OTCost(eps=0.5, tol=1e-5)(x, y).item() > 0
