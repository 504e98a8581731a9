"""Torch-native CPU kernels, one module per op family, named like the ops."""
