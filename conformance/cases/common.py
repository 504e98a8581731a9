"""What a conformance case is: a named input builder for one op, run at every dtype and kernel.

A case builds its inputs in float64 on the CPU from the run's generator. The
runner casts floating tensors to the dtype under test (except those in
``keep``, which the op's contract fixes, such as float32 SSM states), fills the
tensors named in ``poison`` with NaN, calls the kernel with keyword arguments,
and compares the return value and the tensors named in ``inplace`` with the
float64 reference run on the CPU over the same (cast) inputs.

Besides the numbers every case checks postconditions (:mod:`tessera.conformance.postconditions`):
``indices`` names index outputs and their exclusive bound (checked for any input, also where
``rows`` leaves the numbers undefined), the ``poison`` and ``inplace`` tensors sit inside
NaN-poisoned guard regions that must stay intact, and ``inplace`` tensors may change only where the
reference changes them. ``rows`` (a boolean mask over the first dimension of every return value)
marks the rows whose numbers are compared: adversarial cases feed NaN or inf to the other rows,
where only the postconditions hold. ``pad`` names, for graph replay, the row-major inputs and the
value their padding rows get.
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
    #: label ("return[1]" or an input name) -> (exclusive upper bound, distinct within each row)
    indices: dict[str, tuple[int, bool]] = field(default_factory=dict)
    rows: torch.Tensor | None = None
    pad: dict[str, float] = field(default_factory=dict)
    #: returned labels compared by ``tie_check`` instead of exactly (ids whose order among equal
    #: values the op leaves open), and the check: (kernel's returns, reference inputs) -> problems
    tied: tuple[str, ...] = ()
    tie_check: Callable[[tuple, dict], list[str]] | None = None


@dataclass
class Case:
    op: str
    name: str
    build: Callable[[torch.Generator], Inputs]
    full_only: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    #: "fixed", "generated" (drawn from the op's shape space), "zoo" or "adversarial"
    origin: str = "fixed"
    params: dict[str, Any] = field(default_factory=dict)

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


def param_name(params: dict[str, Any]) -> str:
    """A case name that carries its parameters (so a generated case can be read and replayed)."""
    return "_".join(f"{k}{_short(v)}" for k, v in params.items())


def _short(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list | tuple):
        return "-".join(str(x) for x in v)
    return str(v)
