"""RMSNorm (with the fused residual add) and the gated, grouped RMSNorm of Mamba2."""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext


class RMSNorm(nn.Module):
    """``forward(x)`` -> normed; ``forward(x, residual)`` -> (normed(x + residual), x + residual)."""

    def __init__(self, hidden_size: int, eps: float, ctx: KernelContext, prefix: str) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(
            torch.ones(hidden_size, dtype=ctx.dtype, device=ctx.device), requires_grad=False
        )
        self._norm = ctx.kernel("rms_norm", prefix)
        self._add_norm = ctx.kernel("add_rms_norm", prefix)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is None:
            return self._norm(x, self.weight, self.eps)
        return self._add_norm(x, residual, self.weight, self.eps)


class GatedRMSNorm(nn.Module):
    """``x * silu(z)``, normalized within groups of ``group_size`` channels, times weight."""

    def __init__(
        self, hidden_size: int, group_size: int, eps: float, ctx: KernelContext, prefix: str
    ) -> None:
        super().__init__()
        self.eps, self.group_size = eps, group_size
        self.weight = nn.Parameter(
            torch.ones(hidden_size, dtype=ctx.dtype, device=ctx.device), requires_grad=False
        )
        self._kernel = ctx.kernel("gated_rms_norm", prefix, group_size=group_size)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return self._kernel(x, z, self.weight, self.eps, self.group_size)
