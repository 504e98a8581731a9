"""Triton paged_attention, prefill / mixed path: one program per (BLOCK_M query tokens of one sequence,
query head); programs find their sequence by binary search over query_start_loc, so the grid depends
on T and B only. Either KV block layout (``HEAD_MAJOR``: "hnd" [NB, Hk, BS, D], else "nhd"
[NB, BS, Hk, D]); accumulation in float32, the cache read in its own dtype. Launched from
:mod:`tessera_triton.kernels.paged_attention`.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def kv_offsets(
    block, t, kvh, HK: tl.constexpr, D: tl.constexpr, BLOCK_SIZE: tl.constexpr, HEAD_MAJOR: tl.constexpr
):
    """Element offset of context token ``t`` (in cache block ``block``) of KV head ``kvh``, first element.

    Token-major blocks ("nhd", [NB, BS, Hk, D]) or head-major blocks ("hnd", [NB, Hk, BS, D]).
    """
    if HEAD_MAJOR:
        return ((block * HK + kvh) * BLOCK_SIZE + t % BLOCK_SIZE) * D
    else:
        return ((block * BLOCK_SIZE + t % BLOCK_SIZE) * HK + kvh) * D


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
                 MASKED: tl.constexpr, USE_WINDOW: tl.constexpr, OFFS_64: tl.constexpr, IEEE: tl.constexpr,
                 HEAD_MAJOR: tl.constexpr):  # fmt: skip
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
    offs = kv_offsets(block, t, kvh, HK, D, BLOCK_SIZE, HEAD_MAJOR)
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
    HEAD_MAJOR: tl.constexpr,
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
                                             OFFS_64, IEEE, HEAD_MAJOR)  # fmt: skip
        else:
            # tiles that end at or before the first query position need no mask
            full_end = (tl.minimum(first_pos + 1, kv_end) // BLOCK_N) * BLOCK_N
            for start in range(0, full_end, BLOCK_N):
                acc, m_i, l_i = _attend_tile(q, acc, m_i, l_i, k_ptr, v_ptr, tables_ptr, b, kvh, start, kv_end, pos, window,
                                             qk_scale, d, d_ok, stride_table, HK, D, BLOCK_SIZE, BLOCK_N, False, False,
                                             OFFS_64, IEEE, HEAD_MAJOR)  # fmt: skip
            for start in range(full_end, kv_end, BLOCK_N):
                acc, m_i, l_i = _attend_tile(q, acc, m_i, l_i, k_ptr, v_ptr, tables_ptr, b, kvh, start, kv_end, pos, window,
                                             qk_scale, d, d_ok, stride_table, HK, D, BLOCK_SIZE, BLOCK_N, True, False,
                                             OFFS_64, IEEE, HEAD_MAJOR)  # fmt: skip
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        tl.store(out_ptr + (q_start + rows)[:, None].to(tl.int64) * stride_ot + h * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])  # fmt: skip
