"""Helpers shared by the pack's kernels: the supports predicate, launch options, dtype maps."""

from __future__ import annotations

import os
from functools import lru_cache

import torch

#: launch options some Triton backends take (AMD: waves_per_eu, matrix_instr_nonkdim, kpack; Intel: grf_mode).
#: Tuned configs may carry them; launchers pass only those the active backend knows.
BACKEND_OPTIONS: dict[str, tuple] = {
    "waves_per_eu": (0, 1, 2, 3, 4),
    "matrix_instr_nonkdim": (0, 16, 32),
    "kpack": (1, 2),
    "grf_mode": ("default", "large", "auto"),
}
LAUNCH_KEYS = ("num_warps", "num_stages", *BACKEND_OPTIONS)


def requires_triton(query) -> str | None:
    """Refuse platforms on whose device Triton cannot run kernels (``capabilities.triton_backend``)."""
    if not query.platform.capabilities.triton_backend:
        return f"platform {query.platform.name} has no Triton backend (capabilities.triton_backend is false)"
    return None


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


@lru_cache(maxsize=1)
def supported_launch_options() -> frozenset[str]:
    """Launch options the active Triton backend accepts (the interpreter ignores them all)."""
    base = {"num_warps", "num_stages"}
    if os.environ.get("TRITON_INTERPRET") == "1":
        return frozenset(base | set(BACKEND_OPTIONS))
    try:
        from triton.compiler.compiler import make_backend
        from triton.runtime import driver

        options = make_backend(driver.active.get_current_target()).parse_options({})
        return frozenset(base | (set(BACKEND_OPTIONS) & set(vars(options))))
    except Exception:  # noqa: BLE001 - no device or an unfamiliar backend: the portable options only
        return frozenset(base)


@lru_cache(maxsize=1)
def fast_fp32_dot_precision() -> str:
    """The fastest float32 tl.dot precision the active backend offers: tf32 where it has it, else ieee
    (AMD offers tf32 on some architectures only; the interpreter computes in float32 whatever is asked)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "ieee"
    try:
        from triton.compiler.compiler import make_backend
        from triton.runtime import driver

        options = make_backend(driver.active.get_current_target()).parse_options({})
        return "tf32" if "tf32" in getattr(options, "allowed_dot_input_precisions", ()) else "ieee"
    except Exception:  # noqa: BLE001 - no device or an unfamiliar backend: the precision every backend has
        return "ieee"


def launch_options(config: dict) -> dict:
    """The keys of a config that are launch options the active backend takes."""
    allowed = supported_launch_options()
    return {k: config[k] for k in LAUNCH_KEYS if k in config and k in allowed}


def constants(config: dict, kernel) -> dict:
    """The keys of a config that are parameters of ``kernel`` (a ``triton.jit`` function). A config may hold
    keys for another kernel of the same op (linear_wna16's GEMV tiles); a compiled launch refuses any keyword
    its kernel lacks, so those stay behind."""
    params = set(kernel.arg_names)
    return {k: v for k, v in config.items() if k not in LAUNCH_KEYS and k in params}


def fp32_compute(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16, torch.float32)
