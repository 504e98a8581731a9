"""Paged attention layer: writes this step's keys and values to the cache, then attends.

The paged_attention kernel is chosen first and fixes the KV-cache layout (``kv_layout``, see
:mod:`tessera.pluggable_layers.kv_layout`); the kv_cache_write kernel is chosen to write that
layout. The engine allocates the caches in it (:meth:`Attention.cache_shape`) and binds
``kv_cache`` (key and value caches) once it has.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.batch import AttentionMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.kv_layout import cache_shape


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
        self._attend = ctx.kernel("paged_attention", prefix, **facts)
        self.kv_layout: str = self._attend.kv_layout
        self._write = ctx.kernel("kv_cache_write", prefix, head_size=head_dim, kv_layout=self.kv_layout,
                                 kv_layout_from=self._attend.name)  # fmt: skip

    def cache_shape(self, num_blocks: int, block_size: int) -> tuple[int, ...]:
        """The shape of this layer's key (and value) cache in the layout its kernels use."""
        return cache_shape(self.kv_layout, num_blocks, block_size, self.num_kv_heads, self.head_dim)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        """q [T, Hq*D] or [T, Hq, D], k and v [T, Hk*D] or [T, Hk, D] (views of a fused projection are fine)
        -> [T, Hq*D]."""
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
