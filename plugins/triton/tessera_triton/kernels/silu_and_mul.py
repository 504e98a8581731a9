"""Triton silu_and_mul: out[t, i] = silu(x[t, i]) * x[t, I + i].

Layout: x [T, 2I] with a unit stride in the last dimension; out [T, I]. A 2-D
grid of (rows, column tiles of BLOCK); math in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import (
    check_dtype,
    check_last_dim_contiguous,
    check_out,
    check_rank,
    fail,
)
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, constants, launch_options

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK": [128, 256, 512, 1024, 2048], "num_warps": [1, 2, 4, 8]},
    default={"BLOCK": 1024, "num_warps": 4},
    constraints=[lambda c: c["BLOCK"] >= 32 * c["num_warps"]],
)
SHAPE_KEY = ShapeKey(
    {"inter": "pow2", "tokens": "pow2"}, lambda x, *a, **k: {"inter": x.shape[-1] // 2, "tokens": x.shape[0]}
)


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, inter, stride_x, stride_o, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter
    gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + inter + cols, mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + row * stride_o + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x, out=None, config=None):
    op = "silu_and_mul"
    check_rank(op, "x", x, 2)
    check_dtype(op, "x", x, (torch.float32, torch.float16, torch.bfloat16))
    check_last_dim_contiguous(op, "x", x)
    if x.shape[1] % 2:
        fail(op, f"the last dimension of x must be even (gate and up halves), got {x.shape[1]}")
    inter = x.shape[1] // 2
    check_out(op, out, (x.shape[0], inter), x.dtype)
    out = torch.empty((x.shape[0], inter), dtype=x.dtype, device=x.device) if out is None else out
    config = config or CONFIG_SPACE.default
    if x.shape[0] and inter:
        grid = (x.shape[0], triton.cdiv(inter, config["BLOCK"]))
        _silu_and_mul_kernel[grid](
            x, out, inter, x.stride(0), out.stride(0),
            **constants(config, _silu_and_mul_kernel), **launch_options(config),
        )  # fmt: skip
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    return (torch.randn(shape["tokens"], 2 * shape["inter"], dtype=dtype, device=device),), {}
