"""sample, vectorized over the batch: one sort per batch instead of one per row.

Same contract as the reference (greedy rows, top-k with ties kept, top-p on the
renormalized kept mass, exponential race with the caller's noise) including the
1.1 inputs (penalties, logit bias, min_p, logprobs); the filter, penalties and
logprobs are the contract's batched helpers.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.reference.sample import check_sample_args, tempered_softmax
from tessera.pluggable_layers.sample_features import (
    check_feature_args,
    drop_below_min_p,
    logprobs_of,
    penalized_logits,
)
from tessera.pluggable_layers.top_k_top_p import filter_probabilities

FEATURES = ("penalties", "logit_bias", "min_p", "logprobs")


def sample(logits, temperature, top_k, top_p, exponential_noise=None, *, min_p=None, logit_bias=None,
           prompt_mask=None, output_counts=None, presence_penalty=None, frequency_penalty=None,
           repetition_penalty=None, num_logprobs=None):  # fmt: skip
    penalties = {"prompt_mask": prompt_mask, "output_counts": output_counts, "presence_penalty": presence_penalty,
                 "frequency_penalty": frequency_penalty, "repetition_penalty": repetition_penalty}  # fmt: skip
    check_sample_args("sample", logits, temperature, top_k, top_p, exponential_noise)
    check_feature_args("sample", logits, min_p, logit_bias, penalties, num_logprobs)
    raw = logits
    logits = logits.to(torch.float32)
    if output_counts is not None or logit_bias is not None:
        logits = penalized_logits(logits, logit_bias, penalties)
    tokens = _draw(logits, temperature, top_k, top_p, min_p, exponential_noise)
    if num_logprobs is None:
        return tokens
    return (tokens, *logprobs_of(raw, tokens, int(num_logprobs)))


def _draw(logits, temperature, top_k, top_p, min_p, exponential_noise):
    greedy = temperature == 0
    if bool(greedy.all()):
        return torch.argmax(logits, dim=-1)
    t = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32)
    probs = drop_below_min_p(tempered_softmax(logits, t[:, None]), min_p)
    kept = filter_probabilities(probs, top_k, top_p)
    if exponential_noise is None:
        exponential_noise = torch.empty_like(probs).exponential_()
    drawn = torch.argmax(kept / exponential_noise.to(torch.float32), dim=-1)
    return torch.where(greedy, torch.argmax(logits, dim=-1), drawn)
