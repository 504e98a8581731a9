"""Entry point of tessera-xpu: the Intel GPU platform."""

from tessera.hookspecs import hookimpl
from tessera_xpu.platform import XpuPlatform

TESSERA_PLUGIN_API = "1.0"


@hookimpl
def tessera_platforms():
    return [XpuPlatform()]
