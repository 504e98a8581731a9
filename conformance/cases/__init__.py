"""Conformance cases, one module per op family; every op of the contract has cases.

A run's cases: each family's fixed cases, cases drawn from each op's shape space (seeded by the
run's seed), adversarial inputs (NaN and inf where ids come out), and the model-shape zoo; the
KV-cache ops' cases once more in every other KV layout (:mod:`.kv_layouts`).
"""

from __future__ import annotations

from tessera.conformance.cases import (
    attention,
    collectives,
    elementwise,
    kv_layouts,
    linear,
    mamba,
    moe,
    norms,
    quant,
    quant_moe,
    sample,
    sample_space,
)
from tessera.conformance.cases.common import Case, Inputs

MODULES = (norms, elementwise, linear, quant, quant_moe, moe, attention, mamba, sample, collectives)
SPACES = (norms, elementwise, linear, quant, quant_moe, moe, attention, mamba, sample_space, collectives)
ADVERSARIAL = (moe, sample_space)


def all_cases(full: bool = False, seed: int | None = None) -> list[Case]:
    """The fixed, adversarial and zoo cases; with a seed also the generated ones."""
    from tessera.conformance import space, zoo

    cases = [c for m in MODULES for c in m.cases()]
    cases += [c for m in ADVERSARIAL for c in m.adversarial()]
    cases += zoo.cases(full)
    if seed is not None:
        cases += space.generate([s for m in SPACES for s in m.space()], seed, full)
    cases += kv_layouts.variants(cases)
    return [c for c in cases if full or not c.full_only]


def find_case(case_id: str, full: bool, seed: int) -> Case:
    """The case a run with this mode and seed drew under ``case_id`` (op/name)."""
    for case in all_cases(full, seed):
        if case.case_id == case_id:
            return case
    raise KeyError(case_id)


__all__ = ["Case", "Inputs", "all_cases", "find_case"]
