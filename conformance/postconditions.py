"""Postconditions every op case checks besides the numbers.

- index outputs (routing ids, sampled tokens) lie in ``[0, bound)``, distinct within a row where
  the op says so, for any input (NaN and inf rows included);
- guard regions: each output and in-place tensor is a view into a larger buffer whose elements
  before and after it are poisoned (NaN, or a sentinel for integers) and must be bit-identical
  after the kernel ran: a kernel that writes one element past its output fails;
- in-place tensors change only where the reference changes them (the rest bit-identical);
- outputs are finite wherever the reference's are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: elements of poison before and after every guarded tensor
GUARD = 64
INT_SENTINEL = -7_654_321


@dataclass
class Guarded:
    name: str
    buffer: torch.Tensor
    size: int


def _fill(dtype: torch.dtype) -> float | int | bool:
    if dtype.is_floating_point:
        return float("nan")
    return True if dtype == torch.bool else INT_SENTINEL


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits on the CPU (NaN payloads included), for bit-identical comparisons."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bool:
        return t.to(torch.uint8)
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.view(ints[t.element_size()]) if t.is_floating_point() else t


def guard(dev: dict, names: tuple[str, ...]) -> list[Guarded]:
    """Replace each tensor ``dev[name]`` by a copy that is a contiguous view into a poisoned buffer."""
    out = []
    for name in names:
        t = dev.get(name)
        if not isinstance(t, torch.Tensor):
            continue
        n = t.numel()
        buffer = torch.full((n + 2 * GUARD,), _fill(t.dtype), dtype=t.dtype, device=t.device)
        view = buffer[GUARD : GUARD + n].view(t.shape)
        view.copy_(t)
        dev[name] = view
        out.append(Guarded(name, buffer, n))
    return out


def guard_problems(guards: list[Guarded]) -> list[str]:
    problems = []
    for g in guards:
        expect = bits(torch.full((GUARD,), _fill(g.buffer.dtype), dtype=g.buffer.dtype))
        raw = bits(g.buffer)
        before = int((raw[:GUARD] != expect).sum())
        after = int((raw[GUARD + g.size :] != expect).sum())
        if before or after:
            problems.append(
                f"{g.name}: wrote outside the tensor ({before} element(s) of the guard before it, "
                f"{after} after it changed)"
            )
    return problems


def index_problem(label: str, t, bound: int, distinct: bool) -> str | None:
    """Why index output ``t`` breaks its postcondition, or None."""
    if not isinstance(t, torch.Tensor):
        return f"{label}: returned {type(t).__name__}, not a tensor"
    if t.is_floating_point() or t.dtype == torch.bool:
        return f"{label}: index output has dtype {t.dtype}, not an integer dtype"
    v = t.detach().cpu().to(torch.int64)
    bad = (v < 0) | (v >= bound)
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()
        return f"{label}: {int(bad.sum())} index(es) outside [0, {bound}), e.g. {int(v[tuple(where)])} at {where}"
    if distinct and v.dim() == 2 and v.shape[1] > 1:
        s = v.sort(dim=1).values
        dup = (s[:, 1:] == s[:, :-1]).any(dim=1)
        if bool(dup.any()):
            row = int(dup.nonzero()[0])
            return f"{label}: {int(dup.sum())} row(s) repeat an index, e.g. row {row}: {v[row].tolist()}"
    return None


def untouched_problem(name: str, before, after, ref_before, ref_after) -> str | None:
    """In-place tensor ``name`` may change only where the reference changed it."""
    if not isinstance(after, torch.Tensor) or tuple(after.shape) != tuple(before.shape):
        return None  # the numeric comparison reports the shape
    kept = bits(ref_before) == bits(ref_after)
    moved = kept & (bits(before) != bits(after))
    if bool(moved.any()):
        return f"{name}: {int(moved.sum())} element(s) changed that the reference leaves as they were"
    return None


def finite_problem(label: str, out, ref) -> str | None:
    if (
        not isinstance(out, torch.Tensor)
        or not out.is_floating_point()
        or tuple(out.shape) != tuple(ref.shape)
    ):
        return None
    bad = torch.isfinite(ref.detach().cpu()) & ~torch.isfinite(out.detach().cpu())
    if bool(bad.any()):
        return f"{label}: {int(bad.sum())} element(s) not finite where the reference's are"
    return None


def op_indices(op: str, values: dict) -> dict[str, tuple[int, bool]]:
    """The index outputs every case of ``op`` checks, from its inputs: label -> (bound, distinct)."""
    if op == "moe_route":
        return {"return[1]": (int(values["router_logits"].shape[1]), True)}
    if op == "sample":
        return {"return[0]": (int(values["logits"].shape[1]), False)}
    return {}
