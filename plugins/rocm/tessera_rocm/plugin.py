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
