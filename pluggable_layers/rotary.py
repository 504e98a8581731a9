"""Rotary position embedding: neox or gptj style, partial rotary, llama3 and linear scaling."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError

SCALINGS = ("default", "linear", "llama3")


def inverse_frequencies(rotary_dim: int, base: float, scaling: Mapping[str, Any] | None) -> torch.Tensor:
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    kind = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if kind not in SCALINGS:
        raise ConfigError(f"rope scaling {kind!r} is not supported; supported: {', '.join(SCALINGS)}")
    if kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        factor, low, high = (
            float(scaling["factor"]),
            float(scaling["low_freq_factor"]),
            float(scaling["high_freq_factor"]),
        )
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        smooth = ((old_len / wavelen) - low) / (high - low)
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        mid = (wavelen <= old_len / low) & (wavelen >= old_len / high)
        inv_freq = torch.where(mid, (1 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)
    return inv_freq


class RotaryEmbedding(nn.Module):
    """``forward(positions, q[T,Hq,D], k[T,Hk,D])`` -> rotated (q, k)."""

    def __init__(
        self,
        head_dim: int,
        rotary_dim: int,
        max_position: int,
        base: float,
        is_neox: bool,
        ctx: KernelContext,
        prefix: str,
        scaling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if rotary_dim % 2 or rotary_dim > head_dim:
            raise ConfigError(
                f"{prefix}: rotary_dim {rotary_dim} must be even and at most head_dim {head_dim}"
            )
        self.is_neox = is_neox
        inv_freq = inverse_frequencies(rotary_dim, base, scaling)
        angles = torch.arange(max_position, dtype=torch.float64)[:, None] * inv_freq[None, :]
        cache = torch.cat([angles.cos(), angles.sin()], dim=-1).to(torch.float32)
        self.register_buffer("cos_sin_cache", cache.to(ctx.device), persistent=False)
        self._kernel = ctx.kernel("rotary_embedding", prefix, head_size=head_dim, rotary_dim=rotary_dim)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._kernel(positions, q, k, self.cos_sin_cache, self.is_neox)
