"""A small subset of compile-check specializations that still compiles every branch the launches selected.

Compiling each distinct specialization a run launched takes minutes; most differ only in an argument's
divisibility or a value the kernel does not branch on. :func:`covering` keeps, for each kernel, target and
set of pointer types, specializations until every constexpr value and launch option seen is in one of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tessera_triton.compile_check import Specialization


def _features(spec: Specialization) -> set[tuple[str, str]]:
    names = [name for name, _ in spec.signature]
    return {(names[path[0]], repr(v)) for path, v in spec.constexprs} | {
        (k, repr(v)) for k, v in spec.options
    }


def covering(specs: Iterable[Specialization]) -> list[Specialization]:
    """A subset that still has, for each kernel, target and set of pointer types, every constexpr value and
    launch option seen (each branch a constexpr selects is compiled at least once; not every combination)."""
    groups: dict[tuple, list[Specialization]] = {}
    for spec in specs:
        pointers = tuple(kind for _, kind in spec.signature if kind.startswith("*"))
        groups.setdefault((spec.kernel, spec.target, pointers), []).append(spec)
    chosen = []
    for group in groups.values():
        needed = set().union(*(_features(spec) for spec in group))
        while needed:
            best = max(group, key=lambda spec: len(_features(spec) & needed))
            chosen.append(best)
            needed -= _features(best)
    return chosen
