"""tessera-triton: Tessera's portable Triton kernel pack.

Kernels are written once in Triton and registered for every platform whose
capabilities say ``triton_backend``; each platform plugin supplies tuned configs for its
devices. Triton is imported only when a kernel is built, never at discovery.
"""

__version__ = "0.1.0"
