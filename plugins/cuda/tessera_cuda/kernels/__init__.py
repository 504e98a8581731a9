"""NVIDIA-specific kernels (cuBLAS through torch, and CUDA-only variants of the portable kernels)."""
