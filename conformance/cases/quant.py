"""Cases for linear_wna16: GPTQ (v1 and v2) and AWQ checkpoint tensors, group size 128, 32 and per channel,
symmetric and with zeros, one token to prefill-sized M; the zoo adds Llama-3-8B's projections (--full).

Inputs are drawn as 4-bit values, zero points and scales, then packed the way each format stores them; a
kernel with a ``prepare`` gets them through it (the runner does that), so a wrong repack fails here.
"""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, param_name, randn
from tessera.conformance.space import Choice, Int, Space
from tessera.pluggable_layers.reference.linear_wna16 import AWQ_ORDER

FORMATS = ("gptq", "gptq_v2", "awq")


def _words(nibbles: torch.Tensor) -> torch.Tensor:
    """int64 [..., 8] of 0..15 -> int32 [...], nibble i at bits 4i (wrapped to int32)."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int64)
    word = (nibbles.long() << shifts).sum(-1)
    return torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)


def pack(q: torch.Tensor, zeros: torch.Tensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(qweight, qzeros) of q[K, N] and real zero points zeros[G, N] in ``fmt``'s layout."""
    k, n = q.shape
    if fmt == "awq":
        order = list(AWQ_ORDER)
        return _words(q.view(k, n // 8, 8)[..., order]), _words(zeros.view(-1, n // 8, 8)[..., order])
    stored = (zeros - 1) & 15 if fmt == "gptq" else zeros
    return _words(q.view(k // 8, 8, n).transpose(1, 2)), _words(stored.view(-1, n // 8, 8))


def wna16_case(name, m, k, n, group, fmt, bias=False, sym=False, full=False):
    groups = 1 if group == -1 else k // group

    def build(g):
        q = torch.randint(0, 16, (k, n), generator=g)
        zeros = torch.full((groups, n), 8) if sym else torch.randint(0, 16, (groups, n), generator=g)
        qweight, qzeros = pack(q, zeros, fmt)
        scales = (torch.rand(groups, n, generator=g, dtype=torch.float64) + 0.5) * (k**-0.5 / 6)
        return Inputs({"x": randn(m, k, g=g), "qweight": qweight, "scales": scales, "qzeros": qzeros,
                       "bias": randn(n, g=g) if bias else None, "weight_format": fmt, "out": nan_like((m, n))},
                      poison=("out",), pad={"x": float("nan")})  # fmt: skip

    return Case("linear_wna16", name, build, full_only=full, facts={"weight_format": fmt})


def cases() -> list[Case]:
    return [
        wna16_case("m1_k256_n64_g128_gptq_sym", 1, 256, 64, 128, "gptq", sym=True),
        wna16_case("m1_k512_n96_g128_awq", 1, 512, 96, 128, "awq"),
        wna16_case("m5_k384_n128_gchan_gptq_bias", 5, 384, 128, -1, "gptq", bias=True),
        wna16_case("m16_k256_n40_g32_gptq_v2", 16, 256, 40, 32, "gptq_v2"),
        wna16_case("m33_k640_n72_gchan_awq_bias", 33, 640, 72, -1, "awq", bias=True),
        wna16_case("m80_k512_n128_g128_gptq", 80, 512, 128, 128, "gptq"),
        wna16_case("m300_k1024_n256_g128_awq", 300, 1024, 256, 128, "awq", full=True),
    ]


def zoo_cases(hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int) -> list[Case]:
    """--full: a model's projections as 4-bit GPTQ (qkv, o, down) and AWQ (gate_up), group size 128."""
    qkv = (heads + 2 * kv_heads) * head_dim
    shapes = [("wna16_qkv", hidden, qkv, "gptq"), ("wna16_o", heads * head_dim, hidden, "gptq"),
              ("wna16_gate_up", hidden, 2 * intermediate, "awq"), ("wna16_down", intermediate, hidden, "gptq")]  # fmt: skip
    return [
        wna16_case(f"{name}_m{m}", m, k, n, 128, fmt, full=True)
        for name, k, n, fmt in shapes
        for m in (1, 64)
    ]


def _make(p: dict) -> Case:
    group = p["group"]
    step = 8 if group == -1 else group
    k, n = -(-p["k"] // step) * step, -(-p["n"] // 8) * 8
    case = wna16_case(param_name(p), p["m"], k, n, group, p["fmt"], bias=p["bias"], sym=p["sym"])
    case.params = p
    return case


def space() -> list[Space]:
    params = {"m": Int(1, 4096, hi_quick=80, boundaries=(16, 64, 128)), "k": Int(8, 8192, hi_quick=640),
              "n": Int(8, 8192, hi_quick=384, boundaries=(64, 128, 256)), "group": Choice((32, 128, -1)),
              "fmt": Choice(FORMATS), "bias": Choice((True, False)), "sym": Choice((True, False))}  # fmt: skip
    return [Space("linear_wna16", params, _make)]
