"""Cases for sample: greedy, temperature, top-k, top-p and their mixes, with shared noise; and (plugin API 1.1)
penalties, logit bias, min_p and logprobs, whose facts refuse kernels that do not declare those features."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, randn

FEATURE_FACTS = {"penalties": True, "logit_bias": True, "min_p": True, "logprobs": 5}


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


def top_ids_problems(got: tuple, ref: dict) -> list[str]:
    """The top logprob ids (return[2], after the sampled token's column) are checked through the
    reference's log-probabilities, not against its ids: logits equal in a 16-bit dtype tie, and the op
    leaves their order open. Each id must be distinct in its row and carry the value returned with it."""
    values, ids = got[1].detach().cpu().double()[:, 1:], got[2].detach().cpu()[:, 1:]
    vocab = ref["logits"].shape[-1]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        return [f"return[2]: top logprob id outside [0, {vocab})"]
    if any(len(set(row)) != len(row) for row in ids.tolist()):
        return ["return[2]: a top logprob id repeats within a row"]
    lp = torch.log_softmax(ref["logits"].double(), dim=-1)
    worst = float((lp.gather(1, ids) - values).abs().max()) if ids.numel() else 0.0
    kth = lp.topk(ids.shape[1], dim=-1).values  # the reference's top values, ties or not
    gap = float((kth - values).abs().max()) if ids.numel() else 0.0
    if not (worst <= 1e-3 and gap <= 1e-3):
        return [f"return[2]: top logprob ids are not the top ones (value at id off by {worst:.3g}, "
                f"top values off by {gap:.3g})"]  # fmt: skip
    return []


def feature_case(name, rows, vocab, greedy_every=3):
    """Every 1.1 input at once: penalties over sparse counts, a sparse bias, min_p, top-5 logprobs."""

    def build(g):
        base = sample_case(name, rows, vocab, "mixed").build(g).values
        temperature = base["temperature"]
        temperature[::greedy_every] = 0
        seen = torch.rand(rows, vocab, generator=g) < 0.05
        counts = torch.randint(1, 4, (rows, vocab), generator=g, dtype=torch.int32) * seen
        bias = randn(rows, vocab, g=g, scale=2.0) * (
            torch.rand(rows, vocab, generator=g, dtype=torch.float64) < 0.01
        )
        values = {**base, "min_p": torch.rand(rows, generator=g, dtype=torch.float64) * 0.1,
                  "logit_bias": bias, "prompt_mask": torch.rand(rows, vocab, generator=g) < 0.05,
                  "output_counts": counts.to(torch.int32),
                  "presence_penalty": torch.rand(rows, generator=g, dtype=torch.float64) * 4 - 2,
                  "frequency_penalty": torch.rand(rows, generator=g, dtype=torch.float64) * 4 - 2,
                  "repetition_penalty": torch.rand(rows, generator=g, dtype=torch.float64) + 0.5, "num_logprobs": 5}  # fmt: skip
        keep = ("temperature", "top_p", "exponential_noise", "min_p", "presence_penalty", "frequency_penalty",
                "repetition_penalty", "logit_bias")  # fmt: skip
        return Inputs(values, keep=keep, tied=("return[2]",), tie_check=top_ids_problems)

    return Case("sample", name, build, facts=dict(FEATURE_FACTS))


def cases() -> list[Case]:
    return [sample_case("greedy_b5_v1000", 5, 1000, "greedy"), sample_case("mixed_b33_v4099", 33, 4099, "mixed"),
            sample_case("topk_topp_b8_v151936", 8, 151936, "all"), feature_case("features_b7_v1031", 7, 1031),
            feature_case("features_b16_v32000", 16, 32000)]  # fmt: skip
