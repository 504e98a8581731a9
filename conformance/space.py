"""Shape spaces: the domain of an op's shapes and parameters, and a seeded sampler weighted to edges.

Each case family declares, next to its fixed cases, one :class:`Space` per op: named
parameters (:class:`Int` ranges with their boundaries, :class:`Choice` sets) and a ``make``
that turns one draw into a :class:`~tessera.conformance.cases.Case` (deriving dependent sizes,
such as query heads from KV heads times a GQA ratio, and clamping to constraints). The sampler
draws most values from the edges of each range: 1, the smallest and the largest allowed, primes,
non-powers of two, and one past (or one short of) each declared boundary (a block, a chunk, a
tile width); the rest log-uniformly. A generated case's name carries its parameters and the
draw depends only on the run's seed and the op, so ``--seed`` replays it.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: generated cases per op: --quick, --full
DRAWS = {"quick": 3, "full": 24}
EDGE_SHARE = 0.7


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % p for p in range(2, math.isqrt(n) + 1))


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[lo, hi]`` (``hi_quick`` caps it under --quick); ``boundaries``
    are sizes where kernels change behaviour (tiles, blocks, chunks): b - 1, b, b + 1 are edges."""

    lo: int
    hi: int
    hi_quick: int | None = None
    boundaries: tuple[int, ...] = ()

    def edges(self, hi: int) -> list[int]:
        lo = self.lo
        cands = {lo, hi, 1, 2, 3}
        cands |= {b + d for b in self.boundaries for d in (-1, 0, 1)}
        cands |= {p for p in (5, 7, 13, 31, 61, 127, 251, 509, 1021, 4093, 16381) if p <= hi}
        cands |= {max(lo, (hi * 3) // 4 | 1), max(lo, hi - 1)}
        return sorted(c for c in cands if lo <= c <= hi)

    def draw(self, rng: random.Random, full: bool) -> int:
        hi = self.hi if full or self.hi_quick is None else min(self.hi, self.hi_quick)
        if rng.random() < EDGE_SHARE:
            return rng.choice(self.edges(hi))
        return min(hi, max(self.lo, round(math.exp(rng.uniform(math.log(max(self.lo, 1)), math.log(hi))))))


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def draw(self, rng: random.Random, full: bool) -> Any:
        return rng.choice(self.values)


@dataclass
class Space:
    """The shape space of one op: parameters, and how a draw becomes a case."""

    op: str
    params: dict[str, Int | Choice]
    make: Callable[[dict[str, Any]], Any]
    notes: str = ""
    tags: Sequence[str] = field(default_factory=tuple)

    def draw(self, rng: random.Random, full: bool) -> dict[str, Any]:
        return {name: p.draw(rng, full) for name, p in self.params.items()}


def rng_for(seed: int, key: str) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{seed}/{key}".encode()).hexdigest()[:16], 16))


def generate(spaces: list[Space], seed: int, full: bool, draws: int | None = None) -> list:
    """``draws`` cases per space (default by mode), seeded by (seed, op); duplicates dropped."""
    n = draws if draws is not None else DRAWS["full" if full else "quick"]
    out = []
    for space in spaces:
        rng = rng_for(seed, f"space/{space.op}/{space.notes}")
        names: set[str] = set()
        for _ in range(n * 3):
            if len(names) == n:
                break
            case = space.make(space.draw(rng, full))
            if case.name in names:
                continue
            names.add(case.name)
            case.origin = "generated"
            case.name = f"gen_{case.name}"
            out.append(case)
    return out
