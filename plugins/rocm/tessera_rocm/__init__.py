"""tessera-rocm: the AMD ROCm platform plugin for Tessera."""

__version__ = "0.1.0"
