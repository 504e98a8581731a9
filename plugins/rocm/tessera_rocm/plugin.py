"""Entry point of tessera-rocm: the AMD ROCm platform."""

import importlib.util
from pathlib import Path

from tessera.hookspecs import hookimpl
from tessera_rocm.platform import RocmPlatform

TESSERA_PLUGIN_API = "1.2"  # prepare= (the pre-shuffled fp8 weight)


@hookimpl
def tessera_platforms():
    return [RocmPlatform()]


@hookimpl
def tessera_register_kernels(registry):
    # Tuned configs for the triton pack's kernels on this platform's devices:
    # configs/<kernel>/<canonical device or arch>.json
    registry.add_tuned_config_dir("rocm", Path(__file__).parent / "configs")
    from tessera.pluggable_layers.registry import PRIORITY_PLATFORM, PRIORITY_PORTABLE
    from tessera_rocm.kernels import linear_fp8

    registry.register(
        "linear_fp8", linear_fp8.linear_fp8, name="rocm_scaled_mm_linear_fp8", platforms=("rocm",),
        priority=PRIORITY_PLATFORM, supports=linear_fp8.supports, dtypes=("bfloat16", "float16"), graph_safe=True,
        description="fp8 GEMM with the device's fp8 flavour (fnuz on gfx942) through torch._scaled_mm",
    )  # fmt: skip
    if importlib.util.find_spec("triton") is None:
        return
    from tessera_rocm.kernels import linear_fp8_preshuffled as shuffled

    # never run on AMD hardware (checked in the Triton interpreter only): below scaled_mm, chosen by override
    registry.register(
        "linear_fp8", shuffled.linear_fp8, name="rocm_preshuffled_linear_fp8", platforms=("rocm",),
        priority=PRIORITY_PORTABLE, supports=shuffled.supports, dtypes=("bfloat16", "float16"),
        graph_safe=True, prepare=shuffled.prepare, prepared_layout=shuffled.PREPARED_LAYOUT,
        description="fp8 GEMM in Triton on an AITER-style pre-shuffled weight (16 x 32 tiles, 16-byte K runs)",
    )  # fmt: skip
