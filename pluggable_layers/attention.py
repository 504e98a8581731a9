"""Paged attention layer: writes this step's keys and values to the cache, then attends.

The engine binds ``kv_cache`` (key and value caches of
``[num_blocks, block_size, num_kv_heads, head_dim]``) once it has allocated them.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.batch import AttentionMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError


class Attention(nn.Module):
    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float,
        ctx: KernelContext,
        prefix: str,
        sliding_window: int | None = None,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ConfigError(
                f"{prefix}: {num_heads} query heads are not a multiple of {num_kv_heads} KV heads"
            )
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale, self.sliding_window = scale, sliding_window
        self.kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        facts = {
            "head_size": head_dim,
            "num_heads": num_heads,
            "num_kv_heads": num_kv_heads,
            "sliding_window": sliding_window,
        }
        self._write = ctx.kernel("kv_cache_write", prefix, head_size=head_dim)
        self._attend = ctx.kernel("paged_attention", prefix, **facts)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        """q [T, Hq*D], k and v [T, Hk*D] (views of a fused projection are fine) -> [T, Hq*D]."""
        if self.kv_cache is None:
            raise ConfigError(
                "attention layer has no KV cache bound; the engine binds it after profiling memory"
            )
        tokens = q.shape[0]
        q = q.view(tokens, self.num_heads, self.head_dim)
        k = k.view(tokens, self.num_kv_heads, self.head_dim)
        v = v.view(tokens, self.num_kv_heads, self.head_dim)
        key_cache, value_cache = self.kv_cache
        self._write(k, v, key_cache, value_cache, meta.slot_mapping)
        out = self._attend(q, key_cache, value_cache, meta.query_start_loc, meta.seq_lens, meta.block_tables,
                           self.scale, self.sliding_window)  # fmt: skip
        return out.view(tokens, self.num_heads * self.head_dim)
