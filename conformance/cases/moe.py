"""Cases for moe_route and moe_experts: experts that receive no token, one token, top-k 1..8; their
shape spaces (expert counts 1..512 with non-powers of two, top-k up to 16); and adversarial router
logits (NaN rows, -inf rows, +inf entries) on which only the postconditions are defined."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, param_name, randn
from tessera.conformance.space import Choice, Int, Space
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel

JUNK = ("nan_rows", "neg_inf_rows", "pos_inf", "nan_entries")


def junk_rows(logits: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """Poison every other row (at least one) with ``kind``; returns the mask of the untouched rows."""
    t, e = logits.shape
    bad = torch.arange(t) % 2 == 0
    cols = torch.randint(0, e, (t,), generator=g)
    for r in bad.nonzero().flatten().tolist():
        if kind == "nan_rows":
            logits[r] = float("nan")
        elif kind == "neg_inf_rows":
            logits[r] = float("-inf")
        elif kind == "pos_inf":
            logits[r, cols[r]] = float("inf")
            logits[r, (cols[r] + 1) % e] = float("inf")
        else:
            logits[r, cols[r]] = float("nan")
    return ~bad


def route_case(name, t, e, k, renorm, scoring, junk=None):
    def build(g):
        # distinct in bf16 (spacing 16 / e over [-8, 8)): with ties any expert order would be right
        logits = torch.stack([torch.randperm(e, generator=g) for _ in range(t)]).double() * (16.0 / e) - 8.0
        rows = junk_rows(logits, junk, g) if junk else None
        return Inputs({"router_logits": logits, "top_k": k, "renormalize": renorm, "scoring": scoring}, rows=rows,
                      pad={"router_logits": float("nan")})  # fmt: skip

    return Case(
        "moe_route",
        name,
        build,
        facts={"num_experts": e, "top_k": k},
        origin="adversarial" if junk else "fixed",
    )


def experts_case(name, t, e, k, h, inter, used_experts=None, full=False):
    def build(g):
        used = used_experts or e
        ids = torch.stack([torch.randperm(used, generator=g)[:k] for _ in range(t)]).to(torch.int32)
        weights = torch.softmax(randn(t, k, g=g), -1)
        return Inputs({"x": randn(t, h, g=g), "w13": randn(e, 2 * inter, h, g=g, scale=h**-0.5),
                       "w2": randn(e, h, inter, g=g, scale=inter**-0.5), "topk_weights": weights, "topk_ids": ids,
                       "out": nan_like((t, h))}, poison=("out",), keep=("topk_weights",),
                      pad={"x": float("nan"), "topk_weights": float("nan"), "topk_ids": 0})  # fmt: skip

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


def adversarial() -> list[Case]:
    """Router logits a real engine meets (fp16 overflow, garbage padding rows): ids stay in range."""
    shapes = [
        (6, 6, 3, "softmax"),
        (9, 8, 2, "softmax"),
        (5, 60, 4, "softmax"),
        (7, 128, 8, "sigmoid"),
        (3, 1, 1, "softmax"),
    ]
    return [route_case(f"t{t}_e{e}_k{k}_{scoring}_{junk}", t, e, k, True, scoring, junk=junk)
            for t, e, k, scoring in shapes for junk in JUNK]  # fmt: skip


def make_route(p: dict) -> Case:
    p = {**p, "k": min(p["k"], p["e"])}
    case = route_case(param_name(p), p["t"], p["e"], p["k"], p["renorm"], p["scoring"],
                      junk=None if p["junk"] == "none" else p["junk"])  # fmt: skip
    case.params = p
    return case


def make_experts(p: dict) -> Case:
    p = {**p, "k": min(p["k"], p["e"]), "used": max(min(p["k"], p["e"]), min(p["used"], p["e"]))}
    case = experts_case(param_name(p), p["t"], p["e"], p["k"], p["h"], p["i"], used_experts=p["used"])
    case.params = p
    return case


def space() -> list[Space]:
    experts = Int(1, 512, hi_quick=256, boundaries=(8, 16, 32, 64, 128, 256))
    route = Space("moe_route", {"t": Int(1, 4096, hi_quick=64, boundaries=(16, 32, 64, 128)), "e": experts,
                                "k": Int(1, 16, boundaries=(2, 4, 8)), "renorm": Choice((True, False)),
                                "scoring": Choice(("softmax", "sigmoid")), "junk": Choice(("none", "none") + JUNK)},
                  make_route)  # fmt: skip
    moe = Space("moe_experts", {"t": Int(1, 512, hi_quick=24, boundaries=(16, 64)), "e": Int(1, 160, hi_quick=24, boundaries=(8, 16, 64)),
                                "k": Int(1, 8, boundaries=(2, 4)), "h": Int(16, 4096, hi_quick=160, boundaries=(64, 128)),
                                "i": Int(8, 2048, hi_quick=96, boundaries=(32, 64, 128)), "used": Int(1, 160, hi_quick=24)},
                make_experts)  # fmt: skip
    return [route, moe]
