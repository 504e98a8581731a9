"""Reference add_rms_norm: ``residual_out = x + residual``; ``out = rms_norm(residual_out)``.

The sum is rounded to the input dtype before normalising, as the residual stream
is stored in that dtype between layers.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    check_dtype,
    check_out,
    check_same_dtype,
    check_shape,
    write,
)
from tessera.pluggable_layers.reference.rms_norm import normalize


def add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    residual_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    op = "add_rms_norm"
    check_dtype(op, "x", x, FLOATS)
    check_same_dtype(op, x=x, residual=residual)
    check_shape(op, "residual", residual, tuple(x.shape))
    check_shape(op, "weight", weight, (x.shape[-1],))
    check_out(op, out, tuple(x.shape), x.dtype)
    check_out(op, residual_out, tuple(x.shape), x.dtype)
    summed = (x.to(torch.float64 if x.dtype == torch.float64 else torch.float32) + residual).to(x.dtype)
    normed = normalize(summed, weight, eps).to(x.dtype)
    return write(out, normed), write(residual_out, summed)
