"""tessera-cuda: the NVIDIA platform plugin for Tessera."""

__version__ = "0.1.0"
