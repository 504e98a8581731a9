"""moe_experts_wna16 on the CPU: the 4-bit experts are dequantized once, by ``prepare``, into dense weights.

As the cpu linear_wna16 does: ``prepare`` returns the dense ``w13`` [E, 2I, H] as ``w13_qweight`` and
``w2`` [E, H, I] as ``w2_qweight`` in the scales' dtype and drops the scales and zero points; each call is
then the cpu moe_experts kernel on those.
"""

from __future__ import annotations

from tessera.pluggable_layers.checks import fail
from tessera.pluggable_layers.reference.moe_experts_wna16 import dequantize_experts
from tessera_cpu.kernels.moe_experts import moe_experts

OP = "moe_experts_wna16"
PREPARED_LAYOUT = (
    "dense w13 [E, 2I, H] and w2 [E, H, I] in the scales' dtype (dequantized once; scales, qzeros dropped)"
)


def prepare(weights, weight_format: str = "gptq", **facts):
    out = {}
    for name in ("w13", "w2"):
        scales = weights[f"{name}_scales"]
        dense = dequantize_experts(weights[f"{name}_qweight"], scales, weights[f"{name}_qzeros"], weight_format,
                                   scales.dtype)  # fmt: skip
        out |= {f"{name}_qweight": dense.contiguous(), f"{name}_scales": None, f"{name}_qzeros": None}
    return out


def moe_experts_wna16(x, w13_qweight, w13_scales, w13_qzeros, w2_qweight, w2_scales, w2_qzeros, topk_weights,
                      topk_ids, weight_format="gptq", out=None):  # fmt: skip
    if w13_scales is not None or w2_scales is not None or not w13_qweight.is_floating_point():
        fail(
            OP,
            "the cpu kernel takes the dense experts its prepare made; run its prepare on the checkpoint weights",
        )
    return moe_experts(x, w13_qweight.to(x.dtype), w2_qweight.to(x.dtype), topk_weights, topk_ids, out=out)
