"""Cases for silu_and_mul, rotary_embedding and kv_cache_write."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, randn


def silu_case(name, t, inter, full=False):
    def build(g):
        return Inputs({"x": randn(t, 2 * inter, g=g), "out": nan_like((t, inter))}, poison=("out",))

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
                      poison=("q_out", "k_out"), keep=("cos_sin_cache",))  # fmt: skip

    return Case("rotary_embedding", name, build, facts={"head_size": d, "rotary_dim": rot})


def kv_write_case(name, t, heads, d, block, padding):
    def build(g):
        blocks = t // block + 3
        slots = torch.randperm(blocks * block, generator=g)[:t]
        if padding:
            slots[::5] = -1
        return Inputs({"key": randn(t, heads, d, g=g), "value": randn(t, heads, d, g=g),
                       "key_cache": nan_like((blocks, block, heads, d)), "value_cache": nan_like((blocks, block, heads, d)),
                       "slot_mapping": slots}, inplace=("key_cache", "value_cache"), compare_return=False)  # fmt: skip

    return Case("kv_cache_write", name, build, facts={"head_size": d})


def cases() -> list[Case]:
    return [
        silu_case("t1_i64", 1, 64), silu_case("t7_i4099", 7, 4099), silu_case("t300_i131", 300, 131),
        silu_case("t2048_i14336", 2048, 14336, full=True),
        rotary_case("t1_gqa4_d128_neox", 1, 8, 2, 128, 128, True), rotary_case("t37_d64_gptj", 37, 4, 4, 64, 64, False),
        rotary_case("t300_d80_partial32", 300, 2, 1, 80, 32, True),
        kv_write_case("t1_h8_d128_b16", 1, 8, 128, 16, False), kv_write_case("t67_h2_d40_b16_padding", 67, 2, 40, 16, True),
    ]  # fmt: skip
