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


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    exponential_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "sample"
    check_sample_args(op, logits, temperature, top_k, top_p, exponential_noise)
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if exponential_noise is None:
        exponential_noise = torch.empty(
            logits.shape, dtype=torch.float32, device=logits.device
        ).exponential_()
    tokens = torch.empty(logits.shape[0], dtype=torch.int64, device=logits.device)
    for b in range(logits.shape[0]):
        row = logits[b].to(acc)
        t = float(temperature[b])
        if t == 0:
            tokens[b] = torch.argmax(row)
            continue
        k = int(top_k[b]) if top_k is not None else 0
        p = float(top_p[b]) if top_p is not None else 1.0
        kept = kept_probabilities(tempered_softmax(row, t), k, p)
        tokens[b] = torch.argmax(kept / exponential_noise[b].to(acc))
    return tokens
