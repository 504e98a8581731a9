"""Torch-native rms_norm, add_rms_norm and silu_and_mul: fused torch ops in the input dtype."""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    check_dtype,
    check_out,
    check_same_dtype,
    check_shape,
    fail,
    write,
)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    check_dtype("rms_norm", "x", x, FLOATS)
    check_shape("rms_norm", "weight", weight, (x.shape[-1],))
    check_out("rms_norm", out, tuple(x.shape), x.dtype)
    if x.dtype == torch.float32:
        return write(out, torch.nn.functional.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps))
    y = torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), weight.float(), eps)
    return write(out, y.to(x.dtype))


def add_rms_norm(x, residual, weight, eps, out=None, residual_out=None):
    check_dtype("add_rms_norm", "x", x, FLOATS)
    check_same_dtype("add_rms_norm", x=x, residual=residual)
    check_shape("add_rms_norm", "residual", residual, tuple(x.shape))
    summed = x + residual
    return rms_norm(summed, weight, eps, out=out), write(residual_out, summed)


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    check_dtype("silu_and_mul", "x", x, FLOATS)
    if x.shape[-1] % 2:
        fail("silu_and_mul", f"the last dimension of x must be even, got {x.shape[-1]}")
    half = x.shape[-1] // 2
    check_out("silu_and_mul", out, (*x.shape[:-1], half), x.dtype)
    if out is None:
        return torch.nn.functional.silu(x[..., :half]) * x[..., half:]
    torch.mul(torch.nn.functional.silu(x[..., :half]), x[..., half:], out=out)
    return out


def linear(x, weight, bias=None, out=None):
    from tessera.pluggable_layers.reference.linear import check_linear_args

    check_dtype("linear", "x", x, FLOATS)
    check_linear_args("linear", x, weight, bias)
    check_out("linear", out, (x.shape[0], weight.shape[0]), x.dtype)
    return write(out, torch.nn.functional.linear(x, weight, bias))
