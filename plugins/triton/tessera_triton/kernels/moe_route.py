"""Triton moe_route: softmax (or sigmoid) over the router logits and top-k, one kernel.

Layout: router_logits [T, E] with a unit stride in E. One program takes
BLOCK_T tokens and holds their whole expert row (E padded to a power of two):
scores in float32, then ``top_k`` rounds of arg-max (lowest index on ties) / mask,
the picked scores collected in registers and renormalized there when asked.
Outputs are float32 weights and int32 ids, in descending score order. Every id
lies in ``[0, E)`` and the ids of a row are distinct, for any input: a NaN score
(from NaN logits, or a row of -inf) ranks first with a NaN weight, as
``torch.topk`` ranks NaN, instead of failing the arg-max's equality test.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_dtype, check_last_dim_contiguous
from tessera.pluggable_layers.reference.moe_route import moe_route as reference_route
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, constants, launch_options, next_pow2

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_T": [1, 2, 4, 8, 16], "num_warps": [1, 2, 4, 8]},
    default={"BLOCK_T": 4, "num_warps": 4},
)
SHAPE_KEY = ShapeKey(
    {"experts": "exact", "top_k": "exact", "tokens": "pow2"},
    lambda router_logits, top_k, *a, **k: {
        "experts": router_logits.shape[1], "top_k": top_k, "tokens": router_logits.shape[0],
    },
)  # fmt: skip


@triton.jit
def _moe_route_kernel(
    logits_ptr, weights_ptr, ids_ptr, T, E, stride_t,
    TOP_K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_T: tl.constexpr,
    SIGMOID: tl.constexpr, RENORMALIZE: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    row_ok = rows < T
    mask = row_ok[:, None] & (cols[None, :] < E)
    x = tl.load(
        logits_ptr + rows[:, None].to(tl.int64) * stride_t + cols[None, :], mask=mask, other=-float("inf")
    )
    x = tl.where(row_ok[:, None], x.to(tl.float32), 0.0)  # rows past T: finite, never stored
    if SIGMOID:
        scores = 1.0 / (1.0 + tl.exp(-x))
    else:
        e = tl.exp(x - tl.max(x, axis=1)[:, None])
        scores = e / tl.sum(e, axis=1)[:, None]
    # A NaN score (NaN or all -inf logits) ranks above every real one, as in torch.topk, and keeps its
    # NaN weight; padded lanes rank below every real one, so each round's arg-max is a real expert.
    is_nan = scores != scores
    scores = tl.where(is_nan, 2.0, scores)
    scores = tl.where(mask, scores, -1.0)  # below every real score (sigmoid and softmax are >= 0)
    slots = tl.arange(0, BLOCK_K)
    picked_w = tl.zeros([BLOCK_T, BLOCK_K], dtype=tl.float32)
    picked_i = tl.zeros([BLOCK_T, BLOCK_K], dtype=tl.int32)
    for j in tl.static_range(TOP_K):
        # one reduction gives the arg-max (lowest index among ties): no equality test between two
        # computations of the same score, which the compiler may round differently
        best, idx = tl.max(scores, axis=1, return_indices=True, return_indices_tie_break_left=True)
        idx = tl.minimum(idx, E - 1)
        weight = tl.where(best > 1.5, float("nan"), best)
        picked_w = tl.where(slots[None, :] == j, weight[:, None], picked_w)
        picked_i = tl.where(slots[None, :] == j, idx[:, None], picked_i)
        scores = tl.where(cols[None, :] == idx[:, None], -2.0, scores)
    if RENORMALIZE:
        picked_w = picked_w / tl.sum(picked_w, axis=1)[:, None]
    out_mask = row_ok[:, None] & (slots[None, :] < TOP_K)
    offs = rows[:, None].to(tl.int64) * TOP_K + slots[None, :]
    tl.store(weights_ptr + offs, picked_w, mask=out_mask)
    tl.store(ids_ptr + offs, picked_i, mask=out_mask)


def moe_route(router_logits, top_k, renormalize=True, scoring="softmax", config=None):
    reference_route(router_logits[:0], top_k, renormalize, scoring)  # the contract's argument checks
    check_dtype("moe_route", "router_logits", router_logits, (torch.float32, torch.float16, torch.bfloat16))
    check_last_dim_contiguous("moe_route", "router_logits", router_logits)
    tokens, experts = router_logits.shape
    config = config or CONFIG_SPACE.default
    weights = torch.empty(tokens, top_k, dtype=torch.float32, device=router_logits.device)
    ids = torch.empty(tokens, top_k, dtype=torch.int32, device=router_logits.device)
    if tokens:
        _moe_route_kernel[(triton.cdiv(tokens, config["BLOCK_T"]),)](
            router_logits, weights, ids, tokens, experts, router_logits.stride(0),
            TOP_K=top_k, BLOCK_K=next_pow2(top_k), BLOCK_E=next_pow2(experts),
            SIGMOID=scoring == "sigmoid", RENORMALIZE=bool(renormalize),
            **constants(config, _moe_route_kernel), **launch_options(config),
        )  # fmt: skip
    return weights, ids


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    logits = torch.randn(shape["tokens"], shape["experts"], dtype=dtype, device=device)
    return (logits, shape["top_k"], True, "softmax"), {}
