"""Measurement: kernel timing, the device's limits, and error figures against the reference.

The one home of every figure Tessera reports about a kernel: the tuner (``tessera tune``),
``tessera bench kernels`` and the conformance suite all time and compare through these
functions, so a fix here reaches all three.

Timing (DESIGN section 8): warm-up runs, then device events around each call and the median;
several input sets are cycled so that repeated calls do not hit a warm cache. Graph replay
times calls captured back to back in one graph, so microsecond kernels are timed without
their launch gaps. ``clock`` is anything with ``event()`` (an event with ``record()``,
``synchronize()`` and ``elapsed_time(end)`` in ms) and ``synchronize()``: a ``Platform``, or an
:class:`EventClock` built from the two callables.

Error figures compare a kernel's output with the float64 reference: :func:`normalized_error`
is the one number a check needs (the tuner, the benches, the tests); :func:`error_figures`
adds max abs, max rel and the NaN / poison problems the conformance report shows.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class Clock(Protocol):
    def event(self) -> Any: ...

    def synchronize(self) -> None: ...


@dataclass(frozen=True)
class EventClock:
    """A clock from an event factory and a synchronize callable (the tuner is handed these)."""

    make_event: Callable[[], Any]
    synchronize_fn: Callable[[], None]

    def event(self) -> Any:
        return self.make_event()

    def synchronize(self) -> None:
        self.synchronize_fn()


def median_ms(fns: Sequence[Callable[[], Any]], clock: Clock, iters: int = 20, warmup: int = 5) -> float:
    """Median time of one call between two device events, cycling through ``fns`` (one per input set)."""
    for i in range(warmup):
        fns[i % len(fns)]()
    clock.synchronize()
    times = []
    for i in range(iters):
        start, end = clock.event(), clock.event()
        start.record()
        fns[i % len(fns)]()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def median_ms_graph(
    fns: Sequence[Callable[[], Any]], platform: Any, calls: int = 20, iters: int = 10
) -> float | None:
    """Median per-call device time from replays of a graph holding ``calls`` calls (no launch gaps).

    None when the platform has no graphs or the calls cannot be captured: the caller times eagerly.
    """
    graph = platform.graph()
    if graph is None:
        return None
    try:
        for fn in fns:
            fn()
        platform.synchronize()
        with platform.graph_capture(graph):
            for i in range(calls):
                fns[i % len(fns)]()
    except Exception:  # noqa: BLE001 - not capturable: the caller keeps the eager time
        platform.synchronize()
        return None
    graph.replay()
    platform.synchronize()
    times = []
    for _ in range(iters):
        start, end = platform.event(), platform.event()
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)


@dataclass(frozen=True)
class LimitProbe:
    """What :func:`measure_limits` measures a device with (``Platform.limit_probe``): a copy large enough to
    stream past the caches and a matmul large enough to reach the peak rate, in the dtype of the device's
    fastest matmul, yet quick on the device. The defaults suit an accelerator."""

    copy_bytes: int = 1 << 30
    matmul_size: int = 8192
    matmul_dtype: str = "bfloat16"


def measure_limits(platform: Any, device: torch.device) -> dict[str, Any]:
    """Copy bandwidth (bytes read + written) and matmul rate at the platform's :class:`LimitProbe`, each the
    median after warm-up, with the dtype and sizes they were measured at."""
    probe: LimitProbe = platform.limit_probe(device.index or 0)
    n, size, dtype = probe.copy_bytes, probe.matmul_size, getattr(torch, probe.matmul_dtype)
    src = torch.empty(n, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    copy_ms = median_ms([lambda: dst.copy_(src)], platform, iters=10, warmup=3)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    mm_ms = median_ms([lambda: a @ b], platform, iters=10, warmup=3)
    return {
        "copy_GBps": 2 * n / copy_ms / 1e6,
        "matmul_TFLOPs": 2 * size**3 / mm_ms / 1e9,
        "matmul_dtype": str(dtype),
        "copy_bytes": n,
        "matmul_size": size,
    }


def to_reference_inputs(value: Any) -> Any:
    """Float tensors to float64 on the CPU (the oracle's precision); fp8 and integers kept as they are."""
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu")
        return t.double() if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else t.clone()
    if isinstance(value, tuple | list):
        return type(value)(to_reference_inputs(v) for v in value)
    return value


def normalized_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 on the reference's device; inf for a wrong shape, NaN for a NaN."""
    if out.shape != ref.shape:
        return float("inf")
    o, r = out.detach().to(ref.device, torch.float64), ref.to(torch.float64)
    if torch.isnan(o).any():
        return float("nan")
    denom = r.norm().clamp(min=1e-30)
    return float((o - r).norm() / denom)


def output_error(out: Any, ref: Any) -> float:
    """The worst normalized error over the tensors of an op's output (0 for in-place ops returning None)."""
    if ref is None:
        return 0.0
    outs = out if isinstance(out, tuple | list) else (out,)
    refs = ref if isinstance(ref, tuple | list) else (ref,)
    errors = [normalized_error(o, r) for o, r in zip(outs, refs, strict=True) if o.is_floating_point()]
    return max(errors, default=0.0)


@dataclass
class ErrorFigures:
    max_abs: float
    max_rel: float
    normalized: float
    #: NaN where the reference has a value, a value where it has none, a wrong shape or type
    problem: str | None = None


def error_figures(out: torch.Tensor, ref: torch.Tensor, exact: bool = False) -> ErrorFigures:
    """Figures over all elements. Where the reference is NaN (untouched poison) the output must be NaN too."""
    inf = float("inf")
    if not isinstance(out, torch.Tensor):
        return ErrorFigures(inf, inf, inf, f"returned {type(out).__name__}, not a tensor")
    if tuple(out.shape) != tuple(ref.shape):
        return ErrorFigures(inf, inf, inf, f"shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
    o = out.detach().to("cpu").to(torch.float64)
    r = ref.detach().to("cpu").to(torch.float64)  # a reference computed on the device too
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
