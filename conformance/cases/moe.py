"""Cases for moe_route and moe_experts: experts that receive no token, one token, top-k 1..8."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, randn
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel


def route_case(name, t, e, k, renorm, scoring):
    def build(g):
        # distinct in bf16 (spacing 16 / e over [-8, 8)): with ties any expert order would be right
        logits = torch.stack([torch.randperm(e, generator=g) for _ in range(t)]).double() * (16.0 / e) - 8.0
        return Inputs({"router_logits": logits, "top_k": k, "renormalize": renorm, "scoring": scoring})

    return Case("moe_route", name, build, facts={"num_experts": e, "top_k": k})


def experts_case(name, t, e, k, h, inter, used_experts=None, full=False):
    def build(g):
        used = used_experts or e
        ids = torch.stack([torch.randperm(used, generator=g)[:k] for _ in range(t)]).to(torch.int32)
        weights = torch.softmax(randn(t, k, g=g), -1)
        return Inputs({"x": randn(t, h, g=g), "w13": randn(e, 2 * inter, h, g=g, scale=h**-0.5),
                       "w2": randn(e, h, inter, g=g, scale=inter**-0.5), "topk_weights": weights, "topk_ids": ids,
                       "out": nan_like((t, h))}, poison=("out",), keep=("topk_weights",))  # fmt: skip

    return Case("moe_experts", name, build, full_only=full, facts={"num_experts": e, "top_k": k})


def experts_fp8_case(name, t, e, k, h, inter, fp8="float8_e4m3fn", full=False):
    """fp8 experts with per-output-channel scales, as FusedMoE quantizes them on load."""

    def build(g):
        ids = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(t)]).to(torch.int32)
        q13, s13 = quantize_per_channel(randn(e * 2 * inter, h, g=g, scale=h**-0.5), getattr(torch, fp8))
        q2, s2 = quantize_per_channel(randn(e * h, inter, g=g, scale=inter**-0.5), getattr(torch, fp8))
        return Inputs({"x": randn(t, h, g=g), "w13": q13.view(e, 2 * inter, h), "w2": q2.view(e, h, inter),
                       "topk_weights": torch.softmax(randn(t, k, g=g), -1), "topk_ids": ids,
                       "w13_scale": s13.view(e, -1).double(), "w2_scale": s2.view(e, -1).double(),
                       "out": nan_like((t, h))}, poison=("out",), keep=("topk_weights", "w13_scale", "w2_scale"))  # fmt: skip

    return Case("moe_experts", name, build, full_only=full,
                facts={"num_experts": e, "top_k": k, "weight_dtype": fp8, "fp8_dtype": fp8})  # fmt: skip


def cases() -> list[Case]:
    return [
        route_case("t1_e8_k2_softmax", 1, 8, 2, True, "softmax"), route_case("t67_e128_k8_softmax", 67, 128, 8, True, "softmax"),
        route_case("t13_e16_k4_sigmoid_raw", 13, 16, 4, False, "sigmoid"),
        experts_case("t1_e8_k2", 1, 8, 2, 64, 32), experts_case("t13_e16_k4_empty_experts", 13, 16, 4, 96, 48, used_experts=6),
        experts_case("t64_e128_k8_h2048_i768", 64, 128, 8, 2048, 768, full=True),
        experts_fp8_case("t9_e16_k4_fp8", 9, 16, 4, 128, 64), experts_case("t300_e8_k2_h72_i40", 300, 8, 2, 72, 40),
        experts_fp8_case("t64_e128_k8_h2048_i768_fp8", 64, 128, 8, 2048, 768, full=True),
    ]  # fmt: skip
