"""Reference silu_and_mul: ``silu(x[:, :I]) * x[:, I:]`` for ``x[T, 2I]``."""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, acc_dtype, check_dtype, check_out, fail, write


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    op = "silu_and_mul"
    check_dtype(op, "x", x, FLOATS)
    if x.shape[-1] % 2:
        fail(op, f"the last dimension of x must be even (gate and up halves), got {x.shape[-1]}")
    half = x.shape[-1] // 2
    check_out(op, out, (*x.shape[:-1], half), x.dtype)
    xf = x.to(acc_dtype(x))
    return write(out, (torch.nn.functional.silu(xf[..., :half]) * xf[..., half:]).to(x.dtype))
