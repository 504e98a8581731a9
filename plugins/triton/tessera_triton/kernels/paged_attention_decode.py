"""Triton paged_attention, decode path (as many query tokens as sequences, T == B): one program per
(query row, KV head, split) loads the KV of its head once for all the head's query heads (GQA rows
stacked into one tl.dot) and walks its share of the context in BLOCK_N tiles with an online softmax;
when the context is split (NUM_SPLITS > 1, for small batches and long contexts) it writes partial
results that ``_paged_attention_reduce_kernel`` combines. Either KV block layout (``HEAD_MAJOR``).

T == B is chosen from shapes alone (graphs capture it), and it does not mean every sequence decodes:
one sequence may have two query tokens and another none. So each program finds its row's sequence
from ``query_start_loc``: row t is sequence t when its offsets say so (every decode batch, two loads),
else a binary search finds it; the row attends up to its own position in that sequence.
"""

from __future__ import annotations

import triton
import triton.language as tl

from tessera_triton.common import next_pow2
from tessera_triton.kernels.paged_attention_prefill import _dot, kv_offsets


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, part_ptr, ml_ptr, query_start_ptr, seq_lens_ptr, tables_ptr,
    scale, window, batch,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_table,
    HK: tl.constexpr, GROUP: tl.constexpr, BLOCK_H: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr, USE_WINDOW: tl.constexpr,
    IEEE: tl.constexpr, HEAD_MAJOR: tl.constexpr,
):  # fmt: skip
    """Decode path: one query row per program; all GROUP query heads of one KV head share each KV tile."""
    r = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    b = _sequence_of_row(query_start_ptr, r, batch)
    row_start = tl.load(query_start_ptr + b)
    q_len = tl.load(query_start_ptr + b + 1) - row_start
    seq_len = tl.load(seq_lens_ptr + b) - q_len + (r - row_start) + 1  # the keys this row may see
    hrow = tl.arange(0, BLOCK_H)
    h_ok = hrow < GROUP
    heads = kvh * GROUP + hrow
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    q = tl.load(q_ptr + r.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + d[None, :],
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
        offs = kv_offsets(block, t, kvh, HK, D, BLOCK_SIZE, HEAD_MAJOR)
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
        tl.store(out_ptr + r.to(tl.int64) * stride_ot + heads[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=h_ok[:, None] & d_ok[None, :])  # fmt: skip
    else:
        row = (r.to(tl.int64) * (HK * GROUP) + heads) * NUM_SPLITS + split  # [BLOCK_H]
        tl.store(part_ptr + row[:, None] * D + d[None, :], acc, mask=h_ok[:, None] & d_ok[None, :])
        tl.store(ml_ptr + row * 2, m_i, mask=h_ok)
        tl.store(ml_ptr + row * 2 + 1, l_i, mask=h_ok)


@triton.jit
def _sequence_of_row(query_start_ptr, r, batch):
    """The sequence b with query_start[b] <= r < query_start[b + 1]: b = r in a decode batch."""
    fast = (tl.load(query_start_ptr + r) == r) & (tl.load(query_start_ptr + r + 1) == r + 1)
    lo = tl.where(fast, r, 0)
    hi = tl.where(fast, r + 1, batch)  # invariant: query_start[lo] <= r < query_start[hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        left = tl.load(query_start_ptr + mid) <= r
        lo = tl.where(left, mid, lo)
        hi = tl.where(left, hi, mid)
    return lo


@triton.jit
def _paged_attention_reduce_kernel(
    part_ptr, ml_ptr, out_ptr, stride_ot, stride_oh,
    HQ: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, NUM_SPLITS: tl.constexpr,
):  # fmt: skip
    """Combine the splits of one (query row, query head): rescale each partial by exp(m_s - max m)."""
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
