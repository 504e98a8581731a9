"""Reference paged_attention: one varlen op for prefill chunks and decode over the paged KV cache.

Sequence ``b`` owns query rows ``query_start_loc[b] : query_start_loc[b+1]``
(``q_len`` tokens) and a context of ``seq_lens[b]`` tokens whose keys and values
are already in the cache (the query tokens' own included): token ``i`` of the
context is row ``i % block_size`` of block ``block_tables[b, i // block_size]``.
The query tokens are the last ``q_len`` of the context, so query row ``r`` sits at
position ``p = seq_len - q_len + r`` and attends to context positions ``j <= p``
(causal inside the query window), and with a sliding window ``W`` only to those
with ``p - j < W``. Query head ``h`` reads KV head ``h // (Hq // Hk)`` (GQA).
``out[T, Hq, D] = softmax(scale * q k^T + mask) v``. The caches are in ``kv_layout``
(``"nhd"``: ``[num_blocks, block_size, Hk, D]``; ``"hnd"``: ``[num_blocks, Hk, block_size, D]``).
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    INDEX,
    acc_dtype,
    check_dtype,
    check_out,
    check_rank,
    check_shape,
    checking_values,
    fail,
    write,
)
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, check_layout, to_token_major


def check_paged_attention_args(
    op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, kv_layout=DEFAULT_KV_LAYOUT
) -> None:
    check_layout(op, kv_layout)
    check_rank(op, "q", q, 3)
    check_dtype(op, "q", q, FLOATS)
    check_rank(op, "key_cache", key_cache, 4)
    check_shape(op, "value_cache", value_cache, tuple(key_cache.shape))
    key_cache = to_token_major(key_cache, kv_layout)
    num_blocks, block_size, kv_heads, head_dim = key_cache.shape
    if q.shape[2] != head_dim:
        fail(op, f"q head size {q.shape[2]} differs from the cache's {head_dim}")
    if q.shape[1] % kv_heads:
        fail(op, f"query heads ({q.shape[1]}) must be a multiple of KV heads ({kv_heads})")
    for name, t in (
        ("query_start_loc", query_start_loc),
        ("seq_lens", seq_lens),
        ("block_tables", block_tables),
    ):
        check_dtype(op, name, t, INDEX)
    batch = seq_lens.shape[0]
    check_shape(op, "query_start_loc", query_start_loc, (batch + 1,))
    check_shape(op, "block_tables", block_tables, (batch, None))
    if checking_values():
        check_paged_attention_values(op, q, key_cache, query_start_loc, seq_lens, block_tables)


def check_paged_attention_values(op, q, key_cache, query_start_loc, seq_lens, block_tables) -> None:
    """Value checks (a device-to-host sync): offsets, lengths and every used block-table entry."""
    num_blocks, block_size = key_cache.shape[:2]
    batch = seq_lens.shape[0]
    q_lens = query_start_loc[1:] - query_start_loc[:-1]
    if batch and (
        int(query_start_loc[0]) != 0 or int(query_start_loc[-1]) != q.shape[0] or bool((q_lens < 0).any())
    ):
        fail(
            op,
            f"query_start_loc must rise from 0 to the {q.shape[0]} query tokens, got {query_start_loc.tolist()}",
        )
    if bool((seq_lens < q_lens).any()):
        fail(op, "every seq_len must cover its query tokens (seq_lens[b] >= q_len[b])")
    blocks_needed = (seq_lens + block_size - 1) // block_size
    if batch and int(blocks_needed.max()) > block_tables.shape[1]:
        fail(
            op,
            f"a sequence needs {int(blocks_needed.max())} blocks but block_tables has {block_tables.shape[1]} columns",
        )
    columns = torch.arange(block_tables.shape[1], device=block_tables.device)[None, :]
    used = block_tables[columns < blocks_needed[:, None]]
    if used.numel() and (int(used.min()) < 0 or int(used.max()) >= num_blocks):
        rows, cols = torch.nonzero(
            (columns < blocks_needed[:, None]) & ((block_tables < 0) | (block_tables >= num_blocks)),
            as_tuple=True,
        )
        b = int(rows[0])
        fail(
            op,
            f"block_tables[{b}] holds {int(block_tables[b, cols[0]])}, outside [0, {num_blocks}) of the {num_blocks} cache blocks",
        )


def gather_context(cache: torch.Tensor, blocks: torch.Tensor, length: int) -> torch.Tensor:
    """The first ``length`` tokens of a sequence from its blocks: ``[length, Hk, D]``."""
    return cache[blocks.long()].reshape(-1, *cache.shape[2:])[:length]


def paged_attention(
    q: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    sliding_window: int | None = None,
    out: torch.Tensor | None = None,
    kv_layout: str = DEFAULT_KV_LAYOUT,
) -> torch.Tensor:
    op = "paged_attention"
    check_paged_attention_args(
        op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, kv_layout
    )
    check_out(op, out, tuple(q.shape), q.dtype)
    key_cache, value_cache = to_token_major(key_cache, kv_layout), to_token_major(value_cache, kv_layout)
    acc = acc_dtype(q)
    group = q.shape[1] // key_cache.shape[2]
    block_size = key_cache.shape[1]
    result = torch.empty(q.shape, dtype=acc, device=q.device)
    for b in range(seq_lens.shape[0]):
        start, end, length = int(query_start_loc[b]), int(query_start_loc[b + 1]), int(seq_lens[b])
        if end == start:
            continue
        blocks = block_tables[b, : (length + block_size - 1) // block_size]
        k = gather_context(key_cache, blocks, length).to(acc).repeat_interleave(group, dim=1)
        v = gather_context(value_cache, blocks, length).to(acc).repeat_interleave(group, dim=1)
        qb = q[start:end].to(acc)
        scores = torch.einsum("qhd,khd->hqk", qb, k) * scale
        q_pos = torch.arange(length - (end - start), length, device=q.device)[:, None]
        k_pos = torch.arange(length, device=q.device)[None, :]
        allowed = k_pos <= q_pos
        if sliding_window is not None and sliding_window > 0:
            allowed &= (q_pos - k_pos) < sliding_window
        scores = scores.masked_fill(~allowed, float("-inf"))
        result[start:end] = torch.einsum("hqk,khd->qhd", torch.softmax(scores, dim=-1), v)
    return write(out, result.to(q.dtype))
