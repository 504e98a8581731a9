"""Triton paged_attention: one varlen kernel family for decode and chunked prefill over the paged KV cache,
as a pair of kernels per KV block layout (plugin API 1.2): ``paged_attention`` reads token-major blocks
("nhd", [num_blocks, block_size, Hk, D]), ``paged_attention_hnd`` head-major ones ("hnd",
[num_blocks, Hk, block_size, D]); both contiguous. The matching writers are in
:mod:`tessera_triton.kernels.kv_cache_write`.

q [T, Hq, D] (unit stride in D; token and head strides free), query_start_loc [B+1], seq_lens [B],
block_tables [B, max_blocks] (int32). Query head h reads KV head h // (Hq // Hk). The query tokens of
a sequence are the last q_len of its context; each attends causally (and within the sliding window,
when given). Two paths, chosen from shapes alone (no host sync, so graphs can capture them): decode
(T == B, :mod:`.paged_attention_decode`, which also serves a T == B batch that is not all decodes)
and prefill / mixed (:mod:`.paged_attention_prefill`).
"""

from __future__ import annotations

import logging

import torch
import triton

from tessera.pluggable_layers.checks import check_last_dim_contiguous, check_out
from tessera.pluggable_layers.kv_layout import from_token_major, to_token_major
from tessera.pluggable_layers.reference.paged_attention import check_paged_attention_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, launch_options, next_pow2
from tessera_triton.kernels.paged_attention_decode import (
    _paged_attention_reduce_kernel,
    _paged_decode_kernel,
    auto_splits,
)
from tessera_triton.kernels.paged_attention_prefill import _paged_attention_kernel

log = logging.getLogger("tessera.triton")

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={
        "BLOCK_N": [16, 32, 64, 128],
        "NUM_SPLITS": [0, 1, 2, 4, 8, 16, 32, 64],
        "BLOCK_M": [16, 32, 64, 128],
        "num_warps": [2, 4, 8, 16],
        "num_stages": [1, 2, 3, 4],
    },
    default={"BLOCK_N": 64, "NUM_SPLITS": 0, "BLOCK_M": 64, "num_warps": 4, "num_stages": 2},
    narrow=lambda key: narrow_for(key),
)
KEY_FIELDS = {"tokens": "pow2", "seqs": "pow2", "head_size": "exact", "group": "exact", "decode": "exact",
              "dtype": "exact"}  # fmt: skip


def shape_of(kv_heads_dim: int):
    """The shape-key function of a layout whose KV-head axis is ``kv_heads_dim`` of the cache."""
    return lambda q, key_cache, value_cache, query_start_loc, seq_lens, *a, **k: {
        "tokens": q.shape[0], "seqs": seq_lens.shape[0], "head_size": q.shape[2],
        "group": q.shape[1] // key_cache.shape[kv_heads_dim], "decode": int(q.shape[0] == seq_lens.shape[0]),
        "dtype": str(q.dtype).removeprefix("torch."),
    }  # fmt: skip


SHAPE_KEY = ShapeKey(KEY_FIELDS, shape_of(2))
HND_SHAPE_KEY = ShapeKey(KEY_FIELDS, shape_of(1))


