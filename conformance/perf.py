"""--perf: each kernel's achieved bandwidth against the device's measured limits.

The limits and the timing come from :mod:`tessera.pluggable_layers.measure` (device events, warm-up,
medians), the module ``tessera bench`` and ``tessera tune`` use.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.measure import median_ms


def tensor_bytes(values: dict) -> int:
    return sum(v.numel() * v.element_size() for v in values.values() if isinstance(v, torch.Tensor))


def time_kernel(bound, inputs: dict, platform, limits: dict[str, float]) -> dict[str, float]:
    ms = median_ms([lambda: bound(**inputs)], platform, iters=10, warmup=3)
    gbps = tensor_bytes(inputs) / ms / 1e6
    out = {"median_ms": significant(ms), "GBps_touched": significant(gbps)}
    if limits.get("copy_GBps"):
        out["share_of_copy_bandwidth"] = significant(gbps / limits["copy_GBps"])
    return out


def significant(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits: a one-token case on a fast device is not rounded to zero."""
    return float(f"{x:.{digits}g}")
