"""A batched form of the sample op's top-k / top-p filter, for kernels to share.

``filter_probabilities`` gives the same kept set as the reference's per-row
``kept_probabilities`` (ties at the k-th probability kept; top-p on the mass left
after top-k; the most likely token always kept), with one sort per batch.
"""

from __future__ import annotations

import torch


def filter_probabilities(
    probs: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None
) -> torch.Tensor:
    """``probs[B, V]`` with filtered-out entries zeroed (float32); a None filter is off."""
    vocab = probs.shape[1]
    if top_k is None:
        top_k = torch.zeros(probs.shape[0], dtype=torch.int32, device=probs.device)
    if top_p is None:
        top_p = torch.ones(probs.shape[0], dtype=torch.float32, device=probs.device)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    k = top_k.to(torch.int64)
    use_k = (k > 0) & (k < vocab)
    kth = sorted_probs.gather(1, (k.clamp(1, vocab) - 1)[:, None])
    keep = ~use_k[:, None] | (sorted_probs >= kth)
    kept = sorted_probs * keep
    before = torch.cumsum(kept, dim=-1) - kept
    total = kept.sum(-1, keepdim=True)
    use_p = (top_p < 1)[:, None]
    keep &= ~use_p | (before < top_p.to(torch.float32)[:, None] * total)
    return torch.zeros_like(probs).scatter_(1, order, sorted_probs * keep)
