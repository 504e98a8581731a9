"""Triton gated_rms_norm: Mamba2's grouped RMS norm of x * silu(z).

Layout: x, z, out [T, Dm] with unit stride in Dm; weight [Dm]. One program per
(row, group); a group no wider than BLOCK is read once, a wider one in two
passes (sum of squares, then scale and write), math in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_dtype, check_last_dim_contiguous, check_out
from tessera.pluggable_layers.reference.gated_rms_norm import gated_rms_norm as reference_gated_rms_norm
from tessera.pluggable_layers.tuning import ShapeKey
from tessera_triton.common import constants, launch_options
from tessera_triton.kernels import rms_norm

CONFIG_SPACE = rms_norm.CONFIG_SPACE  # the same row-tile parameters
SHAPE_KEY = ShapeKey(
    {"group_size": "pow2", "tokens": "pow2"},
    lambda x, z, weight, eps, group_size, *a, **k: {"group_size": group_size, "tokens": x.shape[0]},
)


@triton.jit
def _gated_input(x_ptr, z_ptr, cols, mask, HAS_Z: tl.constexpr):
    v = tl.load(x_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        v *= z / (1.0 + tl.exp(-z))
    return v


@triton.jit
def _gated_rms_norm_kernel(
    x_ptr, z_ptr, w_ptr, out_ptr, group_size, eps, stride_x, stride_z, stride_o,
    HAS_Z: tl.constexpr, BLOCK: tl.constexpr, SINGLE: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    first = tl.program_id(1) * group_size
    x_row, z_row, o_row = x_ptr + row * stride_x, z_ptr + row * stride_z, out_ptr + row * stride_o
    if SINGLE:
        offs = tl.arange(0, BLOCK)
        mask = offs < group_size
        v = _gated_input(x_row, z_row, first + offs, mask, HAS_Z)
        inv = 1.0 / tl.sqrt(tl.sum(v * v, axis=0) / group_size + eps)
        w = tl.load(w_ptr + first + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(o_row + first + offs, (v * inv * w).to(out_ptr.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, group_size, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            v = _gated_input(x_row, z_row, first + offs, offs < group_size, HAS_Z)
            acc += v * v
        inv = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / group_size + eps)
        for start in range(0, group_size, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < group_size
            v = _gated_input(x_row, z_row, first + offs, mask, HAS_Z)
            w = tl.load(w_ptr + first + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(o_row + first + offs, (v * inv * w).to(out_ptr.dtype.element_ty), mask=mask)


def gated_rms_norm(x, z, weight, eps, group_size, out=None, config=None):
    op = "gated_rms_norm"
    reference_gated_rms_norm(
        x[:0], None if z is None else z[:0], weight, eps, group_size
    )  # the contract's checks
    check_dtype(op, "x", x, (torch.float32, torch.float16, torch.bfloat16))
    check_last_dim_contiguous(op, "x", x)
    if z is not None:
        check_last_dim_contiguous(op, "z", z)
    check_out(op, out, tuple(x.shape), x.dtype)
    out = torch.empty_like(x) if out is None else out
    config = config or CONFIG_SPACE.default
    if x.shape[0]:
        zz = z if z is not None else x
        _gated_rms_norm_kernel[(x.shape[0], x.shape[1] // group_size)](
            x, zz, weight.contiguous(), out, group_size, eps, x.stride(0), zz.stride(0), out.stride(0),
            HAS_Z=z is not None, SINGLE=config["BLOCK"] >= group_size, **constants(config, _gated_rms_norm_kernel), **launch_options(config),
        )  # fmt: skip
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """Rows of 8 groups of ``group_size`` channels."""
    x = torch.randn(shape["tokens"], 8 * shape["group_size"], dtype=dtype, device=device)
    return (
        x,
        torch.randn_like(x),
        torch.randn(x.shape[1], dtype=dtype, device=device),
        1e-6,
        shape["group_size"],
    ), {}
