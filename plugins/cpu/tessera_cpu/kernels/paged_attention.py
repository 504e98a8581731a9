"""paged_attention on the CPU: gather each sequence's blocks, then torch SDPA (GQA-aware).

Same contract as the reference (see tessera.pluggable_layers.reference.paged_attention);
the per-sequence work runs in the input dtype through one fused SDPA call instead of
float32 einsums, and the mask is built only when the window needs one.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import check_out
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, to_token_major
from tessera.pluggable_layers.reference.paged_attention import check_paged_attention_args


def paged_attention(
    q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window=None, out=None,
    kv_layout=DEFAULT_KV_LAYOUT,
):  # fmt: skip
    """Either KV layout: the caches are viewed token-major (no copy) and gathered per sequence."""
    op = "paged_attention"
    check_paged_attention_args(
        op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, kv_layout
    )
    check_out(op, out, tuple(q.shape), q.dtype)
    key_cache, value_cache = to_token_major(key_cache, kv_layout), to_token_major(value_cache, kv_layout)
    out = torch.empty_like(q) if out is None else out
    block_size, kv_heads, head_dim = key_cache.shape[1:]
    gqa = q.shape[1] != kv_heads
    if q.shape[0] == seq_lens.shape[0] and q.shape[0] > 1:  # every sequence decodes one token
        out.copy_(
            batched_decode(q, key_cache, value_cache, seq_lens, block_tables, scale, sliding_window, gqa)
        )
        return out
    starts, lengths = query_start_loc.tolist(), seq_lens.tolist()
    for b, length in enumerate(lengths):
        start, end = starts[b], starts[b + 1]
        q_len = end - start
        if q_len == 0:
            continue
        blocks = block_tables[b, : (length + block_size - 1) // block_size].long()
        k = key_cache[blocks].reshape(-1, kv_heads, head_dim)[:length].transpose(0, 1)
        v = value_cache[blocks].reshape(-1, kv_heads, head_dim)[:length].transpose(0, 1)
        mask = None
        windowed = sliding_window is not None and 0 < sliding_window < length
        if q_len > 1 or windowed:
            q_pos = torch.arange(length - q_len, length, device=q.device)[:, None]
            k_pos = torch.arange(length, device=q.device)[None, :]
            mask = k_pos <= q_pos
            if windowed:
                mask &= (q_pos - k_pos) < sliding_window
        y = torch.nn.functional.scaled_dot_product_attention(
            q[start:end].transpose(0, 1), k, v, attn_mask=mask, scale=scale, enable_gqa=gqa
        )
        out[start:end] = y.transpose(0, 1)
    return out


def batched_decode(q, key_cache, value_cache, seq_lens, block_tables, scale, sliding_window, gqa):
    """One SDPA call for a batch of one-token queries: every sequence's blocks gathered to the longest
    context, positions past a sequence's length (or outside its window) masked and zeroed, so stale
    cache contents (even NaN) never reach the output."""
    block_size, kv_heads, head_dim = key_cache.shape[1:]
    batch = q.shape[0]
    longest = int(seq_lens.max())
    tables = block_tables[:, : (longest + block_size - 1) // block_size].long()
    k = key_cache[tables].reshape(batch, -1, kv_heads, head_dim)[:, :longest]
    v = value_cache[tables].reshape(batch, -1, kv_heads, head_dim)[:, :longest]
    pos = torch.arange(longest, device=q.device)[None, :]
    lens = seq_lens.long()[:, None]
    valid = pos < lens
    if sliding_window is not None and sliding_window > 0:
        valid &= (lens - 1 - pos) < sliding_window
    k = torch.where(valid[:, :, None, None], k, 0).transpose(1, 2)
    v = torch.where(valid[:, :, None, None], v, 0).transpose(1, 2)
    y = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None, :], k, v, attn_mask=valid[:, None, None, :], scale=scale, enable_gqa=gqa
    )
    return y[:, :, 0, :]
