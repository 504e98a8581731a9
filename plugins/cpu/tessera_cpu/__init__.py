"""tessera-cpu: the CPU platform plugin for Tessera."""

__version__ = "0.1.0"
