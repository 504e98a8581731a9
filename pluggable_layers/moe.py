"""Fused mixture-of-experts layer: routing (moe_route) then the fused experts (moe_experts).

Weights follow the fused layout ``w13[E, 2I, H]`` (gate rows, then up rows) and
``w2[E, H, I]``; :meth:`FusedMoE.load_expert` copies Hugging Face's per-expert
``gate_proj`` / ``up_proj`` / ``down_proj`` tensors into place. With
``quantization="fp8"`` the experts are quantized per output channel on load.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel

SHARDS = ("gate", "up", "down")


class FusedMoE(nn.Module):
    def __init__(
        self,
        num_experts: int,
        top_k: int,
        hidden_size: int,
        intermediate_size: int,
        ctx: KernelContext,
        prefix: str,
        renormalize: bool = True,
        scoring: str = "softmax",
        quantization: str | None = None,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.num_experts, self.top_k, self.renormalize, self.scoring = (
            num_experts,
            top_k,
            renormalize,
            scoring,
        )
        self.intermediate_size = intermediate_size
        self.quantization = quantization
        self.fp8_dtype = ctx.platform.capabilities.fp8_dtype if quantization == "fp8" else None
        if quantization == "fp8" and not self.fp8_dtype:
            raise ConfigError(
                f"{prefix}: fp8 experts need a platform with an fp8 dtype; {ctx.platform.name} has none"
            )
        empty = {"dtype": ctx.dtype, "device": ctx.device}
        self.w13 = nn.Parameter(
            torch.empty(num_experts, 2 * intermediate_size, hidden_size, **empty), requires_grad=False
        )
        self.w2 = nn.Parameter(
            torch.empty(num_experts, hidden_size, intermediate_size, **empty), requires_grad=False
        )
        self.w13_scale: torch.Tensor | None = None
        self.w2_scale: torch.Tensor | None = None
        self._route = ctx.kernel("moe_route", prefix, num_experts=num_experts, top_k=top_k, dtype=ctx.dtype)
        self._experts = ctx.kernel("moe_experts", prefix, num_experts=num_experts, top_k=top_k,
                                   weight_dtype=self.fp8_dtype or ctx.dtype_name)  # fmt: skip

    def load_expert(self, expert: int, shard: str, tensor: torch.Tensor) -> None:
        if shard not in SHARDS or not 0 <= expert < self.num_experts:
            raise ConfigError(
                f"{self.prefix}: no expert {expert} shard {shard!r} (experts 0..{self.num_experts - 1}, shards {SHARDS})"
            )
        inter = self.intermediate_size
        target = {
            "gate": self.w13.data[expert, :inter],
            "up": self.w13.data[expert, inter:],
            "down": self.w2.data[expert],
        }[shard]
        if tuple(target.shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{self.prefix}.experts.{expert}.{shard}: checkpoint shape {tuple(tensor.shape)} != {tuple(target.shape)}"
            )
        target.copy_(tensor)

    def finish_loading(self) -> None:
        if self.fp8_dtype and self.w13.dtype != getattr(torch, self.fp8_dtype):
            fp8 = getattr(torch, self.fp8_dtype)
            q13, s13 = quantize_per_channel(self.w13.data.flatten(0, 1), fp8)
            q2, s2 = quantize_per_channel(self.w2.data.flatten(0, 1), fp8)
            self.w13 = nn.Parameter(q13.view(self.w13.shape), requires_grad=False)
            self.w2 = nn.Parameter(q2.view(self.w2.shape), requires_grad=False)
            self.w13_scale, self.w2_scale = s13.view(self.num_experts, -1), s2.view(self.num_experts, -1)

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        weights, ids = self._route(router_logits, self.top_k, self.renormalize, self.scoring)
        return self._experts(x, self.w13, self.w2, weights, ids, self.w13_scale, self.w2_scale)
