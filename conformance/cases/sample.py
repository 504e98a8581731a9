"""Cases for sample: greedy, temperature, top-k, top-p and their mixes, with shared noise."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, randn


def sample_case(name, rows, vocab, mix):
    def build(g):
        temperature = torch.rand(rows, generator=g, dtype=torch.float64) + 0.3
        top_k = torch.randint(0, 50, (rows,), generator=g, dtype=torch.int32)
        top_p = torch.rand(rows, generator=g, dtype=torch.float64) * 0.8 + 0.2
        if mix == "greedy":
            temperature.zero_()
        elif mix == "mixed":
            temperature[::3] = 0
            top_k[1::2] = 0
            top_p[::4] = 1.0
        noise = torch.empty(rows, vocab, dtype=torch.float64).exponential_(generator=g)
        return Inputs({"logits": randn(rows, vocab, g=g, scale=3.0), "temperature": temperature, "top_k": top_k,
                       "top_p": top_p, "exponential_noise": noise}, keep=("temperature", "top_p", "exponential_noise"))  # fmt: skip

    return Case("sample", name, build)


def cases() -> list[Case]:
    return [sample_case("greedy_b5_v1000", 5, 1000, "greedy"), sample_case("mixed_b33_v4099", 33, 4099, "mixed"),
            sample_case("topk_topp_b8_v151936", 8, 151936, "all")]  # fmt: skip
