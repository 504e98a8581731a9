"""Reference linear: ``x[T,K] @ weight[N,K].T + bias[N]``, accumulated in float32 (or float64)."""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, acc_dtype, check_dtype, check_out, check_rank, fail, write


def check_linear_args(op: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    check_rank(op, "x", x, 2)
    check_rank(op, "weight", weight, 2)
    if x.shape[1] != weight.shape[1]:
        fail(op, f"x has {x.shape[1]} input features but weight expects {weight.shape[1]} (weight is [N, K])")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        fail(op, f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    op = "linear"
    check_dtype(op, "x", x, FLOATS)
    check_linear_args(op, x, weight, bias)
    check_out(op, out, (x.shape[0], weight.shape[0]), x.dtype)
    acc = acc_dtype(x)
    y = x.to(acc) @ weight.to(acc).T
    if bias is not None:
        y = y + bias.to(acc)
    return write(out, y.to(x.dtype))
