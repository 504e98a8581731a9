"""The gated activation of SwiGLU MLPs."""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext


class SiluAndMul(nn.Module):
    """``silu(x[:, :I]) * x[:, I:]``."""

    def __init__(self, ctx: KernelContext, prefix: str) -> None:
        super().__init__()
        self._kernel = ctx.kernel("silu_and_mul", prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._kernel(x)
