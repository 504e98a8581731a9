"""The sample op's optional inputs (plugin API 1.1), batched, for kernels to share.

``check_feature_args`` validates them the same way for every kernel;
``penalized_logits`` applies the penalties and the logit bias to a whole batch,
``drop_below_min_p`` the min-p filter and ``logprobs_of`` the returned logprobs,
with the reference's semantics (:mod:`tessera.pluggable_layers.reference.sample`).
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_shape, checking_values, fail
from tessera.pluggable_layers.ops import MAX_LOGPROBS

PENALTY_INPUTS = (
    "prompt_mask",
    "output_counts",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)


def check_feature_args(op, logits, min_p, logit_bias, penalties: dict, num_logprobs) -> None:
    """Shapes, dtypes and ranges of the optional inputs; penalties come all five together or not at all."""
    rows, vocab = logits.shape
    given = [name for name in PENALTY_INPUTS if penalties.get(name) is not None]
    if given and len(given) != len(PENALTY_INPUTS):
        missing = [n for n in PENALTY_INPUTS if n not in given]
        fail(op, f"penalty inputs come together: {', '.join(given)} given without {', '.join(missing)}")
    if given:
        check_shape(op, "prompt_mask", penalties["prompt_mask"], (rows, vocab))
        check_dtype(op, "prompt_mask", penalties["prompt_mask"], (torch.bool,))
        check_shape(op, "output_counts", penalties["output_counts"], (rows, vocab))
        check_dtype(op, "output_counts", penalties["output_counts"], (torch.int32, torch.int64))
        for name in PENALTY_INPUTS[2:]:
            check_shape(op, name, penalties[name], (rows,))
            check_dtype(op, name, penalties[name], FLOATS)
        if rows and checking_values() and bool((penalties["repetition_penalty"] <= 0).any()):
            fail(op, "repetition_penalty must be > 0 (1 is off)")
    if logit_bias is not None:
        check_shape(op, "logit_bias", logit_bias, (rows, vocab))
        check_dtype(op, "logit_bias", logit_bias, FLOATS)
    if min_p is not None:
        check_shape(op, "min_p", min_p, (rows,))
        if rows and checking_values() and bool(((min_p < 0) | (min_p > 1)).any()):
            fail(op, "min_p must be in [0, 1]")
    if num_logprobs is not None and not 0 <= int(num_logprobs) <= min(MAX_LOGPROBS, vocab):
        fail(op, f"num_logprobs must be in [0, {min(MAX_LOGPROBS, vocab)}], got {num_logprobs}")


def penalized_logits(logits: torch.Tensor, logit_bias, penalties: dict) -> torch.Tensor:
    """``logits`` (float32, a new tensor) with the penalties and then the bias applied to every row."""
    out = logits.to(torch.float32).clone()
    if penalties.get("output_counts") is not None:
        counts = penalties["output_counts"].to(torch.float32)
        seen = penalties["prompt_mask"] | (counts > 0)
        rep = penalties["repetition_penalty"].to(torch.float32)[:, None].expand_as(out)
        scale = torch.where(seen, rep, torch.ones_like(out))
        out = torch.where(out > 0, out / scale, out * scale)
        out -= penalties["frequency_penalty"].to(torch.float32)[:, None] * counts
        out -= penalties["presence_penalty"].to(torch.float32)[:, None] * (counts > 0).to(torch.float32)
    if logit_bias is not None:
        out += logit_bias.to(torch.float32)
    return out


def drop_below_min_p(probs: torch.Tensor, min_p) -> torch.Tensor:
    """``probs`` with every entry below ``min_p[b] * max(probs[b])`` zeroed (min_p None: unchanged)."""
    if min_p is None:
        return probs
    peak = probs.amax(dim=-1, keepdim=True)
    return torch.where(probs < min_p.to(probs.dtype)[:, None] * peak, torch.zeros_like(probs), probs)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, num_logprobs: int):
    """(logprobs[B,1+N], ids[B,1+N], sampled_rank[B]) of ``log_softmax(logits)``: column 0 is the sampled token.

    ``log_softmax`` is never materialized: a logprob is ``logit - logsumexp(row)``, and the top ones are the
    top logits (the shift is the same along a row), so the [B, V] passes are one reduction, one partial
    sort and one comparison, with no [B, V] tensor written (at B = 64 and a 128K vocabulary, 33 MB a step).
    """
    x = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
    chosen = x.gather(1, tokens[:, None])
    # the rank from the logits as given, not from logprobs: comparing the same values is exact in any
    # precision, while a logprob computed in float32 on one device and float64 on another can
    # round two close logits to one value on one side only
    rank = (logits > logits.gather(1, tokens[:, None])).sum(-1) + 1
    if num_logprobs:
        top = torch.topk(x, num_logprobs, dim=-1)
        values, ids = torch.cat([chosen, top.values], 1) - lse, torch.cat([tokens[:, None], top.indices], 1)
    else:
        values, ids = chosen - lse, tokens[:, None]
    return values.to(torch.float32), ids.to(torch.int64), rank.to(torch.int64)
