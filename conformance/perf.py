"""--perf: the device's measured limits, and each kernel's achieved bandwidth against them.

The limits and the timing come from :mod:`tessera.bench.timing` (device events, warm-up, medians),
the same helpers ``tessera bench`` uses.
"""

from __future__ import annotations

import torch

from tessera.bench.timing import measure_limits as _measure_limits
from tessera.bench.timing import median_ms


def measure_limits(platform, index: int) -> dict[str, float]:
    """Copy bandwidth (read + write bytes) and a bf16 (CPU: fp32) matmul rate, measured now."""
    limits = _measure_limits(platform, platform.torch_device(index))
    return {k: v for k, v in limits.items() if isinstance(v, float)}


def tensor_bytes(values: dict) -> int:
    return sum(v.numel() * v.element_size() for v in values.values() if isinstance(v, torch.Tensor))


def time_kernel(bound, inputs: dict, platform, limits: dict[str, float]) -> dict[str, float]:
    ms = median_ms([lambda: bound(**inputs)], platform, iters=10, warmup=3)
    gbps = tensor_bytes(inputs) / ms / 1e6
    out = {"median_ms": round(ms, 5), "GBps_touched": round(gbps, 2)}
    if limits.get("copy_GBps"):
        out["share_of_copy_bandwidth"] = round(gbps / limits["copy_GBps"], 3)
    return out
