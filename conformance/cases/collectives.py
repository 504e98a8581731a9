"""Cases for the collective ops (all_reduce, all_gather, reduce_scatter), run on several ranks.

A case's inputs hold every rank's tensor stacked on a leading world dimension (``x[W, ...]``); the
distributed level (:mod:`tessera.conformance.levels.collectives`) hands rank r its slice, calls the
kernel with the real process group and compares rank r's result with :func:`expected`, the op's
semantics computed in float64 on one process from all ranks' inputs.
"""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, param_name, randn
from tessera.conformance.space import Choice, Int, Space

#: the world size the collective cases are built for (the processes the distributed level starts)
WORLD_SIZE = 2


def collective_case(op: str, name: str, t: int, n: int, dim: int = -1, world: int = WORLD_SIZE) -> Case:
    cols = n * world if op == "reduce_scatter" and dim == -1 else n
    rows = t * world if op == "reduce_scatter" and dim == 0 else t

    def build(g):
        values = {"x": randn(world, rows, cols, g=g)}
        if op != "all_reduce":
            values["dim"] = dim
        return Inputs(values)

    return Case(op, name, build, facts={"world_size": world})


def expected(op: str, xs: torch.Tensor, rank: int, dim: int = -1) -> torch.Tensor:
    """Rank ``rank``'s result of ``op`` over the stacked inputs ``xs[W, ...]`` (float64, one process)."""
    if op == "all_reduce":
        return xs.sum(0)
    if op == "all_gather":
        return torch.cat(list(xs), dim=dim)
    return xs.sum(0).chunk(xs.shape[0], dim=dim)[rank]


def cases() -> list[Case]:
    return [
        collective_case("all_reduce", "t1_h64", 1, 64), collective_case("all_reduce", "t37_h4099", 37, 4099),
        collective_case("all_gather", "t1_n64", 1, 64), collective_case("all_gather", "t7_n257_dim0", 7, 257, dim=0),
        collective_case("reduce_scatter", "t3_n128", 3, 128), collective_case("reduce_scatter", "t5_n33_dim0", 5, 33, dim=0),
    ]  # fmt: skip


def _named(case: Case, p: dict) -> Case:
    case.params = p
    return case


def space() -> list[Space]:
    tokens = Int(1, 4096, hi_quick=48, boundaries=(16, 64))
    width = Int(1, 16384, hi_quick=4099, boundaries=(64, 128, 1024, 4096))
    dims = Choice((-1, 0))

    def make(op):
        return lambda p: _named(collective_case(op, param_name(p), p["t"], p["n"], dim=p.get("dim", -1)), p)

    return [
        Space("all_reduce", {"t": tokens, "n": width}, make("all_reduce")),
        Space("all_gather", {"t": tokens, "n": width, "dim": dims}, make("all_gather")),
        Space("reduce_scatter", {"t": tokens, "n": width, "dim": dims}, make("reduce_scatter")),
    ]
