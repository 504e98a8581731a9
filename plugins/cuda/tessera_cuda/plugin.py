"""Entry point of tessera-cuda: the NVIDIA platform."""

from pathlib import Path

from tessera.hookspecs import hookimpl
from tessera_cuda.platform import CudaPlatform

TESSERA_PLUGIN_API = "1.0"


@hookimpl
def tessera_platforms():
    return [CudaPlatform()]


@hookimpl
def tessera_register_kernels(registry):
    # Tuned configs for the triton pack's kernels on this platform's devices:
    # configs/<kernel>/<canonical device or arch>.json
    registry.add_tuned_config_dir("cuda", Path(__file__).parent / "configs")
    from tessera_cuda.register import register_all

    register_all(registry)
