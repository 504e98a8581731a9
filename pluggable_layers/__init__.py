"""The contract between the Tessera engine and its plugins.

Ops (their specs and plain-torch reference implementations), the kernel registry,
tuned-config lookup and the nn.Modules models are built from. Nothing here imports
the engine (``tessera`` core) or any hardware-specific library.
"""

from tessera.pluggable_layers.errors import (
    ConfigError,
    KernelError,
    KernelInputError,
    PlatformError,
    PluginError,
    TesseraError,
)

__all__ = [
    "ConfigError",
    "KernelError",
    "KernelInputError",
    "PlatformError",
    "PluginError",
    "TesseraError",
]
