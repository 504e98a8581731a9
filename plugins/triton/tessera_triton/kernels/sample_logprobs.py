"""Triton logprobs for the sample op: one pass over the raw logits instead of torch's reduction, comparison
and radix top-k passes.

Each program takes one [BLOCK] tile of one row and writes the tile's partial log-sum-exp, how many of its
logits exceed the sampled token's, and its top ``N`` candidates (key, value, id). The candidates come from
``N`` rounds of max-and-remove over the tile in registers. Keys order them as ``torch.topk`` orders values:
NaN first (as +inf), a real -inf above every placeholder (as the lowest finite float), and a tile with fewer
than ``N`` columns fills its last slots with placeholders at -inf that no real candidate ties, so the small
top-k over ``[B, tiles * N]`` candidates that combines the tiles never returns one (``N`` <= the vocabulary).

The returned tuple is the contract's: ``(logprobs[B, 1+N], ids[B, 1+N], sampled_rank[B])``, column 0 the
sampled token, logprobs ``logit - logsumexp(row)`` in float32, rank ``1 + #{logit > sampled logit}``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.sample_features import logprobs_of

BLOCK, NUM_WARPS = 4096, 8
#: the lowest finite float32: a real -inf's key, above every placeholder
LOWEST = tl.constexpr(-3.4028234663852886e38)


@triton.jit
def _logprobs_kernel(logits_ptr, tokens_ptr, V, stride_l, lse_ptr, above_ptr, key_ptr, val_ptr, id_ptr,
                     N: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    tiles = tl.num_programs(1)
    cols = tile * BLOCK + tl.arange(0, BLOCK)
    ok = cols < V
    base = logits_ptr + row * stride_l
    x = tl.load(base + cols, mask=ok, other=float("-inf")).to(tl.float32)
    token = tl.minimum(tl.maximum(tl.load(tokens_ptr + row), 0), V - 1)
    chosen = tl.load(base + token).to(tl.float32)
    part = row * tiles + tile
    tl.store(above_ptr + part, tl.sum((x > chosen).to(tl.int32), axis=0))
    peak = tl.max(x, axis=0)
    shift = tl.where(peak == float("-inf"), 0.0, peak)  # an all -inf tile: sum 0, log-sum-exp -inf
    tl.store(lse_ptr + part, shift + tl.log(tl.sum(tl.exp(x - shift), axis=0)))
    key = tl.where(x != x, float("inf"), tl.where(x == float("-inf"), LOWEST, x))
    key = tl.where(ok, key, float("-inf"))
    avail = ok
    for j in tl.static_range(N):
        top = tl.max(tl.where(avail, key, float("-inf")), axis=0)
        idx = tl.min(tl.where(avail & (key == top), cols, 2147483647), axis=0)
        found = idx < V
        safe = tl.where(found, idx, 0)
        tl.store(key_ptr + part * N + j, tl.where(found, top, float("-inf")))
        tl.store(val_ptr + part * N + j, tl.load(base + safe).to(tl.float32))
        tl.store(id_ptr + part * N + j, safe)
        avail = avail & (cols != idx)


def triton_logprobs(logits: torch.Tensor, tokens: torch.Tensor, num_logprobs: int, block: int = BLOCK,
                    num_warps: int = NUM_WARPS):  # fmt: skip
    """The op's logprobs tuple for ``logits`` [B, V] (float32/16-bit; float64 goes through torch)."""
    rows, vocab = logits.shape
    if logits.dtype == torch.float64 or rows == 0:
        return logprobs_of(logits, tokens, num_logprobs)
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    tokens = tokens.contiguous()
    tiles, n = triton.cdiv(vocab, block), max(int(num_logprobs), 1)
    f32 = dict(dtype=torch.float32, device=logits.device)
    lse = torch.empty(rows, tiles, **f32)
    above = torch.empty(rows, tiles, dtype=torch.int32, device=logits.device)
    keys, vals = torch.empty(rows, tiles * n, **f32), torch.empty(rows, tiles * n, **f32)
    ids = torch.empty(rows, tiles * n, dtype=torch.int32, device=logits.device)
    _logprobs_kernel[(rows, tiles)](logits, tokens, vocab, logits.stride(0), lse, above, keys, vals, ids, N=n,
                                    BLOCK=block, num_warps=num_warps)  # fmt: skip
    total = torch.logsumexp(lse, dim=-1, keepdim=True)
    chosen = logits.gather(1, tokens[:, None]).to(torch.float32)
    rank = above.sum(-1, dtype=torch.int64) + 1
    if not num_logprobs:
        return chosen - total, tokens[:, None].to(torch.int64), rank
    best = keys.topk(int(num_logprobs), dim=-1).indices
    values = torch.cat([chosen, vals.gather(1, best)], 1) - total
    top_ids = torch.cat([tokens[:, None].to(torch.int64), ids.gather(1, best).to(torch.int64)], 1)
    return values, top_ids, rank
