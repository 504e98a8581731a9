"""Reference gated_rms_norm: the grouped, gated RMS norm of the Mamba2 mixer.

``g = x * silu(z)`` (just ``x`` when z is None); the channels are split into
groups of ``group_size`` and each group is scaled by ``rsqrt(mean(g^2) + eps)``;
the result is multiplied by ``weight`` and cast to x's dtype.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    acc_dtype,
    check_dtype,
    check_out,
    check_rank,
    check_shape,
    fail,
    write,
)


def gated_rms_norm(
    x: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    group_size: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "gated_rms_norm"
    check_dtype(op, "x", x, FLOATS)
    check_rank(op, "x", x, 2)
    channels = x.shape[1]
    if group_size < 1 or channels % group_size:
        fail(op, f"group_size {group_size} must divide the {channels} channels")
    check_shape(op, "weight", weight, (channels,))
    if z is not None:
        check_shape(op, "z", z, tuple(x.shape))
    check_out(op, out, tuple(x.shape), x.dtype)
    acc = acc_dtype(x)
    g = x.to(acc)
    if z is not None:
        g = g * torch.nn.functional.silu(z.to(acc))
    grouped = g.view(x.shape[0], channels // group_size, group_size)
    normed = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + eps)
    return write(out, (normed.view_as(g) * weight.to(acc)).to(x.dtype))
