"""Benchmarks: kernels against the device's measured limits and a peer in the same run."""
