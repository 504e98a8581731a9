"""What a conformance case is: a named input builder for one op, run at every dtype and kernel.

A case builds its inputs in float64 on the CPU from the run's generator. The
runner casts floating tensors to the dtype under test (except those in
``keep``, which the op's contract fixes, such as float32 SSM states), fills the
tensors named in ``poison`` with NaN, calls the kernel with keyword arguments,
and compares the return value and the tensors named in ``inplace`` with the
float64 reference run on the CPU over the same (cast) inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Inputs:
    values: dict[str, Any]
    poison: tuple[str, ...] = ()
    inplace: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    compare_return: bool = True


@dataclass
class Case:
    op: str
    name: str
    build: Callable[[torch.Generator], Inputs]
    full_only: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        return f"{self.op}/{self.name}"


def randn(*shape: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def offsets(lengths: list[int]) -> torch.Tensor:
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return torch.tensor(out, dtype=torch.int32)


def nan_like(shape, dtype=torch.float64) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype)
