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


#: limit probes grow through these sizes until one call takes PROBE_MS: long enough to time on a
#: fast device, short on a slow one (a 64 MiB copy and a 1024^3 matmul on a CPU, 1 GiB and 8192^3 on a GPU)
COPY_BYTES = (1 << 26, 1 << 28, 1 << 30)
MATMUL_SIZES = (1024, 2048, 4096, 8192)
PROBE_MS = 1.0


def _probe(
    make: Callable[[int], Callable[[], Any]], sizes: Sequence[int], clock: Clock
) -> tuple[int, Callable]:
    """The first size whose call takes PROBE_MS or more (else the largest), with its call."""
    for size in sizes:
        fn = make(size)
        if size == sizes[-1] or median_ms([fn], clock, iters=1, warmup=1) >= PROBE_MS:
            return size, fn
        del fn  # free this size's tensors before the next is allocated
    raise ValueError("no probe sizes")


def measure_limits(platform: Any, device: torch.device) -> dict[str, Any]:
    """Copy bandwidth (bytes read + written) of a large device copy, and the matmul rate in the dtype
    the platform's capabilities name as its fastest (``matmul_dtype``), each a median after warm-up;
    with the dtype and the sizes they were measured at."""
    dtype = getattr(torch, platform.capabilities(device.index or 0).matmul_dtype)

    def copy(n: int) -> Callable[[], Any]:
        src = torch.empty(n, dtype=torch.uint8, device=device).random_(0, 255)
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)

    def matmul(size: int) -> Callable[[], Any]:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        return lambda: a @ b

    n, copy_fn = _probe(copy, COPY_BYTES, platform)
    copy_ms = median_ms([copy_fn], platform, iters=10, warmup=3)
    del copy_fn
    size, mm_fn = _probe(matmul, MATMUL_SIZES, platform)
    mm_ms = median_ms([mm_fn], platform, iters=10, warmup=3)
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
