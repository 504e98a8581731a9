"""Torch-native rms_norm, add_rms_norm, silu_and_mul and linear on the CPU.

On a CPU every torch call costs microseconds of dispatch, which at decode sizes is most of the
time; these kernels make as few calls as they can: no conversion to a dtype the tensor already has,
the norm's scale computed on the ``[T, 1]`` column in place, the weight applied in place.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    acc_dtype,
    check_dtype,
    check_out,
    check_same_dtype,
    check_shape,
    fail,
    write,
)
from tessera.pluggable_layers.reference.linear import check_linear_args


def normalized(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x * rsqrt(mean(x^2) + eps) * weight`` in the accumulation dtype, in five small torch calls."""
    acc = acc_dtype(x)
    xf = x if x.dtype == acc else x.to(acc)
    norm = torch.linalg.vector_norm(xf, dim=-1, keepdim=True)  # [T, 1]
    # eps + |x|^2 / n; the Python scalar goes in as addcmul's `value`, which (unlike a scalar operand) is
    # not turned into a tensor and converted on every call
    scale = torch.addcmul(_scalar(eps, acc), norm, norm, value=1.0 / max(x.shape[-1], 1)).rsqrt_()
    return (xf * scale).mul_(weight if weight.dtype == acc else weight.to(acc))


_SCALARS: dict[tuple[float, torch.dtype], torch.Tensor] = {}


def _scalar(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A 0-dim tensor holding ``value``, made once per value and dtype."""
    key = (float(value), dtype)  # by value, whatever number type (or 0-dim tensor) eps came as
    if key not in _SCALARS:
        _SCALARS[key] = torch.tensor(key[0], dtype=dtype)
    return _SCALARS[key]


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    check_dtype("rms_norm", "x", x, FLOATS)
    check_shape("rms_norm", "weight", weight, (x.shape[-1],))
    check_out("rms_norm", out, x.shape, x.dtype)
    y = normalized(x, weight, eps)
    return write(out, y if y.dtype == x.dtype else y.to(x.dtype))


def add_rms_norm(x, residual, weight, eps, out=None, residual_out=None):
    check_dtype("add_rms_norm", "x", x, FLOATS)
    check_same_dtype("add_rms_norm", x=x, residual=residual)
    check_shape("add_rms_norm", "residual", residual, x.shape)
    check_out("add_rms_norm", residual_out, x.shape, x.dtype)
    summed = x + residual
    return rms_norm(summed, weight, eps, out=out), write(residual_out, summed)


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    check_dtype("silu_and_mul", "x", x, FLOATS)
    if x.shape[-1] % 2:
        fail("silu_and_mul", f"the last dimension of x must be even, got {x.shape[-1]}")
    gate, up = x.chunk(2, dim=-1)
    check_out("silu_and_mul", out, gate.shape, x.dtype)
    if out is None:
        return torch.nn.functional.silu(gate).mul_(up)
    torch.mul(torch.nn.functional.silu(gate), up, out=out)
    return out


def linear(x, weight, bias=None, out=None):
    check_dtype("linear", "x", x, FLOATS)
    check_linear_args("linear", x, weight, bias)
    check_out("linear", out, (x.shape[0], weight.shape[0]), x.dtype)
    weight = weight if weight.dtype == x.dtype else weight.to(x.dtype)  # as the reference: in x's dtype
    bias = bias if bias is None or bias.dtype == x.dtype else bias.to(x.dtype)
    return write(out, torch.nn.functional.linear(x, weight, bias))
