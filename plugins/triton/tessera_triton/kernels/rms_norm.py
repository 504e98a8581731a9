"""Triton rms_norm and add_rms_norm: one program per row, two passes over the row in BLOCK tiles.

Layout: x, residual, out and residual_out are [T, H] with a unit stride in the
last dimension (rows may be strided); weight is [H]. Accumulation in float32.
Rows no wider than BLOCK are read once (SINGLE); wider rows take two passes: pass one sums squares (adding the residual first for add_rms_norm and storing
the sum, rounded to x's dtype, to residual_out); pass two recomputes the row,
scales it and writes.
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
    check_same_dtype,
    check_shape,
)
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, constants, launch_options

FLOATS = (torch.float32, torch.float16, torch.bfloat16)

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK": [256, 512, 1024, 2048, 4096, 8192], "num_warps": [1, 2, 4, 8, 16]},
    default={"BLOCK": 1024, "num_warps": 4},
    constraints=[lambda c: c["BLOCK"] >= 32 * c["num_warps"]],
)
SHAPE_KEY = ShapeKey(
    {"hidden": "pow2", "tokens": "pow2"}, lambda x, *a, **k: {"hidden": x.shape[-1], "tokens": x.shape[0]}
)


@triton.jit
def _rms_norm_kernel(
    x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr, H, eps,
    stride_x, stride_r, stride_o, stride_ro,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr, SINGLE: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    if SINGLE:  # the row fits one tile: read it once
        cols = tl.arange(0, BLOCK)
        mask = cols < H
        v = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            v += tl.load(res_ptr + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
            v_rounded = v.to(res_out_ptr.dtype.element_ty)
            tl.store(res_out_ptr + row * stride_ro + cols, v_rounded, mask=mask)
            v = v_rounded.to(tl.float32)
        inv = 1.0 / tl.sqrt(tl.sum(v * v, axis=0) / H + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * stride_o + cols, (v * inv * w).to(out_ptr.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, H, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < H
            v = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:
                v += tl.load(res_ptr + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
                v_rounded = v.to(res_out_ptr.dtype.element_ty)
                tl.store(res_out_ptr + row * stride_ro + cols, v_rounded, mask=mask)
                v = v_rounded.to(tl.float32)
            acc += v * v
        inv = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / H + eps)
        for start in range(0, H, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < H
            v = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:  # recomputed rather than re-read, so no thread reads another's store
                v += tl.load(res_ptr + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
                v = v.to(res_out_ptr.dtype.element_ty).to(tl.float32)
            w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(out_ptr + row * stride_o + cols, (v * inv * w).to(out_ptr.dtype.element_ty), mask=mask)


def _check(op, x, weight, out):
    check_rank(op, "x", x, 2)
    check_dtype(op, "x", x, FLOATS)
    check_last_dim_contiguous(op, "x", x)
    check_shape(op, "weight", weight, (x.shape[1],))
    check_out(op, out, tuple(x.shape), x.dtype)


def rms_norm(x, weight, eps, out=None, config=None):
    _check("rms_norm", x, weight, out)
    config = config or CONFIG_SPACE.default
    out = torch.empty_like(x) if out is None else out
    if x.shape[0]:
        _rms_norm_kernel[(x.shape[0],)](
            x, x, weight.contiguous(), out, out, x.shape[1], eps,
            x.stride(0), x.stride(0), out.stride(0), out.stride(0),
            HAS_RESIDUAL=False, SINGLE=config["BLOCK"] >= x.shape[1], **constants(config, _rms_norm_kernel), **launch_options(config),
        )  # fmt: skip
    return out


def add_rms_norm(x, residual, weight, eps, out=None, residual_out=None, config=None):
    op = "add_rms_norm"
    _check(op, x, weight, out)
    check_same_dtype(op, x=x, residual=residual)
    check_shape(op, "residual", residual, tuple(x.shape))
    check_last_dim_contiguous(op, "residual", residual)
    check_out(op, residual_out, tuple(x.shape), x.dtype)
    config = config or CONFIG_SPACE.default
    out = torch.empty_like(x) if out is None else out
    residual_out = torch.empty_like(x) if residual_out is None else residual_out
    if x.shape[0]:
        _rms_norm_kernel[(x.shape[0],)](
            x, residual, weight.contiguous(), out, residual_out, x.shape[1], eps,
            x.stride(0), residual.stride(0), out.stride(0), residual_out.stride(0),
            HAS_RESIDUAL=True, SINGLE=config["BLOCK"] >= x.shape[1], **constants(config, _rms_norm_kernel), **launch_options(config),
        )  # fmt: skip
    return out, residual_out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    x = torch.randn(shape["tokens"], shape["hidden"], dtype=dtype, device=device)
    return (x, torch.randn(shape["hidden"], dtype=dtype, device=device), 1e-6), {}


def add_tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    (x, w, eps), _ = tune_inputs(shape, dtype, device)
    return (x, torch.randn_like(x), w, eps), {}
