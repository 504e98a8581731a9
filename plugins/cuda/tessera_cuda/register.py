"""Registration of tessera-cuda's kernels for the cuda platform."""

from __future__ import annotations

from tessera.pluggable_layers.registry import PRIORITY_PLATFORM


def accurate_reductions() -> None:
    """Keep cuBLAS's split-K reductions in float32 for bf16/fp16 GEMMs (torch lets them run in half
    precision by default, which costs about 2% relative error at odd K such as 4099)."""
    import torch

    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False


def register_all(registry) -> None:
    from tessera_cuda.kernels import linear, linear_fp8

    accurate_reductions()

    registry.register(
        "linear", linear.linear, name="cuda_cublas_linear", platforms=("cuda",), priority=PRIORITY_PLATFORM,
        graph_safe=True, description=(linear.__doc__ or "").strip().splitlines()[0],
    )  # fmt: skip
    registry.register(
        "linear_fp8", linear_fp8.linear_fp8, name="cuda_scaled_mm_linear_fp8", platforms=("cuda",),
        priority=PRIORITY_PLATFORM, supports=linear_fp8.supports, dtypes=("bfloat16", "float16"), graph_safe=True,
        description=(linear_fp8.__doc__ or "").strip().splitlines()[0],
    )  # fmt: skip
