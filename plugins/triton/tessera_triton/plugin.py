"""Entry point of tessera-triton: a kernel pack (it provides no platform)."""

from tessera.hookspecs import hookimpl

TESSERA_PLUGIN_API = "1.2"


@hookimpl
def tessera_register_kernels(registry):
    from tessera_triton.register import register_all

    register_all(registry)
