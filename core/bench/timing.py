"""Timing with platform events: warm-up, then the median of repeated runs, inputs rotated past the cache."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any


def median_ms(fns: Sequence[Callable[[], Any]], platform, iters: int = 20, warmup: int = 5) -> float:
    """Median time of one call, cycling through ``fns`` (one per input set, to defeat the L2 cache)."""
    for i in range(warmup):
        fns[i % len(fns)]()
    platform.synchronize()
    times = []
    for i in range(iters):
        start, end = platform.event(), platform.event()
        start.record()
        fns[i % len(fns)]()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def median_ms_graph(
    fns: Sequence[Callable[[], Any]], platform, calls: int = 20, iters: int = 10
) -> float | None:
    """Median per-call device time from replays of a graph holding ``calls`` calls (no launch gaps).

    None when the platform has no graphs or the calls cannot be captured.
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


def measure_limits(platform, device) -> dict[str, float]:
    """Copy bandwidth (bytes read + written) of a 1 GiB device copy, and a bf16 8192^3 matmul rate."""
    import torch

    big = device.type != "cpu"
    n = (1 << 30) if big else (1 << 26)
    src = torch.empty(n, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    copy_ms = median_ms([lambda: dst.copy_(src)], platform, iters=10, warmup=3)
    size = 8192 if big else 1024
    dtype = torch.bfloat16 if big else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    mm_ms = median_ms([lambda: a @ b], platform, iters=10, warmup=3)
    return {
        "copy_GBps": 2 * n / copy_ms / 1e6,
        "matmul_TFLOPs": 2 * size**3 / mm_ms / 1e9,
        "matmul_dtype": str(dtype),
    }
