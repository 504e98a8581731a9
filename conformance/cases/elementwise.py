"""Cases for silu_and_mul, rotary_embedding and kv_cache_write."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, param_name, randn
from tessera.conformance.space import Choice, Int, Space


def silu_case(name, t, inter, full=False):
    def build(g):
        return Inputs(
            {"x": randn(t, 2 * inter, g=g), "out": nan_like((t, inter))},
            poison=("out",),
            pad={"x": float("nan")},
        )

    return Case("silu_and_mul", name, build, full_only=full)


def rope_cache(positions: int, rot: int) -> torch.Tensor:
    inv = 1.0 / 10000 ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * inv
    return torch.cat([angles.cos(), angles.sin()], -1)


def rotary_case(name, t, hq, hk, d, rot, neox):
    def build(g):
        return Inputs({"positions": torch.randint(0, 4096, (t,), generator=g), "q": randn(t, hq, d, g=g),
                       "k": randn(t, hk, d, g=g), "cos_sin_cache": rope_cache(4096, rot), "is_neox": neox,
                       "q_out": nan_like((t, hq, d)), "k_out": nan_like((t, hk, d))},
                      poison=("q_out", "k_out"), keep=("cos_sin_cache",),
                      pad={"positions": 0, "q": float("nan"), "k": float("nan")})  # fmt: skip

    return Case("rotary_embedding", name, build, facts={"head_size": d, "rotary_dim": rot})


def kv_write_case(name, t, heads, d, block, padding):
    def build(g):
        blocks = t // block + 3
        slots = torch.randperm(blocks * block, generator=g)[:t]
        if padding:
            slots[::5] = -1
        return Inputs({"key": randn(t, heads, d, g=g), "value": randn(t, heads, d, g=g),
                       "key_cache": nan_like((blocks, block, heads, d)), "value_cache": nan_like((blocks, block, heads, d)),
                       "slot_mapping": slots}, inplace=("key_cache", "value_cache"), compare_return=False,
                      pad={"key": float("nan"), "value": float("nan"), "slot_mapping": -1})  # fmt: skip

    return Case("kv_cache_write", name, build, facts={"head_size": d})


def cases() -> list[Case]:
    return [
        silu_case("t1_i64", 1, 64), silu_case("t7_i4099", 7, 4099), silu_case("t300_i131", 300, 131),
        silu_case("t2048_i14336", 2048, 14336, full=True),
        rotary_case("t1_gqa4_d128_neox", 1, 8, 2, 128, 128, True), rotary_case("t37_d64_gptj", 37, 4, 4, 64, 64, False),
        rotary_case("t300_d80_partial32", 300, 2, 1, 80, 32, True),
        kv_write_case("t1_h8_d128_b16", 1, 8, 128, 16, False), kv_write_case("t67_h2_d40_b16_padding", 67, 2, 40, 16, True),
    ]  # fmt: skip


def _named(case: Case, p: dict) -> Case:
    case.params = p
    return case


def rotary(p: dict) -> Case:
    q = {**p, "hq": p["hk"] * p["gqa"], "rot": min(p["d"], p["rot"]) // 2 * 2 or 2}
    return _named(rotary_case(param_name(q), q["t"], q["hq"], q["hk"], q["d"], q["rot"], q["neox"]), q)


def space() -> list[Space]:
    tokens = Int(1, 8192, hi_quick=48, boundaries=(16, 64))
    heads = Int(1, 64, hi_quick=16, boundaries=(8, 16))
    head_dims = Choice((32, 40, 64, 80, 96, 112, 128, 192, 256))
    return [
        Space("silu_and_mul", {"t": tokens, "i": Int(1, 28672, hi_quick=4099, boundaries=(64, 128, 1024, 4096))},
              lambda p: _named(silu_case(param_name(p), p["t"], p["i"]), p)),
        Space("rotary_embedding", {"t": tokens, "hk": heads, "gqa": Choice((1, 2, 3, 4, 7, 8)), "d": head_dims,
                                   "rot": Choice((16, 32, 64, 128, 256)), "neox": Choice((True, False))}, rotary),
        Space("kv_cache_write", {"t": Int(1, 4096, hi_quick=96, boundaries=(16, 32)), "hk": heads, "d": head_dims,
                                 "block": Choice((1, 8, 16, 32)), "padding": Choice((True, False))},
              lambda p: _named(kv_write_case(param_name(p), p["t"], p["hk"], p["d"], p["block"], p["padding"]), p)),
    ]  # fmt: skip
