"""Triton paged_attention: one varlen kernel family for decode and chunked prefill over the paged KV cache.

Layout: q [T, Hq, D] (unit stride in D; token and head strides free), key/value
caches [num_blocks, block_size, Hk, D] contiguous, query_start_loc [B+1],
seq_lens [B], block_tables [B, max_blocks] (int32). Query head h reads KV head
h // (Hq // Hk). The query tokens of a sequence are the last q_len of its
context; each attends causally (and within the sliding window, when given).

Two paths, chosen from shapes alone (no host sync, so graphs can capture them):
- decode (every sequence has one query token, T == B): one program per
  (sequence, KV head, split); the program loads the KV of its head once for all
  the head's query heads (GQA rows stacked into one tl.dot), walks its share of
  the context in BLOCK_N tiles with an online softmax, and, when the context is
  split (NUM_SPLITS > 1, for small batches and long contexts), writes partial
  results that ``_paged_attention_reduce_kernel`` combines;
- prefill / mixed: one program per (BLOCK_M query tokens of one sequence, query
  head); programs find their sequence by binary search over query_start_loc, so
  the grid depends on T and B only.
Accumulation in float32; the cache is read in its own dtype.
"""

from __future__ import annotations

import logging

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_last_dim_contiguous, check_out
from tessera.pluggable_layers.reference.paged_attention import check_paged_attention_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, launch_options, next_pow2

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
SHAPE_KEY = ShapeKey(
    {"tokens": "pow2", "seqs": "pow2", "head_size": "exact", "group": "exact", "decode": "exact", "dtype": "exact"},
    lambda q, key_cache, value_cache, query_start_loc, seq_lens, *a, **k: {
        "tokens": q.shape[0], "seqs": seq_lens.shape[0], "head_size": q.shape[2],
        "group": q.shape[1] // key_cache.shape[2], "decode": int(q.shape[0] == seq_lens.shape[0]),
        "dtype": str(q.dtype).removeprefix("torch."),
    },
)  # fmt: skip


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


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    """a @ b; in full float32 precision when IEEE (float32 caches), the backend's default otherwise."""
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _attend_tile(q, acc, m_i, l_i, k_ptr, v_ptr, tables_ptr, b, kvh, start, kv_end, pos, window, qk_scale, d, d_ok,
                 stride_table, HK: tl.constexpr, D: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
                 MASKED: tl.constexpr, USE_WINDOW: tl.constexpr, OFFS_64: tl.constexpr, IEEE: tl.constexpr):  # fmt: skip
    """One BLOCK_N tile of context for a query tile: online softmax in log2 units, P @ V.

    The scale is applied once per score, fused with the subtraction of the running
    max (the max itself is scaled per row); masked tiles also guard rows whose
    every score is masked. Cache offsets are 32-bit unless the cache needs 64.
    """
    t = start + tl.arange(0, BLOCK_N)
    t_ok = t < kv_end
    block = tl.load(tables_ptr + b * stride_table + t // BLOCK_SIZE, mask=t_ok, other=0)
    if OFFS_64:
        block = block.to(tl.int64)
    offs = ((block * BLOCK_SIZE + t % BLOCK_SIZE) * HK + kvh) * D
    k = tl.load(k_ptr + offs[:, None] + d[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0)
    s = _dot(q, tl.trans(k), IEEE)
    if MASKED:
        allowed = t_ok[None, :] & (t[None, :] <= pos[:, None])
        if USE_WINDOW:
            allowed = allowed & (pos[:, None] - t[None, :] < window)
        s = tl.where(allowed, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1) * qk_scale)
    if MASKED:
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_safe = m_new
    p = tl.exp2(s * qk_scale - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    v = tl.load(v_ptr + offs[:, None] + d[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0)
    acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
    return acc, m_new, l_i


@triton.jit
def _paged_attention_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, qsl_ptr, seq_lens_ptr, tables_ptr,
    scale, window, num_seqs, num_programs,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_table,
    HQ: tl.constexpr, HK: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, USE_WINDOW: tl.constexpr, OFFS_64: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    """Prefill / mixed path: BLOCK_M query tokens of one sequence, one query head.

    Programs run in reverse order of their query tile (the late tiles of a sequence
    have the most context), context tiles wholly below the diagonal skip the mask,
    and the softmax works in base 2 with the scale folded in.
    """
    i = num_programs - 1 - tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // (HQ // HK)
    # sequence of this q block: largest b with qsl[b] // BLOCK_M + b <= i
    lo = 0
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi + 1) // 2
        start_mid = tl.load(qsl_ptr + mid) // BLOCK_M + mid
        if start_mid <= i:
            lo = mid
        else:
            hi = mid - 1
    b = lo
    q_start = tl.load(qsl_ptr + b)
    q_len = tl.load(qsl_ptr + b + 1) - q_start
    j = i - (q_start // BLOCK_M + b)
    if j * BLOCK_M < q_len:
        seq_len = tl.load(seq_lens_ptr + b)
        ctx_start = seq_len - q_len
        rows = j * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < q_len
        pos = ctx_start + rows
        d = tl.arange(0, BLOCK_D)
        d_ok = d < D
        q = tl.load(q_ptr + (q_start + rows)[:, None].to(tl.int64) * stride_qt + h * stride_qh + d[None, :],
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
        qk_scale = scale * 1.4426950408889634
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        kv_end = tl.minimum(seq_len, ctx_start + (j + 1) * BLOCK_M)
        first_pos = ctx_start + j * BLOCK_M
        kv_begin = 0
        if USE_WINDOW:
            kv_begin = tl.maximum(first_pos - window + 1, 0)
            kv_begin = (kv_begin // BLOCK_N) * BLOCK_N
            for start in range(kv_begin, kv_end, BLOCK_N):
                acc, m_i, l_i = _attend_tile(q, acc, m_i, l_i, k_ptr, v_ptr, tables_ptr, b, kvh, start, kv_end, pos, window,
                                             qk_scale, d, d_ok, stride_table, HK, D, BLOCK_SIZE, BLOCK_N, True, True,
                                             OFFS_64, IEEE)  # fmt: skip
        else:
            # tiles that end at or before the first query position need no mask
            full_end = (tl.minimum(first_pos + 1, kv_end) // BLOCK_N) * BLOCK_N
            for start in range(0, full_end, BLOCK_N):
                acc, m_i, l_i = _attend_tile(q, acc, m_i, l_i, k_ptr, v_ptr, tables_ptr, b, kvh, start, kv_end, pos, window,
                                             qk_scale, d, d_ok, stride_table, HK, D, BLOCK_SIZE, BLOCK_N, False, False,
                                             OFFS_64, IEEE)  # fmt: skip
            for start in range(full_end, kv_end, BLOCK_N):
                acc, m_i, l_i = _attend_tile(q, acc, m_i, l_i, k_ptr, v_ptr, tables_ptr, b, kvh, start, kv_end, pos, window,
                                             qk_scale, d, d_ok, stride_table, HK, D, BLOCK_SIZE, BLOCK_N, True, False,
                                             OFFS_64, IEEE)  # fmt: skip
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        tl.store(out_ptr + (q_start + rows)[:, None].to(tl.int64) * stride_ot + h * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])  # fmt: skip


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, part_ptr, ml_ptr, seq_lens_ptr, tables_ptr,
    scale, window,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_table,
    HK: tl.constexpr, GROUP: tl.constexpr, BLOCK_H: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr, USE_WINDOW: tl.constexpr,
    IEEE: tl.constexpr,
):  # fmt: skip
    """Decode path: one query token per sequence; all GROUP query heads of one KV head share each KV tile."""
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + b)
    hrow = tl.arange(0, BLOCK_H)
    h_ok = hrow < GROUP
    heads = kvh * GROUP + hrow
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    q = tl.load(q_ptr + b.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + d[None, :],
                mask=h_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
    first = 0
    if USE_WINDOW:
        first = tl.maximum(seq_len - window, 0)
    first_tile = first // BLOCK_N
    tiles = tl.cdiv(seq_len, BLOCK_N) - first_tile
    per_split = tl.cdiv(tiles, NUM_SPLITS)
    tile_lo = first_tile + split * per_split
    tile_hi = tl.minimum(tile_lo + per_split, first_tile + tiles)
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for tile in range(tile_lo, tile_hi):
        t = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        t_ok = (t < seq_len) & (t >= first)
        block = tl.load(tables_ptr + b * stride_table + t // BLOCK_SIZE, mask=t < seq_len, other=0).to(
            tl.int64
        )
        offs = ((block * BLOCK_SIZE + t % BLOCK_SIZE) * HK + kvh) * D
        k = tl.load(k_ptr + offs[:, None] + d[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0)
        s = _dot(q, tl.trans(k), IEEE) * scale
        s = tl.where(t_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + offs[:, None] + d[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
        m_i = m_new
    if NUM_SPLITS == 1:
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        tl.store(out_ptr + b.to(tl.int64) * stride_ot + heads[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=h_ok[:, None] & d_ok[None, :])  # fmt: skip
    else:
        row = (b.to(tl.int64) * (HK * GROUP) + heads) * NUM_SPLITS + split  # [BLOCK_H]
        tl.store(part_ptr + row[:, None] * D + d[None, :], acc, mask=h_ok[:, None] & d_ok[None, :])
        tl.store(ml_ptr + row * 2, m_i, mask=h_ok)
        tl.store(ml_ptr + row * 2 + 1, l_i, mask=h_ok)


@triton.jit
def _paged_attention_reduce_kernel(
    part_ptr, ml_ptr, out_ptr, stride_ot, stride_oh,
    HQ: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, NUM_SPLITS: tl.constexpr,
):  # fmt: skip
    """Combine the splits of one (sequence, query head): rescale each partial by exp(m_s - max m)."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.arange(0, NUM_SPLITS)
    row = (b.to(tl.int64) * HQ + h) * NUM_SPLITS + s
    m = tl.load(ml_ptr + row * 2)
    l = tl.load(ml_ptr + row * 2 + 1)
    m_max = tl.max(m, axis=0)
    m_safe = tl.where(m_max == float("-inf"), 0.0, m_max)
    w = tl.exp(m - m_safe)
    denom = tl.sum(l * w, axis=0)
    d = tl.arange(0, BLOCK_D)
    part = tl.load(part_ptr + row[:, None] * D + d[None, :], mask=d[None, :] < D, other=0.0)
    out = tl.sum(part * w[:, None], axis=0) / tl.where(denom == 0.0, 1.0, denom)
    tl.store(
        out_ptr + b.to(tl.int64) * stride_ot + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d < D
    )


def auto_splits(batch: int, kv_heads: int, target_programs: int = 256) -> int:
    """NUM_SPLITS=0 (no tuned value): split the context until about ``target_programs`` programs run."""
    return max(1, min(32, next_pow2(-(-target_programs // (batch * kv_heads)))))


def paged_attention(q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window=None,
                    out=None, config=None):  # fmt: skip
    """Launch with ``config``; a config the device cannot hold (shared memory) falls back to the default."""
    args = (q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window, out)
    try:
        return _launch(*args, config)
    except triton.runtime.errors.OutOfResources as exc:
        if not config or config == CONFIG_SPACE.default:
            raise
        log.warning("paged_attention config %s does not fit (%s); using the default config", config, exc)
        return _launch(*args, None)


def _launch(q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window=None,
            out=None, config=None):  # fmt: skip
    op = "paged_attention"
    check_paged_attention_args(op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables)
    check_last_dim_contiguous(op, "q", q)
    check_out(op, out, tuple(q.shape), q.dtype)
    config = {**CONFIG_SPACE.default, **(config or {})}
    out = torch.empty_like(q) if out is None else out
    tokens, hq, d = q.shape
    _, block_size, hk, _ = key_cache.shape
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
            q, key_cache, value_cache, out, part, ml, seq_lens, tables, scale, window,
            q.stride(0), q.stride(1), out.stride(0), out.stride(1), tables.stride(0),
            HK=hk, GROUP=group, BLOCK_H=max(16, next_pow2(group)), D=d, BLOCK_D=next_pow2(d), BLOCK_SIZE=block_size,
            BLOCK_N=config["BLOCK_N"], NUM_SPLITS=splits, USE_WINDOW=window > 0,
            IEEE=q.dtype == torch.float32, **launch,
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
        USE_WINDOW=window > 0, OFFS_64=key_cache.numel() >= 2**31, IEEE=q.dtype == torch.float32, **launch,
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
