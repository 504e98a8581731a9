"""moe_experts on the CPU: one sort of the token-expert pairs, then two matmuls per active expert.

Same contract as the reference; instead of scanning every expert's mask it sorts
the (token, choice) pairs by expert once and runs each expert's tokens through
dense matmuls in the input dtype, accumulating the weighted outputs with index_add_.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import check_out
from tessera.pluggable_layers.reference.moe_experts import check_moe_args


def moe_experts(x, w13, w2, topk_weights, topk_ids, w13_scale=None, w2_scale=None, out=None):
    op = "moe_experts"
    check_moe_args(op, x, w13, w2, topk_weights, topk_ids, w13_scale, w2_scale)
    check_out(op, out, tuple(x.shape), x.dtype)
    half = w13.shape[1] // 2
    flat_ids = topk_ids.reshape(-1).long()
    order = torch.argsort(flat_ids, stable=True)
    counts = torch.bincount(flat_ids, minlength=w13.shape[0]).tolist()
    tokens = order // topk_ids.shape[1]
    weights = topk_weights.reshape(-1)[order].to(torch.float32)
    acc = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        idx = tokens[start : start + count]
        wa, wb = w13[expert], w2[expert]
        if w13_scale is not None:
            wa = (wa.to(torch.float32) * w13_scale[expert][:, None]).to(x.dtype)
            wb = (wb.to(torch.float32) * w2_scale[expert][:, None]).to(x.dtype)
        h = x[idx] @ wa.T
        y = (torch.nn.functional.silu(h[:, :half]) * h[:, half:]) @ wb.T
        acc.index_add_(0, idx, y.to(torch.float32) * weights[start : start + count, None])
        start += count
    result = acc.to(x.dtype)
    if out is None:
        return result
    out.copy_(result)
    return out