def narrow_for(key) -> dict:
    """Decode tunes the split count around the automatic one; prefill tunes the query tile instead."""
    if key.get("decode"):
        auto = auto_splits(int(key["seqs"]), 8)
        splits = sorted({max(1, auto // 2), auto, min(64, auto * 2)})
        return {
            "BLOCK_M": [64],
            "NUM_SPLITS": splits,
            "BLOCK_N": [32, 64, 128],
            "num_warps": [4, 8],
            "num_stages": [2, 3],
        }
    return {
        "NUM_SPLITS": [0],
        "BLOCK_M": [64, 128],
        "BLOCK_N": [64, 128],
        "num_warps": [4, 8],
        "num_stages": [2, 3],
    }


def paged_attention(q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window=None,
                    out=None, config=None):  # fmt: skip
    """Token-major caches ("nhd"); see :func:`_with_fallback`."""
    args = (q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window, out)
    return _with_fallback(args, config, "nhd")


def paged_attention_hnd(q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale,
                        sliding_window=None, out=None, config=None):  # fmt: skip
    """Head-major caches ("hnd"): each KV head's BLOCK_N context tokens are one contiguous run per block."""
    args = (q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window, out)
    return _with_fallback(args, config, "hnd")


def _with_fallback(args, config, layout):
    """Launch with ``config``; a config the device cannot hold (shared memory) falls back to the default."""
    try:
        return _launch(*args, config, layout)
    except triton.runtime.errors.OutOfResources as exc:
        if not config or config == CONFIG_SPACE.default:
            raise
        log.warning("paged_attention config %s does not fit (%s); using the default config", config, exc)
        return _launch(*args, None, layout)


def _launch(q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window, out, config,
            layout):  # fmt: skip
    op = "paged_attention"
    check_paged_attention_args(op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, layout)
    check_last_dim_contiguous(op, "q", q)
    check_out(op, out, tuple(q.shape), q.dtype)
    config = {**CONFIG_SPACE.default, **(config or {})}
    out = torch.empty_like(q) if out is None else out
    tokens, hq, d = q.shape
    _, block_size, hk, _ = to_token_major(key_cache, layout).shape
    head_major = layout == "hnd"
    batch = seq_lens.shape[0]
    if tokens == 0 or batch == 0:
        return out
    window = int(sliding_window) if sliding_window else 0
    tables = block_tables if block_tables.stride(1) == 1 else block_tables.contiguous()
    launch = launch_options(config)
    if tokens == batch:
        splits = int(config["NUM_SPLITS"]) or auto_splits(batch, hk)
        group = hq // hk
        if splits > 1:
            part = torch.empty(batch * hq * splits, d, dtype=torch.float32, device=q.device)
            ml = torch.empty(batch * hq * splits, 2, dtype=torch.float32, device=q.device)
        else:
            part = ml = out
        _paged_decode_kernel[(batch, hk, splits)](
            q, key_cache, value_cache, out, part, ml, query_start_loc, seq_lens, tables, scale, window, batch,
            q.stride(0), q.stride(1), out.stride(0), out.stride(1), tables.stride(0),
            HK=hk, GROUP=group, BLOCK_H=max(16, next_pow2(group)), D=d, BLOCK_D=next_pow2(d), BLOCK_SIZE=block_size,
            BLOCK_N=config["BLOCK_N"], NUM_SPLITS=splits, USE_WINDOW=window > 0,
            IEEE=q.dtype == torch.float32, HEAD_MAJOR=head_major, **launch,
        )  # fmt: skip
        if splits > 1:
            _paged_attention_reduce_kernel[(batch, hq)](
                part, ml, out, out.stride(0), out.stride(1), HQ=hq, D=d, BLOCK_D=next_pow2(d), NUM_SPLITS=splits, num_warps=4,
            )  # fmt: skip
        return out
    block_m = config["BLOCK_M"]
    tiles = tokens // block_m + batch
    grid = (tiles, hq)
    _paged_attention_kernel[grid](
        q, key_cache, value_cache, out, query_start_loc, seq_lens, tables, scale, window, batch, tiles,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), tables.stride(0),
        HQ=hq, HK=hk, D=d, BLOCK_D=next_pow2(d), BLOCK_SIZE=block_size, BLOCK_M=block_m, BLOCK_N=config["BLOCK_N"],
        USE_WINDOW=window > 0, OFFS_64=key_cache.numel() >= 2**31, IEEE=q.dtype == torch.float32, HEAD_MAJOR=head_major, **launch,
    )  # fmt: skip
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """Llama-3-8B heads (32 / 8, head 128), block 16; ``seqs`` sequences of ``context`` tokens."""
    seqs, context = shape["seqs"], shape.get("context", 1024)
    decode = shape.get("decode", 1)
    q_len = 1 if decode else context
    block = 16
    blocks_per = -(-context // block)
    num_blocks = seqs * blocks_per + 1
    kc = torch.randn(num_blocks, block, 8, 128, dtype=dtype, device=device)
    vc = torch.randn_like(kc)
    tables = (
        torch.randperm(num_blocks - 1, device=device)[: seqs * blocks_per]
        .view(seqs, blocks_per)
        .to(torch.int32)
    )
    qsl = torch.arange(seqs + 1, device=device, dtype=torch.int32) * q_len
    q = torch.randn(seqs * q_len, 32, 128, dtype=dtype, device=device)
    lens = torch.full((seqs,), context, dtype=torch.int32, device=device)
    return (q, kc, vc, qsl, lens, tables, 128**-0.5), {}


def tune_inputs_hnd(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """:func:`tune_inputs` with the caches head-major."""
    (q, kc, vc, *rest), kw = tune_inputs(shape, dtype, device)
    return (q, from_token_major(kc, "hnd"), from_token_major(vc, "hnd"), *rest), kw
