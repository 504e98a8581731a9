"""The sampling layer: per-row temperature, top-k and top-p through the ``sample`` op."""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext


class Sampler(nn.Module):
    def __init__(self, ctx: KernelContext, prefix: str = "sampler") -> None:
        super().__init__()
        self._kernel = ctx.kernel("sample", prefix, dtype=torch.float32)

    def forward(self, logits, temperature, top_k, top_p, exponential_noise=None) -> torch.Tensor:
        return self._kernel(logits.float(), temperature, top_k, top_p, exponential_noise)
