"""linear over a K-major weight: the pack's `prepare` transposes the checkpoint's [N, K] weight once.

Plugin API 1.2: a kernel may own its weight layout. ``prepare`` receives the op's weight
arguments as the checkpoint holds them (here ``weight`` [N, K], row per output feature) and
returns them, under the same names, in the kernel's own form ([K, N], contiguous, the layout a
GEMM that streams K rows reads best). The layer runs it once after loading (and after a reload)
and keeps only what it returns, so the memory is not doubled; the conformance suite runs every
op case through it, so a wrong repack fails with its error figure.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import check_dtype, check_out, fail, write

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
PREPARED_LAYOUT = "weight [K, N] contiguous (the checkpoint's [N, K] transposed)"


def prepare(weights: dict, **facts) -> dict:
    return {"weight": weights["weight"].t().contiguous()}


def linear(x, weight, bias=None, out=None):
    op = "linear"
    check_dtype(op, "x", x, FLOATS)
    if weight.dim() != 2 or weight.shape[0] != x.shape[-1]:
        fail(op, f"the prepared weight must be [K={x.shape[-1]}, N], got {tuple(weight.shape)}: run the kernel's "
                 "prepare on the checkpoint weight")  # fmt: skip
    n = weight.shape[1]
    if bias is not None and tuple(bias.shape) != (n,):
        fail(op, f"bias must have shape ({n},), got {tuple(bias.shape)}")
    check_out(op, out, (x.shape[0], n), x.dtype)
    y = x @ weight.to(x.dtype)
    if bias is not None:
        y = y + bias.to(x.dtype)
    return write(out, y)
