"""attnflow.torch: attnflow's attention and entropic OT as PyTorch autograd functions.

CPU tensors, float64 (float32 is refused with a TypeError, as in the NumPy API: attnflow
computes in float64 and never converts silently). Tensors reach the C++ library without a
copy (``tensor.numpy()`` views) and results come back without one (``torch.from_numpy``);
forward values are those of the NumPy API, bit for bit.

- ``attention(x, y, v, wx, wy, beta, q, k, normalization, ...)``: attention on weighted
  measures (softmax | sinkhorn | none), differentiable with respect to x, y, v, wx, wy, beta,
  q, k and the head's value / output matrices ``head_v``, ``head_w``; several heads with
  ``heads=[(q, k, v[, w]), ...]`` (gradients with respect to every head's matrices). The backward pass is the
  library's (attention_grad.hpp): kernel reductions, no n x m matrix; Sinkhorn heads are
  differentiated through the normalization's iterations.
- ``ot_cost(x, y, a, b, eps=...)``: OT_eps for |x - y|^2 (SinkhornResult.objective) and
  ``sinkhorn_divergence(x, y, a, b, eps=...)``; gradients by the envelope theorem (as
  GeomLoss: no backpropagation through the Sinkhorn iterations), computed in the forward pass.
- ``nn.Module`` wrappers: ``MeasureAttention`` (learnable q, k, v, w, optionally beta),
  ``OTCost``, ``SinkhornDivergence``.

Argument names are the NumPy API's (``attnflow.attention``, ``attnflow.sinkhorn``), options
as keywords. Double backward is not supported.
"""
import warnings

import numpy as np
import torch
from torch import nn

from . import _attnflow as _ext

__all__ = ["attention", "ot_cost", "sinkhorn_divergence", "MeasureAttention", "OTCost",
           "SinkhornDivergence"]


