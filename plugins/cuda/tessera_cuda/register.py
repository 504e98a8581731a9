"""Registration of tessera-cuda's kernels for the cuda platform."""

from __future__ import annotations

from tessera.pluggable_layers.registry import PRIORITY_PLATFORM


def register_all(registry) -> None:
    from tessera_cuda.kernels import linear, linear_fp8

    registry.register(
        "linear", linear.linear, name="cuda_cublas_linear", platforms=("cuda",), priority=PRIORITY_PLATFORM,
        graph_safe=True, description=(linear.__doc__ or "").strip().splitlines()[0],
    )  # fmt: skip
    registry.register(
        "linear_fp8", linear_fp8.linear_fp8, name="cuda_scaled_mm_linear_fp8", platforms=("cuda",),
        priority=PRIORITY_PLATFORM, supports=linear_fp8.supports, dtypes=("bfloat16", "float16"), graph_safe=True,
        description=(linear_fp8.__doc__ or "").strip().splitlines()[0],
    )  # fmt: skip
