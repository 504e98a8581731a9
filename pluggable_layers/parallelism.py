"""Where a layer sits in tensor and expert parallelism: its rank, the world size, the process group.

Plain data handed to layers through :class:`~tessera.pluggable_layers.context.KernelContext`; the
default (one rank) builds the unsharded layers. ``group`` is the ``torch.distributed`` process group
the collective ops run over (None: the default group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Parallelism:
    rank: int = 0
    world_size: int = 1
    group: Any = None
    #: MoE layers hold whole experts per rank (E / W each) instead of a slice of every expert
    expert_parallel: bool = False

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def parts(self, units: int) -> int:
        """Into how many parts ``units`` indivisible units (heads, groups, rows) are split: the world size,
        or fewer units each replicated on ``world_size / units`` ranks."""
        return min(units, self.world_size)

    def part(self, units: int) -> int:
        """Which of those parts this rank holds."""
        return self.rank * self.parts(units) // self.world_size

    def local(self, units: int) -> int:
        """How many of ``units`` this rank holds."""
        return units // self.parts(units)
