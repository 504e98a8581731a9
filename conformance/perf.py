"""--perf: the device's measured limits, and each kernel's achieved bandwidth against them."""

from __future__ import annotations

import statistics

import torch


def median_ms(fn, platform, iters: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    platform.synchronize()
    times = []
    for _ in range(iters):
        start, end = platform.event(), platform.event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_limits(platform, index: int) -> dict[str, float]:
    """Copy bandwidth (read + write bytes) and a bf16 (else fp32) matmul rate, measured now."""
    device = platform.torch_device(index)
    n = (1 << 28) if device.type != "cpu" else (1 << 24)
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    copy_ms = median_ms(lambda: dst.copy_(src), platform)
    dtype = torch.bfloat16 if "bfloat16" in platform.capabilities(index).dtypes else torch.float32
    size = 8192 if device.type != "cpu" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    mm_ms = median_ms(lambda: a @ a, platform, iters=5)
    return {"copy_GBps": 2 * n / copy_ms / 1e6, "matmul_TFLOPs": 2 * size**3 / mm_ms / 1e9}


def tensor_bytes(values: dict) -> int:
    return sum(v.numel() * v.element_size() for v in values.values() if isinstance(v, torch.Tensor))


def time_kernel(bound, inputs: dict, platform, limits: dict[str, float]) -> dict[str, float]:
    ms = median_ms(lambda: bound(**inputs), platform)
    gbps = tensor_bytes(inputs) / ms / 1e6
    out = {"median_ms": round(ms, 5), "GBps_touched": round(gbps, 2)}
    if limits.get("copy_GBps"):
        out["share_of_copy_bandwidth"] = round(gbps / limits["copy_GBps"], 3)
    return out
