"""Triton kv_cache_write: one program per token copies its key and value rows into the cache slot.

Layout: key/value [T, Hk, D] with a unit stride in the last dimension (token and
head strides free); slot_mapping [T] (negative: padding, skipped); caches contiguous,
token-major [num_blocks, block_size, Hk, D] (``kv_cache_write``, "nhd") or head-major
[num_blocks, Hk, block_size, D] (``kv_cache_write_hnd``, "hnd"; plugin API 1.2). The
launcher checks every slot against the cache size before launching, so the kernel
never writes out of bounds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_last_dim_contiguous
from tessera.pluggable_layers.kv_layout import from_token_major
from tessera.pluggable_layers.reference.kv_cache_write import check_kv_write_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, launch_options, next_pow2

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS, params={"num_warps": [1, 2, 4, 8]}, default={"num_warps": 4}
)
SHAPE_KEY = ShapeKey(
    {"row": "pow2", "tokens": "pow2"},
    lambda key, *a, **k: {"row": key.shape[1] * key.shape[2], "tokens": key.shape[0]},
)
HND_SHAPE_KEY = SHAPE_KEY  # the key reads key [T, Hk, D] only, the same in either layout


@triton.jit
def _kv_cache_write_kernel(
    k_ptr, v_ptr, kc_ptr, vc_ptr, slot_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh,
    HEADS: tl.constexpr, DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, HEAD_MAJOR: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        h = tl.arange(0, BLOCK_H)[:, None]
        d = tl.arange(0, BLOCK_D)[None, :]
        m = (h < HEADS) & (d < DIM)
        if HEAD_MAJOR:
            dst = ((slot // BLOCK_SIZE * HEADS + h) * BLOCK_SIZE + slot % BLOCK_SIZE) * DIM + d
        else:
            dst = slot * HEADS * DIM + h * DIM + d
        tl.store(kc_ptr + dst, tl.load(k_ptr + t * stride_kt + h * stride_kh + d, mask=m), mask=m)
        tl.store(vc_ptr + dst, tl.load(v_ptr + t * stride_vt + h * stride_vh + d, mask=m), mask=m)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, config=None):
    """Token-major caches ("nhd")."""
    _launch(key, value, key_cache, value_cache, slot_mapping, config, "nhd")


def kv_cache_write_hnd(key, value, key_cache, value_cache, slot_mapping, config=None):
    """Head-major caches ("hnd")."""
    _launch(key, value, key_cache, value_cache, slot_mapping, config, "hnd")


def _launch(key, value, key_cache, value_cache, slot_mapping, config, layout):
    op = "kv_cache_write"
    check_kv_write_args(op, key, value, key_cache, value_cache, slot_mapping, layout)
    check_last_dim_contiguous(op, "key", key)
    check_last_dim_contiguous(op, "value", value)
    config = config or CONFIG_SPACE.default
    heads, dim = key.shape[1:]
    if key.shape[0]:
        _kv_cache_write_kernel[(key.shape[0],)](
            key, value, key_cache, value_cache, slot_mapping,
            key.stride(0), key.stride(1), value.stride(0), value.stride(1),
            HEADS=heads, DIM=dim, BLOCK_H=next_pow2(heads), BLOCK_D=next_pow2(dim),
            BLOCK_SIZE=key_cache.shape[2 if layout == "hnd" else 1], HEAD_MAJOR=layout == "hnd", **launch_options(config),
        )  # fmt: skip


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    heads, dim = 8, shape["row"] // 8
    t = shape["tokens"]
    key, value = (torch.randn(t, heads, dim, dtype=dtype, device=device) for _ in range(2))
    blocks = (t + 15) // 16 + 1
    caches = [torch.zeros(blocks, 16, heads, dim, dtype=dtype, device=device) for _ in range(2)]
    return (key, value, *caches, torch.randperm(blocks * 16, device=device)[:t]), {}


def tune_inputs_hnd(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """:func:`tune_inputs` with the caches head-major."""
    (key, value, kc, vc, slots), kw = tune_inputs(shape, dtype, device)
    return (key, value, from_token_major(kc, "hnd"), from_token_major(vc, "hnd"), slots), kw
