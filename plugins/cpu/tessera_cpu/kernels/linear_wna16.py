"""linear_wna16 on the CPU: the 4-bit weight is dequantized once, by ``prepare``, into a dense [N, K] weight.

The CPU has no 4-bit matmul; a dense weight in the activation dtype makes every call one
``torch.nn.functional.linear`` (the same as the ``linear`` op), at the cost of holding the weight in
16 or 32 bits. ``prepare`` returns that weight as ``qweight`` and drops ``scales`` and ``qzeros``.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, fail, write
from tessera.pluggable_layers.reference.linear_wna16 import dequantize

PREPARED_LAYOUT = (
    "dense weight [N, K] in the scales' dtype (dequantized once at load; scales, qzeros dropped)"
)


def prepare(weights, weight_format: str = "gptq", **facts):
    w = dequantize(weights["qweight"], weights["scales"], weights["qzeros"], weight_format)
    return {"qweight": w.contiguous(), "scales": None, "qzeros": None}


def linear_wna16(x, qweight, scales, qzeros, bias=None, weight_format="gptq", out=None):
    op = "linear_wna16"
    check_dtype(op, "x", x, FLOATS)
    if scales is not None or not qweight.is_floating_point():
        fail(
            op,
            "the cpu kernel takes the dense weight its prepare made; run its prepare on the checkpoint weights",
        )
    if qweight.shape[1] != x.shape[1]:
        fail(op, f"x has {x.shape[1]} input features but the prepared weight has {qweight.shape[1]}")
    check_out(op, out, (x.shape[0], qweight.shape[0]), x.dtype)
    return write(
        out, torch.nn.functional.linear(x, qweight.to(x.dtype), None if bias is None else bias.to(x.dtype))
    )
