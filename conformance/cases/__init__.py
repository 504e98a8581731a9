"""Conformance cases, one module per op family; every op of the contract has cases."""

from __future__ import annotations

from tessera.conformance.cases import attention, elementwise, linear, mamba, moe, norms, sample
from tessera.conformance.cases.common import Case, Inputs

MODULES = (norms, elementwise, linear, moe, attention, mamba, sample)


def all_cases(full: bool = False) -> list[Case]:
    cases = [c for m in MODULES for c in m.cases()]
    return [c for c in cases if full or not c.full_only]


__all__ = ["Case", "Inputs", "all_cases"]
