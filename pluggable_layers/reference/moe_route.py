"""Reference moe_route: pick ``top_k`` experts per token from router logits.

Scores are ``softmax(logits)`` over all experts (or ``sigmoid(logits)``); the
``top_k`` highest are taken, in descending order, and their scores become the
weights, renormalized to sum to one when ``renormalize`` is set. Weights are
float32, ids int32.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_rank, fail

SCORINGS = ("softmax", "sigmoid")


def moe_route(
    router_logits: torch.Tensor, top_k: int, renormalize: bool = True, scoring: str = "softmax"
) -> tuple[torch.Tensor, torch.Tensor]:
    op = "moe_route"
    check_rank(op, "router_logits", router_logits, 2)
    check_dtype(op, "router_logits", router_logits, FLOATS)
    if not 1 <= top_k <= router_logits.shape[1]:
        fail(op, f"top_k must be between 1 and the number of experts ({router_logits.shape[1]}), got {top_k}")
    if scoring not in SCORINGS:
        fail(op, f"scoring must be one of {SCORINGS}, got {scoring!r}")
    acc = torch.float64 if router_logits.dtype == torch.float64 else torch.float32
    logits = router_logits.to(acc)
    scores = torch.softmax(logits, dim=-1) if scoring == "softmax" else torch.sigmoid(logits)
    weights, ids = torch.topk(scores, top_k, dim=-1, sorted=True)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(torch.float32 if acc == torch.float32 else acc), ids.to(torch.int32)
