"""paged_attention on the CPU: gather each sequence's blocks, then torch SDPA (GQA-aware).

Same contract as the reference (see tessera.pluggable_layers.reference.paged_attention);
the per-sequence work runs in the input dtype through one fused SDPA call instead of
float32 einsums, and the mask is built only when the window needs one.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import check_out
from tessera.pluggable_layers.reference.paged_attention import check_paged_attention_args


def paged_attention(
    q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window=None, out=None
):
    op = "paged_attention"
    check_paged_attention_args(op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables)
    check_out(op, out, tuple(q.shape), q.dtype)
    out = torch.empty_like(q) if out is None else out
    block_size, kv_heads, head_dim = key_cache.shape[1:]
    gqa = q.shape[1] != kv_heads
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
