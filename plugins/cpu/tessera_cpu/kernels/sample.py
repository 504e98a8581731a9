"""sample, vectorized over the batch: one sort per batch instead of one per row.

Same contract as the reference (greedy rows, top-k with ties kept, top-p on the
renormalized kept mass, exponential race with the caller's noise).
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.reference.sample import check_sample_args


def sample(logits, temperature, top_k, top_p, exponential_noise=None):
    check_sample_args("sample", logits, temperature, top_k, top_p, exponential_noise)
    rows, vocab = logits.shape
    logits = logits.to(torch.float32)
    greedy = temperature == 0
    t = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32)
    probs = torch.softmax(logits / t[:, None], dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    k = top_k.to(torch.int64)
    use_k = (k > 0) & (k < vocab)
    kth = sorted_probs.gather(1, (k.clamp(1, vocab) - 1)[:, None])
    keep_sorted = ~use_k[:, None] | (sorted_probs >= kth)
    kept_sorted = sorted_probs * keep_sorted
    before = torch.cumsum(kept_sorted, dim=-1) - kept_sorted
    total = kept_sorted.sum(-1, keepdim=True)
    use_p = (top_p < 1)[:, None]
    keep_sorted &= ~use_p | (before < top_p.to(torch.float32)[:, None] * total)
    kept = torch.zeros_like(probs).scatter_(1, order, sorted_probs * keep_sorted)
    if exponential_noise is None:
        exponential_noise = torch.empty_like(probs).exponential_()
    drawn = torch.argmax(kept / exponential_noise.to(torch.float32), dim=-1)
    return torch.where(greedy, torch.argmax(logits, dim=-1), drawn)
