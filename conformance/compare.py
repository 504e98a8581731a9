"""Error figures of a kernel's output against the float64 reference."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ErrorFigures:
    max_abs: float
    max_rel: float
    normalized: float
    problem: str | None = (
        None  # NaN where the reference has a value, a value where it has none, shape or dtype
    )


def compare(out: torch.Tensor, ref: torch.Tensor, exact: bool = False) -> ErrorFigures:
    """Figures over all elements. Where the reference is NaN (untouched poison) the output must be NaN too."""
    if not isinstance(out, torch.Tensor):
        return ErrorFigures(
            float("inf"), float("inf"), float("inf"), f"returned {type(out).__name__}, not a tensor"
        )
    if tuple(out.shape) != tuple(ref.shape):
        return ErrorFigures(
            float("inf"), float("inf"), float("inf"), f"shape {tuple(out.shape)}, expected {tuple(ref.shape)}"
        )
    o = out.detach().to("cpu")
    o = o.to(torch.float64) if (o.is_floating_point() or not ref.is_floating_point()) else o.double()
    r = ref.to(torch.float64)
    ref_nan = torch.isnan(r)
    out_nan = torch.isnan(o)
    problem = None
    if bool((out_nan & ~ref_nan).any()):
        problem = f"{int((out_nan & ~ref_nan).sum())} output element(s) NaN or never written"
    elif bool((~out_nan & ref_nan).any()):
        problem = f"{int((~out_nan & ref_nan).sum())} element(s) written that the reference leaves untouched"
    valid = ~ref_nan & ~out_nan
    if not bool(valid.any()):
        return ErrorFigures(0.0, 0.0, 0.0, problem)
    diff = (o - r)[valid].abs()
    rv = r[valid]
    max_abs = float(diff.max())
    max_rel = float((diff / rv.abs().clamp(min=1e-6 * float(rv.abs().max()) + 1e-30)).max())
    normalized = float(diff.norm() / rv.norm().clamp(min=1e-30))
    if exact and max_abs != 0:
        problem = problem or f"{int((diff != 0).sum())} element(s) differ from the reference (exact op)"
    return ErrorFigures(max_abs, max_rel, normalized, problem)
