"""The shape space of sample (vocabulary sizes of real tokenizers and odd ones, batch sizes, the
filter mixes) and adversarial logits (NaN rows, -inf rows, +inf entries): the token must be in
``[0, vocab)`` for any input. The fixed cases live in :mod:`tessera.conformance.cases.sample`."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, param_name
from tessera.conformance.cases.sample import sample_case
from tessera.conformance.space import Choice, Int, Space

JUNK = ("nan_rows", "neg_inf_rows", "pos_inf", "nan_entries")


def with_junk(case: Case, junk: str) -> Case:
    """The case's inputs with every other row's logits poisoned; only those rows' numbers are undefined."""
    build = case.build

    def poisoned(g: torch.Generator):
        inputs = build(g)
        logits = inputs.values["logits"]
        bad = torch.arange(logits.shape[0]) % 2 == 0
        for r in bad.nonzero().flatten().tolist():
            col = (r * 7919) % logits.shape[1]
            if junk == "nan_rows":
                logits[r] = float("nan")
            elif junk == "neg_inf_rows":
                logits[r] = float("-inf")
            elif junk == "pos_inf":
                logits[r, col] = float("inf")
            else:
                logits[r, col] = float("nan")
        inputs.rows = ~bad
        return inputs

    return Case(case.op, case.name, poisoned, facts=case.facts, origin="adversarial")


def with_padding(case: Case) -> Case:
    build = case.build

    def padded(g: torch.Generator):
        inputs = build(g)
        inputs.pad = {
            "logits": float("nan"),
            "temperature": 0.0,
            "top_k": 0,
            "top_p": 1.0,
            "exponential_noise": 1.0,
        }
        return inputs

    return Case(case.op, case.name, padded, facts=case.facts)


def make(p: dict) -> Case:
    case = with_padding(sample_case(param_name(p), p["b"], p["v"], p["mix"]))
    if p["junk"] != "none":
        case = with_junk(case, p["junk"])
    case.params = p
    return case


def adversarial() -> list[Case]:
    return [with_junk(sample_case(f"{mix}_b5_v1003_{junk}", 5, 1003, mix), junk)
            for mix in ("greedy", "mixed") for junk in JUNK]  # fmt: skip


def space() -> list[Space]:
    vocab = Int(
        1, 262144, hi_quick=40000, boundaries=(1024, 2048, 4096, 8192, 32000, 32768, 50304, 128256, 151936)
    )
    return [Space("sample", {"b": Int(1, 256, hi_quick=6, boundaries=(8, 16)), "v": vocab,
                             "mix": Choice(("greedy", "mixed", "all")), "junk": Choice(("none", "none") + JUNK)}, make)]  # fmt: skip
