"""Triton rotary_embedding: one launch, one program per (token, head) of q and k, neox or gptj pairing.

Layout: positions [T]; q [T, Hq, D] and k [T, Hk, D] with a unit stride in the
last dimension (token and head strides free, so views of a fused qkv work);
cos_sin_cache [P, R] (R/2 cosines then R/2 sines per position); outputs are new
contiguous tensors unless q_out / k_out are given (they may alias q / k for an
in-place update). Dims R..D pass through. Math in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import (
    INDEX,
    check_dtype,
    check_index_range,
    check_last_dim_contiguous,
    check_out,
    check_rank,
    fail,
)
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, launch_options, next_pow2

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS, params={"num_warps": [1, 2, 4, 8]}, default={"num_warps": 1}
)
SHAPE_KEY = ShapeKey(
    {"head_size": "exact", "tokens": "pow2"},
    lambda positions, q, *a, **k: {"head_size": q.shape[-1], "tokens": q.shape[0]},
)


@triton.jit
def _rotary_embedding_kernel(
    pos_ptr, q_ptr, q_out_ptr, k_ptr, k_out_ptr, cache_ptr,
    stride_qt, stride_qh, stride_qot, stride_qoh, stride_kt, stride_kh, stride_kot, stride_koh, stride_cache,
    HQ: tl.constexpr, HEAD: tl.constexpr, ROT: tl.constexpr, IS_NEOX: tl.constexpr, HALF_BLOCK: tl.constexpr,
    TAIL_BLOCK: tl.constexpr,
):  # fmt: skip
    """Heads 0..HQ-1 of the grid's second axis are q's, the rest k's."""
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    if h < HQ:
        src = q_ptr + t * stride_qt + h * stride_qh
        dst = q_out_ptr + t * stride_qot + h * stride_qoh
    else:
        src = k_ptr + t * stride_kt + (h - HQ) * stride_kh
        dst = k_out_ptr + t * stride_kot + (h - HQ) * stride_koh
    pos = tl.load(pos_ptr + t).to(tl.int64)
    i = tl.arange(0, HALF_BLOCK)
    m = i < ROT // 2
    cos = tl.load(cache_ptr + pos * stride_cache + i, mask=m, other=1.0).to(tl.float32)
    sin = tl.load(cache_ptr + pos * stride_cache + ROT // 2 + i, mask=m, other=0.0).to(tl.float32)
    if IS_NEOX:
        first, second = i, i + ROT // 2
    else:
        first, second = 2 * i, 2 * i + 1
    x1 = tl.load(src + first, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(src + second, mask=m, other=0.0).to(tl.float32)
    tl.store(dst + first, (x1 * cos - x2 * sin).to(dst.dtype.element_ty), mask=m)
    tl.store(dst + second, (x2 * cos + x1 * sin).to(dst.dtype.element_ty), mask=m)
    if ROT < HEAD:
        j = ROT + tl.arange(0, TAIL_BLOCK)
        mj = j < HEAD
        tl.store(dst + j, tl.load(src + j, mask=mj, other=0.0), mask=mj)


def _launch(positions, q, q_out, k, k_out, cache, is_neox, config):
    rot, head = cache.shape[1], q.shape[2]
    grid = (q.shape[0], q.shape[1] + k.shape[1])
    _rotary_embedding_kernel[grid](
        positions, q, q_out, k, k_out, cache,
        q.stride(0), q.stride(1), q_out.stride(0), q_out.stride(1),
        k.stride(0), k.stride(1), k_out.stride(0), k_out.stride(1), cache.stride(0),
        HQ=q.shape[1], HEAD=head, ROT=rot, IS_NEOX=is_neox, HALF_BLOCK=next_pow2(rot // 2),
        TAIL_BLOCK=next_pow2(max(head - rot, 1)), **launch_options(config),
    )  # fmt: skip


def rotary_embedding(positions, q, k, cos_sin_cache, is_neox, q_out=None, k_out=None, config=None):
    op = "rotary_embedding"
    check_dtype(op, "positions", positions, INDEX)
    for name, t in (("q", q), ("k", k)):
        check_rank(op, name, t, 3)
        check_dtype(op, name, t, (torch.float32, torch.float16, torch.bfloat16))
        check_last_dim_contiguous(op, name, t)
    rot = cos_sin_cache.shape[-1]
    if rot % 2 or rot > q.shape[-1] or q.shape[-1] != k.shape[-1]:
        fail(op, f"rotary dim {rot} must be even and at most the head size {q.shape[-1]} (q and k alike)")
    if not (positions.shape[0] == q.shape[0] == k.shape[0]):
        fail(op, "positions, q and k must have one row per token")
    check_index_range(op, "positions", positions, cos_sin_cache.shape[0], "of the cos/sin cache")
    check_out(op, q_out, tuple(q.shape), q.dtype)
    check_out(op, k_out, tuple(k.shape), k.dtype)
    q_out = torch.empty_like(q, memory_format=torch.contiguous_format) if q_out is None else q_out
    k_out = torch.empty_like(k, memory_format=torch.contiguous_format) if k_out is None else k_out
    config = config or CONFIG_SPACE.default
    cache = cos_sin_cache.contiguous()
    if q.shape[0] and q.dtype == k.dtype:
        _launch(positions, q, q_out, k, k_out, cache, is_neox, config)
    elif q.shape[0]:  # q and k in different dtypes: one launch each (the kernel's branches share a type)
        _launch(positions, q[:, :0], q_out[:, :0], q, q_out, cache, is_neox, config)
        _launch(positions, k[:, :0], k_out[:, :0], k, k_out, cache, is_neox, config)
    return q_out, k_out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    t, d = shape["tokens"], shape["head_size"]
    q = torch.randn(t, 32, d, dtype=dtype, device=device)
    k = torch.randn(t, 8, d, dtype=dtype, device=device)
    cache = torch.randn(4096, d, dtype=torch.float32, device=device)
    return (torch.randint(0, 4096, (t,), device=device), q, k, cache, True), {}
