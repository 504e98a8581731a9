"""Helpers shared by the pack's kernels: the supports predicate, launch options, dtype maps."""

from __future__ import annotations

import torch


def requires_triton(query) -> str | None:
    """Refuse platforms whose capabilities do not report Triton."""
    caps = query.platform.capabilities
    if not getattr(caps, "triton", False):
        return f"platform {query.platform.name} has no Triton (capabilities.triton is false)"
    return None


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def launch_options(config: dict) -> dict:
    """The keys of a config that are Triton launch options rather than kernel constants."""
    return {k: config[k] for k in ("num_warps", "num_stages") if k in config}


def constants(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("num_warps", "num_stages")}


def fp32_compute(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16, torch.float32)