def _array(t, name):
    """A zero-copy NumPy view of a CPU float64 tensor (None stays None)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: {type(t).__name__} given, must be a torch.Tensor")
    if t.device.type != "cpu":
        raise ValueError(f"{name}: device = {t.device}, must be cpu (attnflow runs on the CPU; "
                         f"pass {name}.cpu())")
    if t.dtype != torch.float64:
        raise TypeError(f"{name}: dtype = {t.dtype}, must be torch.float64 (attnflow computes in "
                        f"float64 and does not convert silently: pass {name}.double())")
    if t.is_complex() or t.is_sparse:
        raise TypeError(f"{name}: must be a dense real tensor")
    return t.detach().contiguous().numpy()  # contiguous(): no copy when already contiguous


def _tensor(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _beta_value(beta):
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(f"beta: tensor with {beta.numel()} elements, must be a scalar")
        if beta.dtype != torch.float64:
            raise TypeError(f"beta: dtype = {beta.dtype}, must be torch.float64")
        return float(beta.detach().item())
    return float(beta)


class _AttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, v, wx, wy, beta, options, n_heads, *head_mats):
        # head_mats: n_heads groups of 4 (q, k, v_h, w_h), None = identity; n_heads = 0: one
        # identity head (no q, k given).
        args = dict(x=_array(x, "x"), y=_array(y, "y"), v=_array(v, "v"), wx=_array(wx, "wx"),
                    wy=_array(wy, "wy"), beta=_beta_value(beta), **options["call"])
        names = options["names"]
        mats = [_array(t, n) for t, n in zip(head_mats, names)]
        if options["as_heads"]:
            args["heads"] = [_ext.AttentionHead(*mats[4 * h:4 * h + 4], options["call"]["normalization"])
                             for h in range(n_heads)]
        elif n_heads:
            args.update(q=mats[0], k=mats[1])
        out = _ext.attention(**args)
        # The NumPy views in args share the tensors' storage; saving the tensors makes autograd
        # refuse a backward pass after an in-place change (version check on saved_tensors).
        ctx.save_for_backward(*[t for t in (x, y, v, wx, wy, *head_mats) if t is not None])
        ctx.args = args
        ctx.beta_is_tensor = isinstance(beta, torch.Tensor)
        ctx.as_heads = options["as_heads"]
        ctx.n_heads = n_heads
        return _tensor(out)

    @staticmethod
    def backward(ctx, grad_out):
        ctx.saved_tensors  # noqa: B018  (raises if an input was modified in place)
        g = _ext.attention_gradient(**ctx.args, grad_out=_array(grad_out.contiguous(), "grad_out"))
        head_grads = []
        for h in range(ctx.n_heads):
            head_grads += [_tensor(g["dq"][h]), _tensor(g["dk"][h])]
            head_grads += ([_tensor(g["head_dv"][h]), _tensor(g["head_dw"][h])] if ctx.as_heads
                           else [None, None])
        dbeta = torch.tensor(g["dbeta"], dtype=torch.float64) if ctx.beta_is_tensor else None
        return (_tensor(g["dx"]), _tensor(g["dy"]), _tensor(g["dv"]), _tensor(g["dwx"]),
                _tensor(g["dwy"]), dbeta, None, None, *head_grads)


def _head_list(heads):
    """heads=[(q, k, v[, w]), ...] as n groups of 4 tensors (None = identity) and their names."""
    if not isinstance(heads, (list, tuple)) or not heads:
        given = f"a {type(heads).__name__}" if not isinstance(heads, (list, tuple)) else "empty"
        raise ValueError(f"attention: heads is {given}, must be a non-empty list of (q, k, v) "
                         "or (q, k, v, w) tuples (None entries = identity)")
    mats, names = [], []
    for h, head in enumerate(heads):
        if not isinstance(head, (list, tuple)) or len(head) not in (3, 4):
            given = (f"a tuple of {len(head)}" if isinstance(head, (list, tuple))
                     else f"a {type(head).__name__}")
            raise ValueError(f"attention: heads[{h}] is {given}, must be a (q, k, v) or "
                             "(q, k, v, w) tuple")
        mats += list(head) + [None] * (4 - len(head))
        names += [f"heads[{h}][{i}]" for i in range(4)]
    return mats, names


def attention(x, y=None, v=None, wx=None, wy=None, beta=1.0, q=None, k=None,
              normalization="softmax", *, heads=None, head_v=None, head_w=None,
              sinkhorn_iterations=0, tol=1e-9, max_iterations=10000):
    """Attention between weighted point clouds, differentiable (see attnflow.attention).

    x (n, d) queries, y (m, d) keys (None: x, with wx), v (m, p) values (None: y), wx (n),
    wy (m) weights (None: uniform; given weights are normalized to sum 1, and their gradient
    includes that normalization), beta a float or a 0-d tensor, q, k (d_k, d) (None:
    identity), head_v (p_h, p) and head_w (d_out, p_h) the head's value and output matrices
    (None: identity). Several heads: heads=[(q, k, v), (q, k, v, w), ...] per head (as
    attnflow.attention's heads=[AttentionHead(q, k, v, w), ...]; None entries = identity),
    instead of q, k, head_v, head_w; gradients flow to each head's matrices.
    normalization softmax | sinkhorn | none (every head); Sinkhorn: sinkhorn_iterations > 0
    fixes the number of f-updates, else iterate to tol. Returns out (n, d_out).
    """
    call = dict(normalization=normalization, sinkhorn_iterations=sinkhorn_iterations,
                tol=tol, max_iterations=max_iterations)
    if heads is not None:
        if any(a is not None for a in (q, k, head_v, head_w)):
            raise ValueError("attention: heads and q/k/head_v/head_w both given, must give one "
                             "of them")
        mats, names = _head_list(heads)
        as_heads = True
    else:
        mats, names = [q, k, head_v, head_w], ["q", "k", "head_v", "head_w"]
        as_heads = head_v is not None or head_w is not None
        if not as_heads and q is None and k is None:
            mats, names = [], []
    options = dict(call=call, names=names, as_heads=as_heads)
    return _AttentionFn.apply(x, y, v, wx, wy, beta, options, len(mats) // 4, *mats)


class _OtFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, a, b, fn, options):
        r = fn(_array(x, "x"), _array(y, "y"), _array(a, "a"), _array(b, "b"), **options)
        if not r["converged"]:
            warnings.warn(f"attnflow.torch: {r['message']}", RuntimeWarning, stacklevel=3)
        ctx.grads = [_tensor(r[key]) for key in ("dx", "dy", "da", "db")]
        return torch.tensor(r["value"], dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad):
        out = [None if t is None else grad * t for t in ctx.grads]
        return (*out, None, None)


def _ot_options(eps, tol, max_iterations, eps_scaling, scaling, eps_start, overrelax):
    return dict(eps=eps, tol=tol, max_iterations=max_iterations, eps_scaling=eps_scaling,
                scaling=scaling, eps_start=eps_start, overrelax=overrelax)


def ot_cost(x, y, a=None, b=None, eps=None, tol=1e-6, *, max_iterations=10000,
            eps_scaling=True, scaling=0.8, eps_start=0.0, overrelax=1.0):
    """OT_eps(mu, nu) = min <C, pi> + eps KL(pi | a x b), C_ij = |x_i - y_j|^2, as a 0-d
    tensor (= attnflow.sinkhorn(x, y, a, b, eps=eps).objective, bit for bit). Gradients with
    respect to x, y, a, b by the envelope theorem: dx_i = 2 a_i (x_i - T(x_i)), da = f, ...
    (attnflow/ot/ot_gradient.hpp). A solve that does not converge warns (RuntimeWarning)."""
    return _OtFn.apply(x, y, a, b, _ext.ot_cost_gradient,
                       _ot_options(eps, tol, max_iterations, eps_scaling, scaling, eps_start,
                                   overrelax))


def sinkhorn_divergence(x, y, a=None, b=None, eps=None, tol=1e-6, *, max_iterations=10000,
                        eps_scaling=True, scaling=0.8, eps_start=0.0, overrelax=1.0):
    """The debiased Sinkhorn divergence OT(mu, nu) - OT(mu, mu)/2 - OT(nu, nu)/2 as a 0-d
    tensor (= attnflow.sinkhorn_divergence(x, y, a, b, eps=eps).value, bit for bit), with
    envelope-theorem gradients with respect to x, y, a, b."""
    return _OtFn.apply(x, y, a, b, _ext.sinkhorn_divergence_gradient,
                       _ot_options(eps, tol, max_iterations, eps_scaling, scaling, eps_start,
                                   overrelax))


class MeasureAttention(nn.Module):
    """Attention heads on weighted measures with learnable q, k (d_k, d), value matrix
    head_v (d_v, p) and output matrix head_w (d_out, d_v) per head; beta learnable when
    learn_beta. n_heads = 1: parameters q, k, head_v, head_w; n_heads > 1: parameter lists
    qs, ks, head_vs, head_ws (one entry per head; the outputs of the heads are summed, as in
    attnflow.attention(heads=...)).

    forward(x, y=None, v=None, wx=None, wy=None) -> (n, d_out), as attention(...).
    Parameters are float64 (attnflow computes in float64)."""

    def __init__(self, d, d_k=None, d_v=None, d_out=None, p=None, normalization="softmax",
                 beta=1.0, learn_beta=False, sinkhorn_iterations=0, tol=1e-9,
                 max_iterations=10000, generator=None, n_heads=1):
        super().__init__()
        if int(n_heads) != n_heads or n_heads < 1:
            raise ValueError(f"MeasureAttention: n_heads = {n_heads}, must be an integer >= 1")
        d_k, p = d_k or d, p or d
        d_v = d_v or p
        d_out = d_out or d_v
        opts = dict(dtype=torch.float64)

        def init(rows, cols):
            w = torch.randn(rows, cols, generator=generator, **opts) / cols ** 0.5
            return nn.Parameter(w)

        self.n_heads = int(n_heads)
        if self.n_heads == 1:
            self.q, self.k = init(d_k, d), init(d_k, d)
            self.head_v, self.head_w = init(d_v, p), init(d_out, d_v)
        else:
            per_head = [(init(d_k, d), init(d_k, d), init(d_v, p), init(d_out, d_v))
                        for _ in range(self.n_heads)]
            self.qs, self.ks, self.head_vs, self.head_ws = (
                nn.ParameterList([h[i] for h in per_head]) for i in range(4))
        self._shape = dict(d=d, d_k=d_k, d_v=d_v, d_out=d_out)
        beta_t = torch.tensor(float(beta), **opts)
        self.beta = nn.Parameter(beta_t) if learn_beta else beta_t
        self.normalization = normalization
        self.sinkhorn = dict(sinkhorn_iterations=sinkhorn_iterations, tol=tol,
                             max_iterations=max_iterations)

    def forward(self, x, y=None, v=None, wx=None, wy=None):
        if self.n_heads == 1:
            return attention(x, y, v, wx, wy, self.beta, self.q, self.k, self.normalization,
                             head_v=self.head_v, head_w=self.head_w, **self.sinkhorn)
        heads = list(zip(self.qs, self.ks, self.head_vs, self.head_ws))
        return attention(x, y, v, wx, wy, self.beta, normalization=self.normalization,
                         heads=heads, **self.sinkhorn)

    def extra_repr(self):
        s = self._shape
        return (f"d={s['d']}, d_k={s['d_k']}, d_v={s['d_v']}, d_out={s['d_out']}, "
                f"n_heads={self.n_heads}, normalization={self.normalization!r}")


class OTCost(nn.Module):
    """forward(x, y, a=None, b=None) -> ot_cost(x, y, a, b, eps=eps, ...)."""

    def __init__(self, eps, tol=1e-6, **options):
        super().__init__()
        self.eps, self.tol, self.options = eps, tol, options

    def forward(self, x, y, a=None, b=None):
        return ot_cost(x, y, a, b, eps=self.eps, tol=self.tol, **self.options)


class SinkhornDivergence(nn.Module):
    """forward(x, y, a=None, b=None) -> sinkhorn_divergence(x, y, a, b, eps=eps, ...)."""

    def __init__(self, eps, tol=1e-6, **options):
        super().__init__()
        self.eps, self.tol, self.options = eps, tol, options

    def forward(self, x, y, a=None, b=None):
        return sinkhorn_divergence(x, y, a, b, eps=self.eps, tol=self.tol, **self.options)
