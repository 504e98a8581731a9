"""Triton kernels, one module per op, named like the op."""
