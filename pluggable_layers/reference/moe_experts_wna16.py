"""Reference moe_experts_wna16: each expert's 4-bit weights dequantized, then the reference moe_experts.

Expert ``e``'s gate_up weight ``w13[e]`` ([2I, H]: gate rows, then up rows) is stored as linear_wna16
stores a weight [N=2I, K=H]: ``w13_qweight[e]``, ``w13_scales[e]`` [G, 2I], ``w13_qzeros[e]`` in the
``weight_format`` layout (GPTQ v1 or v2: qweight [H/8, 2I]; AWQ: [H, 2I/8]; qzeros [G, 2I/8]); the
down weight ``w2[e]`` [H, I] likewise with K = I. The real weight is ``(q - zero) * scale`` per group.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, acc_dtype, check_dtype, check_rank, fail
from tessera.pluggable_layers.reference.linear_wna16 import checkpoint_shape, dequantize
from tessera.pluggable_layers.reference.moe_experts import moe_experts

OP = "moe_experts_wna16"


def check_expert_weights(name: str, qweight, scales, qzeros, k: int, weight_format: str) -> tuple[int, int]:
    """(E, N) of one stacked expert weight [E, N, K] in ``weight_format``'s layout."""
    for part, t in (("qweight", qweight), ("scales", scales), ("qzeros", qzeros)):
        check_rank(OP, f"{name}_{part}", t, 3)
    experts, groups, n = scales.shape
    if k % 8 or n % 8 or k % groups:
        fail(OP, f"{name}: K={k} must be a multiple of 8 and of the {groups} groups, N={n} a multiple of 8")
    for part, shape in checkpoint_shape(weight_format, k, n, groups).items():
        got = {"qweight": qweight, "qzeros": qzeros, "scales": scales}[part]
        if tuple(got.shape) != (experts, *shape):
            fail(
                OP,
                f"{name}_{part} must be {[experts, *shape]} in the {weight_format} layout, got {list(got.shape)}",
            )
    return experts, n


def dequantize_experts(qweight, scales, qzeros, weight_format: str, dtype: torch.dtype) -> torch.Tensor:
    """[E, N, K] in ``dtype`` from the stacked checkpoint tensors."""
    return torch.stack(
        [dequantize(qweight[e], scales[e], qzeros[e], weight_format, dtype) for e in range(len(scales))]
    )


def moe_experts_wna16(
    x: torch.Tensor,
    w13_qweight: torch.Tensor,
    w13_scales: torch.Tensor,
    w13_qzeros: torch.Tensor,
    w2_qweight: torch.Tensor,
    w2_scales: torch.Tensor,
    w2_qzeros: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    weight_format: str = "gptq",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    check_dtype(OP, "x", x, FLOATS)
    check_rank(OP, "x", x, 2)
    experts, two_i = check_expert_weights(
        "w13", w13_qweight, w13_scales, w13_qzeros, x.shape[1], weight_format
    )
    if two_i % 2:
        fail(OP, f"w13 has {two_i} output rows; it must be gate and up rows, 2I")
    e2, hidden = check_expert_weights("w2", w2_qweight, w2_scales, w2_qzeros, two_i // 2, weight_format)
    if (e2, hidden) != (experts, x.shape[1]):
        fail(
            OP, f"w2 must hold {experts} experts of [H={x.shape[1]}, I={two_i // 2}], got {e2} of N={hidden}"
        )
    acc = acc_dtype(x)
    w13 = dequantize_experts(w13_qweight, w13_scales, w13_qzeros, weight_format, acc)
    w2 = dequantize_experts(w2_qweight, w2_scales, w2_qzeros, weight_format, acc)
    return moe_experts(x, w13, w2, topk_weights, topk_ids, out=out)
