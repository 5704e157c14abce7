"""attnflow.attention: attention on weighted measures: softmax | sinkhorn | none, several heads,
gradients, and the log-sum-exp kernel reduction it is built on (lse_reduce).

The C++ modules attnflow_attention and attnflow_kernel (include/attnflow/attention/attention.hpp,
attention_grad.hpp, normalization.hpp, kernel.hpp).

The module is callable as the attention function: ``attnflow.attention(x, ...)`` is
``attnflow.attention.attention(x, ...)`` (the flat name is both the module and the function).
"""
import sys as _sys
import types as _types

from ._attnflow import (  # noqa: F401
    AttentionHead, AttentionOptions, AttentionResult, Head, Normalization, NormalizationStatus,
    SinkhornNormalizationOptions, SinkhornStats, attention, attention_gradient,
    attention_result, lse_reduce, parse_normalization, self_attention,
)

__all__ = ["AttentionHead", "AttentionOptions", "AttentionResult", "Head", "Normalization",
           "NormalizationStatus", "SinkhornNormalizationOptions", "SinkhornStats", "attention",
           "attention_gradient", "attention_result", "lse_reduce", "parse_normalization",
           "self_attention"]


class _CallableModule(_types.ModuleType):
    """attnflow.attention is this module and, called, the attention function (the flat name
    attnflow.attention was the function before the submodules existed)."""

    def __call__(self, *args, **kwargs):
        return attention(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
