"""The error hierarchy shared by the contract, the engine and every plugin.

Every error Tessera raises on purpose derives from ``TesseraError``; its message
says what was wrong and what to do about it.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base of every error Tessera raises on purpose."""


class PluginError(TesseraError):
    """A plugin could not be loaded, is incompatible, or misbehaved."""


class PlatformError(TesseraError):
    """A platform was asked for that is unknown, broken or unavailable."""


class KernelError(TesseraError):
    """A kernel was asked for that does not exist or cannot serve the request."""


class KernelInputError(KernelError, ValueError):
    """A kernel launcher was handed tensors of the wrong shape, dtype or layout."""


class ConfigError(TesseraError, ValueError):
    """A configuration value is invalid."""
