"""Cases for moe_experts_wna16: 4-bit experts (GPTQ v1, v2 and AWQ layouts, group size 32, 128 and per
channel), experts that receive no token, one token and many; each expert's weights drawn as 4-bit values,
zero points and scales and packed as linear_wna16's cases pack them, so a wrong repack fails here."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, param_name, randn
from tessera.conformance.cases.quant import FORMATS, pack
from tessera.conformance.space import Choice, Int, Space


def _expert_weights(e, k, n, group, fmt, g) -> dict[str, torch.Tensor]:
    groups = 1 if group == -1 else k // group
    parts = []
    for _ in range(e):
        q = torch.randint(0, 16, (k, n), generator=g)
        zeros = torch.randint(0, 16, (groups, n), generator=g)
        qweight, qzeros = pack(q, zeros, fmt)
        scales = (torch.rand(groups, n, generator=g, dtype=torch.float64) + 0.5) * (k**-0.5 / 6)
        parts.append((qweight, scales, qzeros))
    return {
        name: torch.stack([p[i] for p in parts]) for i, name in enumerate(("qweight", "scales", "qzeros"))
    }


def experts_wna16_case(name, t, e, k, h, inter, group, fmt, used_experts=None, full=False):
    def build(g):
        used = used_experts or e
        ids = torch.stack([torch.randperm(used, generator=g)[:k] for _ in range(t)]).to(torch.int32)
        values = {"x": randn(t, h, g=g)}
        for prefix, kk, n in (("w13", h, 2 * inter), ("w2", inter, h)):
            values |= {f"{prefix}_{n_}": v for n_, v in _expert_weights(e, kk, n, group, fmt, g).items()}
        values |= {"topk_weights": torch.softmax(randn(t, k, g=g), -1), "topk_ids": ids, "weight_format": fmt,
                   "out": nan_like((t, h))}  # fmt: skip
        return Inputs(values, poison=("out",), keep=("topk_weights",),
                      pad={"x": float("nan"), "topk_weights": float("nan"), "topk_ids": 0})  # fmt: skip

    facts = {"num_experts": e, "top_k": k, "weight_format": fmt}
    return Case("moe_experts_wna16", name, build, full_only=full, facts=facts)


def cases() -> list[Case]:
    return [
        experts_wna16_case("t1_e8_k2_h64_i32_g32_gptq", 1, 8, 2, 64, 32, 32, "gptq"),
        experts_wna16_case("t13_e16_k4_h128_i64_gchan_awq_empty", 13, 16, 4, 128, 64, -1, "awq", used_experts=6),
        experts_wna16_case("t40_e8_k2_h256_i128_g128_gptq_v2", 40, 8, 2, 256, 128, 128, "gptq_v2"),
    ]  # fmt: skip


def _make(p: dict) -> Case:
    step = 8 if p["group"] == -1 else p["group"]
    h, inter = -(-p["h"] // step) * step, -(-p["i"] // step) * step
    k = min(p["k"], p["e"])
    case = experts_wna16_case(param_name(p), p["t"], p["e"], k, h, inter, p["group"], p["fmt"])
    case.params = p
    return case


def space() -> list[Space]:
    params = {"t": Int(1, 256, hi_quick=24, boundaries=(16, 64)), "e": Int(1, 64, hi_quick=16, boundaries=(8, 16)),
              "k": Int(1, 8, boundaries=(2, 4)), "h": Int(8, 2048, hi_quick=160, boundaries=(64, 128)),
              "i": Int(8, 1024, hi_quick=96, boundaries=(32, 64, 128)), "group": Choice((32, 128, -1)),
              "fmt": Choice(FORMATS)}  # fmt: skip
    return [Space("moe_experts_wna16", params, _make)]
