"""Cases for causal_conv1d(_update), ssd_chunk_scan and selective_state_update: ragged batches,
1-token sequences, sequences shorter than a chunk, chunk-boundary lengths, initial states."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, offsets, param_name, randn
from tessera.conformance.space import Choice, Int, Space


def conv_case(name, lengths, channels, width=4, slots=None):
    def build(g):
        b = len(lengths)
        n_slots = slots or b + 2
        return Inputs({"x": randn(sum(lengths), channels, g=g), "weight": randn(channels, width, g=g, scale=0.5),
                       "bias": randn(channels, g=g), "query_start_loc": offsets(lengths),
                       "conv_states": randn(n_slots, channels, width - 1, g=g),
                       "state_indices": torch.randperm(n_slots, generator=g)[:b].to(torch.int32),
                       "has_initial_state": torch.arange(b) % 2 == 1, "activation": "silu",
                       "out": nan_like((sum(lengths), channels))}, poison=("out",), inplace=("conv_states",))  # fmt: skip

    return Case("causal_conv1d", name, build, facts={"conv_kernel": width})


def conv_update_case(name, batch, channels, width=4):
    def build(g):
        slots = batch + 3
        return Inputs({"x": randn(batch, channels, g=g), "conv_states": randn(slots, channels, width - 1, g=g),
                       "weight": randn(channels, width, g=g, scale=0.5), "bias": randn(channels, g=g),
                       "state_indices": torch.randperm(slots, generator=g)[:batch].to(torch.int32), "activation": "silu",
                       "out": nan_like((batch, channels))}, poison=("out",), inplace=("conv_states",))  # fmt: skip

    return Case("causal_conv1d_update", name, build, facts={"conv_kernel": width})


SSM_KEEP = ("A", "D", "dt_bias", "ssm_states")


def ssd_case(name, lengths, heads, head_dim, state, groups, chunk, full=False):
    def build(g):
        t, b = sum(lengths), len(lengths)
        slots = b + 2
        return Inputs({"x": randn(t, heads, head_dim, g=g), "dt": randn(t, heads, g=g, scale=0.5),
                       "A": -torch.rand(heads, generator=g, dtype=torch.float64) * 2 - 0.1, "B": randn(t, groups, state, g=g),
                       "C": randn(t, groups, state, g=g), "D": randn(heads, g=g), "dt_bias": randn(heads, g=g, scale=0.5),
                       "dt_softplus": True, "query_start_loc": offsets(lengths),
                       "ssm_states": randn(slots, heads, head_dim, state, g=g, scale=0.5),
                       "state_indices": torch.randperm(slots, generator=g)[:b].to(torch.int32),
                       "has_initial_state": torch.arange(b) % 2 == 0, "chunk_size": chunk,
                       "out": nan_like((t, heads, head_dim))}, poison=("out",), inplace=("ssm_states",), keep=SSM_KEEP)  # fmt: skip

    return Case("ssd_chunk_scan", name, build, full_only=full,
                facts={"heads": heads, "head_dim": head_dim, "state_size": state, "chunk_size": chunk})  # fmt: skip


def ssu_case(name, batch, heads, head_dim, state, groups, gate):
    def build(g):
        slots = batch + 2
        return Inputs({"ssm_states": randn(slots, heads, head_dim, state, g=g, scale=0.5), "x": randn(batch, heads, head_dim, g=g),
                       "dt": randn(batch, heads, g=g, scale=0.5), "A": -torch.rand(heads, generator=g, dtype=torch.float64) - 0.1,
                       "B": randn(batch, groups, state, g=g), "C": randn(batch, groups, state, g=g), "D": randn(heads, g=g),
                       "z": randn(batch, heads, head_dim, g=g) if gate else None, "dt_bias": randn(heads, g=g, scale=0.5),
                       "dt_softplus": True, "state_indices": torch.randperm(slots, generator=g)[:batch].to(torch.int32),
                       "out": nan_like((batch, heads, head_dim))}, poison=("out",), inplace=("ssm_states",), keep=SSM_KEEP)  # fmt: skip

    return Case(
        "selective_state_update",
        name,
        build,
        facts={"heads": heads, "head_dim": head_dim, "state_size": state},
    )


def cases() -> list[Case]:
    return [
        conv_case("ragged_1_5_17_c64", [1, 5, 17], 64), conv_case("one_seq_c200_w4", [33], 200),
        conv_update_case("b1_c64", 1, 64), conv_update_case("b9_c300", 9, 300),
        ssd_case("ragged_1_7_16_33_chunk16", [1, 7, 16, 33], 4, 8, 16, 2, 16),
        ssd_case("h8_p16_n32_chunk_edges", [32, 31, 64], 8, 16, 32, 1, 32),
        ssd_case("h128_p64_n128_16384", [16384], 128, 64, 128, 1, 256, full=True),
        ssu_case("b1_h4_p8_n16", 1, 4, 8, 16, 1, False), ssu_case("b7_h8_p16_n32_g2_gated", 7, 8, 16, 32, 2, True),
    ]  # fmt: skip


def ragged(b: int, longest: int, chunk: int) -> list[int]:
    """``b`` sequence lengths mixing 1, the chunk size and one past it, and the longest."""
    pattern = [longest, 1, chunk + 1, chunk, max(1, chunk - 1), 2 * chunk + 1]
    return [max(1, min(longest, pattern[i % len(pattern)])) for i in range(b)]


def _named(case: Case, p: dict) -> Case:
    case.params = p
    return case


def make_ssd(p: dict) -> Case:
    q = {**p, "heads": p["g"] * p["hpg"]}
    lengths = ragged(q["b"], q["len"], q["chunk"])
    return _named(ssd_case(param_name(q), lengths, q["heads"], q["p"], q["n"], q["g"], q["chunk"]), q)


def make_ssu(p: dict) -> Case:
    q = {**p, "heads": p["g"] * p["hpg"]}
    return _named(ssu_case(param_name(q), q["b"], q["heads"], q["p"], q["n"], q["g"], q["gate"]), q)


def space() -> list[Space]:
    channels = Int(1, 8448, hi_quick=1024, boundaries=(64, 128, 256))
    heads = {"g": Int(1, 8, hi_quick=2), "hpg": Int(1, 128, hi_quick=8, boundaries=(8,)),
             "p": Choice((8, 16, 32, 64)), "n": Choice((16, 32, 64, 128))}  # fmt: skip
    return [
        Space("causal_conv1d", {"b": Int(1, 16, hi_quick=4), "len": Int(1, 2048, hi_quick=70, boundaries=(16, 64)),
                                "c": channels, "w": Choice((2, 3, 4))},
              lambda p: _named(conv_case(param_name(p), ragged(p["b"], p["len"], 16), p["c"], p["w"]), p)),
        Space("causal_conv1d_update", {"b": Int(1, 256, hi_quick=9, boundaries=(8, 16)), "c": channels, "w": Choice((2, 3, 4))},
              lambda p: _named(conv_update_case(param_name(p), p["b"], p["c"], p["w"]), p)),
        Space("ssd_chunk_scan", {"b": Int(1, 8, hi_quick=3), "len": Int(1, 4096, hi_quick=70, boundaries=(16, 32, 64)),
                                 "chunk": Choice((16, 32, 64, 128, 256)), **heads}, make_ssd),
        Space("selective_state_update", {"b": Int(1, 256, hi_quick=9, boundaries=(8, 16)), **heads,
                                         "gate": Choice((True, False))}, make_ssu),
    ]  # fmt: skip
