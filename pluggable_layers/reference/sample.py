"""Reference sample: greedy, temperature, top-k and top-p sampling by the exponential race.

Row ``b`` with ``temperature[b] == 0`` takes ``argmax(logits[b])``. Otherwise
``p = softmax(logits[b] / temperature[b])`` (computed without overflow at any finite
temperature: a tiny one acts as greedy); top-k (when ``0 < top_k[b] < V``)
keeps the tokens whose probability is at least the k-th largest; top-p (when
``top_p[b] < 1``) then keeps, in descending order of probability, each token
whose preceding kept mass is below ``top_p[b]`` (so the most likely token always
stays). The token is ``argmax(p_kept / exponential_noise[b])``, which draws from
the renormalized kept distribution. Callers pass the noise (``Exp(1)`` draws, one
per vocabulary entry) so that every kernel picks the same token for the same
noise; when None it is drawn from torch's default generator. ``top_k`` or
``top_p`` may be None: that filter is off for every row (callers that know this
on the host spare kernels a device-to-host read).

Optional inputs (plugin API 1.1; each None means off for every row), in the order applied:

- penalties (``prompt_mask``, ``output_counts``, ``presence_penalty``,
  ``frequency_penalty``, ``repetition_penalty``, all five or none), vLLM's
  semantics: where a token is in the prompt or the output so far, a positive
  logit is divided by ``repetition_penalty[b]`` and a negative one multiplied;
  then ``logits -= frequency_penalty[b] * count + presence_penalty[b] * (count > 0)``
  over the output counts. Greedy rows take the argmax of the penalized logits;
- ``logit_bias[B,V]``: added to the logits;
- ``min_p[B]``: after the temperature, tokens with ``p < min_p[b] * max(p)`` are
  dropped, before top-k and top-p;
- ``num_logprobs`` N: the return becomes ``(token_ids, logprobs[B,1+N],
  logprob_token_ids[B,1+N], sampled_rank[B])``; column 0 holds the sampled
  token, then the N most likely tokens in descending order. Logprobs are
  ``log_softmax`` of the ``logits`` as passed in: the model's own distribution,
  before penalties, bias and temperature (vLLM's default). ``sampled_rank`` is 1
  plus the number of tokens with a strictly higher logprob.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    check_dtype,
    check_rank,
    check_shape,
    checking_values,
    fail,
)
from tessera.pluggable_layers.sample_features import check_feature_args, logprobs_of


def check_sample_args(op, logits, temperature, top_k, top_p, noise) -> None:
    check_rank(op, "logits", logits, 2)
    check_dtype(op, "logits", logits, FLOATS)
    rows = logits.shape[0]
    for name, t in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
        if t is not None:
            check_shape(op, name, t, (rows,))
    bad_p = top_p is not None and bool(((top_p <= 0) | (top_p > 1)).any())
    bad_t = rows and checking_values() and bool(((temperature < 0) | ~torch.isfinite(temperature)).any())
    if rows and checking_values() and (bad_t or bad_p):
        fail(op, "temperature must be finite and >= 0, and top_p in (0, 1]")
    if noise is not None:
        check_shape(op, "exponential_noise", noise, tuple(logits.shape))


def tempered_softmax(logits: torch.Tensor, temperature) -> torch.Tensor:
    """``softmax(logits / t)`` over the last dimension, safe at every finite ``t > 0``.

    The row maximum is subtracted before dividing, so ``(x - max) / t`` lies in
    ``[-inf, 0]`` and cannot overflow: a tiny ``t`` (1e-40, a float32 subnormal)
    gives probability 1 to the maximum (shared among exact ties), as the limit
    ``t -> 0`` does, instead of ``inf / inf = NaN``. Tokens masked to ``-inf`` stay at 0.
    """
    peak = logits.amax(dim=-1, keepdim=True)
    return torch.softmax((logits - peak) / temperature, dim=-1)


def kept_probabilities(probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """One row: the probabilities with filtered-out tokens set to zero."""
    vocab = probs.shape[0]
    kept = probs.clone()
    if 0 < top_k < vocab:
        kth = torch.sort(probs, descending=True).values[top_k - 1]
        kept[probs < kth] = 0
    if top_p < 1:
        ordered, order = torch.sort(kept, descending=True, stable=True)
        before = torch.cumsum(ordered, 0) - ordered
        drop = before >= top_p * ordered.sum()
        kept[order[drop]] = 0
    return kept


def penalize_row(row: torch.Tensor, b: int, logit_bias, penalties: dict) -> torch.Tensor:
    """One row of logits with its penalties and bias applied (a new tensor)."""
    row = row.clone()
    if penalties.get("output_counts") is not None:
        counts = penalties["output_counts"][b].to(row.dtype)
        seen = penalties["prompt_mask"][b] | (counts > 0)
        rep = float(penalties["repetition_penalty"][b])
        row[seen & (row > 0)] /= rep
        row[seen & (row < 0)] *= rep
        row -= float(penalties["frequency_penalty"][b]) * counts
        row -= float(penalties["presence_penalty"][b]) * (counts > 0).to(row.dtype)
    if logit_bias is not None:
        row += logit_bias[b].to(row.dtype)
    return row


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    exponential_noise: torch.Tensor | None = None,
    *,
    min_p: torch.Tensor | None = None,
    logit_bias: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
    output_counts: torch.Tensor | None = None,
    presence_penalty: torch.Tensor | None = None,
    frequency_penalty: torch.Tensor | None = None,
    repetition_penalty: torch.Tensor | None = None,
    num_logprobs: int | None = None,
):
    op = "sample"
    penalties = {"prompt_mask": prompt_mask, "output_counts": output_counts, "presence_penalty": presence_penalty,
                 "frequency_penalty": frequency_penalty, "repetition_penalty": repetition_penalty}  # fmt: skip
    check_sample_args(op, logits, temperature, top_k, top_p, exponential_noise)
    check_feature_args(op, logits, min_p, logit_bias, penalties, num_logprobs)
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if exponential_noise is None:
        exponential_noise = torch.empty(
            logits.shape, dtype=torch.float32, device=logits.device
        ).exponential_()
    tokens = torch.empty(logits.shape[0], dtype=torch.int64, device=logits.device)
    for b in range(logits.shape[0]):
        row = penalize_row(logits[b].to(acc), b, logit_bias, penalties)
        t = float(temperature[b])
        if t == 0:
            tokens[b] = torch.argmax(row)
            continue
        k = int(top_k[b]) if top_k is not None else 0
        p = float(top_p[b]) if top_p is not None else 1.0
        probs = tempered_softmax(row, t)
        if min_p is not None:
            probs = torch.where(probs < float(min_p[b]) * probs.max(), torch.zeros_like(probs), probs)
        kept = kept_probabilities(probs, k, p)
        tokens[b] = torch.argmax(kept / exponential_noise[b].to(acc))
    if num_logprobs is None:
        return tokens
    return (tokens, *logprobs_of(logits.to(acc), tokens, int(num_logprobs)))
