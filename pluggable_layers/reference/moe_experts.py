"""Reference moe_experts: the fused-experts MLP, one expert at a time.

For token ``t`` and each of its ``k`` choices ``e = topk_ids[t, j]``::

    h = w13[e] @ x[t]                    # [2I]: gate rows first, then up rows
    a = silu(h[:I]) * h[I:]              # [I]
    out[t] += topk_weights[t, j] * (w2[e] @ a)   # [H]

Weights may be fp8 with per-output-channel scales ``w13_scale[E, 2I]`` and
``w2_scale[E, H]`` (real weight = scale * stored weight); the activations stay in
x's dtype. Experts that receive no token are skipped.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    acc_dtype,
    check_dtype,
    check_index_range,
    check_out,
    check_rank,
    check_shape,
    fail,
    write,
)


def expert_weight(w: torch.Tensor, scale: torch.Tensor | None, e: int, acc: torch.dtype) -> torch.Tensor:
    we = w[e].to(acc)
    return we * scale[e].to(acc)[:, None] if scale is not None else we


def check_moe_args(op, x, w13, w2, topk_weights, topk_ids, w13_scale, w2_scale) -> None:
    check_dtype(op, "x", x, FLOATS)
    check_rank(op, "x", x, 2)
    check_rank(op, "w13", w13, 3)
    check_rank(op, "w2", w2, 3)
    num_experts, two_i, hidden = w13.shape
    if two_i % 2 or hidden != x.shape[1]:
        fail(op, f"w13 must be [E, 2I, H] with H = {x.shape[1]}, got {tuple(w13.shape)}")
    check_shape(op, "w2", w2, (num_experts, hidden, two_i // 2))
    check_shape(op, "topk_ids", topk_ids, (x.shape[0], None))
    check_shape(op, "topk_weights", topk_weights, tuple(topk_ids.shape))
    check_index_range(op, "topk_ids", topk_ids, num_experts, f"of the {num_experts} experts")
    if (w13_scale is None) != (w2_scale is None):
        fail(op, "w13_scale and w2_scale must be given together (fp8 weights) or not at all")
    if w13_scale is not None:
        check_shape(op, "w13_scale", w13_scale, (num_experts, two_i))
        check_shape(op, "w2_scale", w2_scale, (num_experts, hidden))


def moe_experts(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "moe_experts"
    check_moe_args(op, x, w13, w2, topk_weights, topk_ids, w13_scale, w2_scale)
    check_out(op, out, tuple(x.shape), x.dtype)
    acc = acc_dtype(x)
    half = w13.shape[1] // 2
    result = torch.zeros(x.shape, dtype=acc, device=x.device)
    ids = topk_ids.long()
    for e in ids.unique().tolist():
        tokens, slots = torch.nonzero(ids == e, as_tuple=True)
        h = x[tokens].to(acc) @ expert_weight(w13, w13_scale, e, acc).T
        a = torch.nn.functional.silu(h[:, :half]) * h[:, half:]
        y = a @ expert_weight(w2, w2_scale, e, acc).T
        result.index_add_(0, tokens, y * topk_weights[tokens, slots].to(acc)[:, None])
    return write(out, result.to(x.dtype))
