"""Registration of tessera-cuda's kernels for the cuda platform."""

from __future__ import annotations

from tessera.pluggable_layers.registry import PRIORITY_PLATFORM


def register_all(registry) -> None:
    from tessera_cuda.kernels import linear

    registry.register(
        "linear", linear.linear, name="cuda_cublas_linear", platforms=("cuda",), priority=PRIORITY_PLATFORM,
        graph_safe=True, description=(linear.__doc__ or "").strip().splitlines()[0],
    )  # fmt: skip
