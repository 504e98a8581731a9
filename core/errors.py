"""Errors of the engine; the base classes live with the contract so plugins share them."""

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
