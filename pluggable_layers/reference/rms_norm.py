"""Reference rms_norm: ``x * rsqrt(mean(x^2, -1) + eps) * weight``, accumulated in float32 (or float64)."""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, acc_dtype, check_dtype, check_out, check_shape, write


def normalize(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    acc = acc_dtype(x)
    xf = x.to(acc)
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.to(acc)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    op = "rms_norm"
    check_dtype(op, "x", x, FLOATS)
    check_shape(op, "weight", weight, (x.shape[-1],))
    check_out(op, out, tuple(x.shape), x.dtype)
    return write(out, normalize(x, weight, eps).to(x.dtype))
