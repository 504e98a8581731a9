"""Reference linear_fp8: dynamic per-token activation quantization times a per-channel fp8 weight.

``weight[N,K]`` is stored in an fp8 dtype (``float8_e4m3fn``, or ``float8_e4m3fnuz``
on ROCm gfx942) with ``weight_scale[N]`` so that ``weight_scale[n] * weight[n]`` is
the real weight. Each row of ``x`` is scaled by ``amax(|x[t]|) / fp8_max``, rounded
to the same fp8 dtype, and the product of the two dequantized operands plus bias
is returned in x's dtype.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    acc_dtype,
    check_dtype,
    check_out,
    check_shape,
    fail,
    write,
)
from tessera.pluggable_layers.reference.linear import check_linear_args

FP8_DTYPES = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e4m3fnuz") if hasattr(torch, n))


def quantize_per_token(x: torch.Tensor, fp8: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_q in ``fp8``, scale[T, 1] in float32) with ``x ~= x_q * scale``."""
    fmax = torch.finfo(fp8).max
    xf = x.to(acc_dtype(x))
    scale = (xf.abs().amax(dim=-1, keepdim=True) / fmax).clamp(min=1e-12)
    return (xf / scale).clamp(-fmax, fmax).to(fp8), scale.to(torch.float32)


def quantize_per_channel(weight: torch.Tensor, fp8: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_q[N, K] in ``fp8``, scale[N] float32): the on-load quantization of a Linear weight."""
    q, scale = quantize_per_token(weight, fp8)
    return q, scale.squeeze(-1)


def linear_fp8(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "linear_fp8"
    check_dtype(op, "x", x, FLOATS)
    if weight.dtype not in FP8_DTYPES:
        fail(op, f"weight must be stored in an fp8 dtype, got {weight.dtype}; quantize it on load")
    check_linear_args(op, x, weight, bias)
    check_shape(op, "weight_scale", weight_scale, (weight.shape[0],))
    check_out(op, out, (x.shape[0], weight.shape[0]), x.dtype)
    acc = acc_dtype(x)
    xq, xs = quantize_per_token(x, weight.dtype)
    y = (xq.to(acc) * xs.to(acc)) @ (weight.to(acc) * weight_scale.to(acc)[:, None]).T
    if bias is not None:
        y = y + bias.to(acc)
    return write(out, y.to(x.dtype))
