"""sample, vectorized over the batch: one sort per batch instead of one per row.

Same contract as the reference (greedy rows, top-k with ties kept, top-p on the
renormalized kept mass, exponential race with the caller's noise); the filter is
the contract's batched helper.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.reference.sample import check_sample_args, tempered_softmax
from tessera.pluggable_layers.top_k_top_p import filter_probabilities


def sample(logits, temperature, top_k, top_p, exponential_noise=None):
    check_sample_args("sample", logits, temperature, top_k, top_p, exponential_noise)
    logits = logits.to(torch.float32)
    greedy = temperature == 0
    if bool(greedy.all()):
        return torch.argmax(logits, dim=-1)
    t = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32)
    probs = tempered_softmax(logits, t[:, None])
    kept = filter_probabilities(probs, top_k, top_p)
    if exponential_noise is None:
        exponential_noise = torch.empty_like(probs).exponential_()
    drawn = torch.argmax(kept / exponential_noise.to(torch.float32), dim=-1)
    return torch.where(greedy, torch.argmax(logits, dim=-1), drawn)
