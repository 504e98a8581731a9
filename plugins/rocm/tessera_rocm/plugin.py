"""Entry point of tessera-rocm: the AMD ROCm platform."""

from tessera.hookspecs import hookimpl
from tessera_rocm.platform import RocmPlatform

TESSERA_PLUGIN_API = "1.0"


@hookimpl
def tessera_platforms():
    return [RocmPlatform()]
