"""Every KV-cache case again in each non-default KV layout (plugin API 1.2).

A case of ``kv_cache_write`` or ``paged_attention`` is drawn token-major ("nhd"); its variant
``<name>_<layout>`` stores the same draw's caches in ``layout`` and carries the fact
``kv_layout=<layout>``, so a kernel runs the cases of the layouts it declares (the runner skips the
others) and the reference is called in the case's layout.
"""

from __future__ import annotations

import dataclasses

from tessera.conformance.cases.common import Case, Inputs
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, FACT, KV_LAYOUTS, KV_OPS, from_token_major

CACHES = ("key_cache", "value_cache")


def case_layout(case: Case) -> str:
    return case.facts.get(FACT, DEFAULT_KV_LAYOUT)


def in_layout(case: Case, layout: str) -> Case:
    """``case`` with its caches stored in ``layout``."""

    def build(g) -> Inputs:
        inputs = case.build(g)
        values = {k: from_token_major(v, layout) if k in CACHES else v for k, v in inputs.values.items()}
        return dataclasses.replace(inputs, values=values)

    return dataclasses.replace(
        case, name=f"{case.name}_{layout}", build=build, facts={**case.facts, FACT: layout}
    )


def variants(cases: list[Case]) -> list[Case]:
    """The non-default-layout copies of the KV-cache cases among ``cases``."""
    others = [x for x in KV_LAYOUTS if x != DEFAULT_KV_LAYOUT]
    return [in_layout(c, layout) for c in cases if c.op in KV_OPS for layout in others]
