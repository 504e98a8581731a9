"""ROCm-specific kernels: where the CUDA path leans on CUDA-only features."""
