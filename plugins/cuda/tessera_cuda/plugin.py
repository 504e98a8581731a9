"""Entry point of tessera-cuda: the NVIDIA platform."""

from tessera.hookspecs import hookimpl
from tessera_cuda.platform import CudaPlatform

TESSERA_PLUGIN_API = "1.0"


@hookimpl
def tessera_platforms():
    return [CudaPlatform()]
