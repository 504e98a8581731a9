"""Entry point of tessera-cpu: the CPU platform and its torch-native kernels."""

from tessera.hookspecs import hookimpl
from tessera_cpu.platform import CpuPlatform

TESSERA_PLUGIN_API = "1.2"


@hookimpl
def tessera_platforms():
    return [CpuPlatform()]


@hookimpl
def tessera_register_kernels(registry):
    from tessera_cpu.register import register_all

    register_all(registry)
