"""Entry point of tessera-rocm: the AMD ROCm platform."""

from pathlib import Path

from tessera.hookspecs import hookimpl
from tessera_rocm.platform import RocmPlatform

TESSERA_PLUGIN_API = "1.0"


@hookimpl
def tessera_platforms():
    return [RocmPlatform()]


@hookimpl
def tessera_register_kernels(registry):
    # Tuned configs for the triton pack's kernels on this platform's devices:
    # configs/<kernel>/<canonical device or arch>.json
    registry.add_tuned_config_dir("rocm", Path(__file__).parent / "configs")
    from tessera.pluggable_layers.registry import PRIORITY_PLATFORM
    from tessera_rocm.kernels import linear_fp8

    registry.register(
        "linear_fp8", linear_fp8.linear_fp8, name="rocm_scaled_mm_linear_fp8", platforms=("rocm",),
        priority=PRIORITY_PLATFORM, supports=linear_fp8.supports, dtypes=("bfloat16", "float16"), graph_safe=True,
        description="fp8 GEMM with the device's fp8 flavour (fnuz on gfx942) through torch._scaled_mm",
    )  # fmt: skip
