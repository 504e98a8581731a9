"""linear through torch (cuBLAS / cuBLASLt) for float32, float16 and bfloat16.

Layout: x [T, K], weight [N, K] (the Hugging Face layout), bias [N] or None;
out [T, N] in x's dtype. Graph-safe: no host synchronisation.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, check_same_dtype
from tessera.pluggable_layers.reference.linear import check_linear_args


def linear(x, weight, bias=None, out=None):
    op = "linear"
    check_dtype(op, "x", x, FLOATS)
    check_same_dtype(op, x=x, weight=weight, bias=bias)
    check_linear_args(op, x, weight, bias)
    check_out(op, out, (x.shape[0], weight.shape[0]), x.dtype)
    if out is None:
        return torch.nn.functional.linear(x, weight, bias)
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)
