"""The fused MoE layer on 4-bit experts (GPTQ or AWQ checkpoints): routing by ``moe_route``, then
``moe_experts_wna16`` on each expert's weights as the checkpoint stores them, stacked along experts.

``w13`` (gate then up, [2I, H] per expert) and ``w2`` ([H, I]) are each three tensors in linear_wna16's
checkpoint layout (qweight, scales, qzeros, with an expert dimension in front); the per-expert
``gate_proj`` / ``up_proj`` / ``down_proj`` tensors are copied into place, then handed once to the
kernel's ``prepare`` (plugin API 1.2); only the prepared form is kept.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.prepared import PreparedWeights, empty_weight
from tessera.pluggable_layers.reference.linear_wna16 import checkpoint_shape

SHARDS = ("gate", "up", "down")
PARTS = ("qweight", "qzeros", "scales")


class WNA16FusedMoE(PreparedWeights, nn.Module):
    def __init__(self, num_experts: int, top_k: int, hidden_size: int, intermediate_size: int, ctx: KernelContext,
                 prefix: str, scheme, renormalize: bool = True, scoring: str = "softmax") -> None:  # fmt: skip
        super().__init__()
        self.prefix, self.num_experts, self.top_k = prefix, num_experts, top_k
        self.renormalize, self.scoring = renormalize, scoring
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.weight_format = scheme.weight_format
        self._dtype, self._device = ctx.dtype, ctx.device
        gs = scheme.group_size
        for name, k, n in (
            ("gate_up", hidden_size, 2 * intermediate_size),
            ("down", intermediate_size, hidden_size),
        ):
            if gs != -1 and (gs <= 0 or k % gs):
                raise ConfigError(
                    f"{prefix}: group size {gs} does not divide the {k} input channels of {name}_proj"
                )
            if (n // 2 if name == "gate_up" else n) % 8:
                raise ConfigError(f"{prefix}: {name}_proj's shards have {n // 2 if name == 'gate_up' else n} output "
                                  "channels, not a multiple of 8 (4-bit packing)")  # fmt: skip
        self.groups = {
            "w13": 1 if gs == -1 else hidden_size // gs,
            "w2": 1 if gs == -1 else intermediate_size // gs,
        }
        self.loaded: set[tuple[int, str, str]] = set()
        self.allocate_checkpoint_weights()
        self._route = ctx.kernel("moe_route", prefix, num_experts=num_experts, top_k=top_k, dtype=ctx.dtype)
        self._kernel = ctx.kernel("moe_experts_wna16", prefix, num_experts=num_experts, top_k=top_k,
                                  weight_format=self.weight_format)  # fmt: skip

    def allocate_checkpoint_weights(self) -> None:
        dims = {
            "w13": (self.hidden_size, 2 * self.intermediate_size),
            "w2": (self.intermediate_size, self.hidden_size),
        }
        for name, (k, n) in dims.items():
            shapes = checkpoint_shape(self.weight_format, k, n, self.groups[name])
            for part in PARTS:
                dtype = self._dtype if part == "scales" else torch.int32
                setattr(
                    self,
                    f"{name}_{part}",
                    empty_weight((self.num_experts, *shapes[part]), dtype, self._device),
                )
        self.loaded = set()

    def load_expert(self, expert: int, shard: str, param_name: str, tensor: torch.Tensor) -> None:
        if shard not in SHARDS or not 0 <= expert < self.num_experts:
            raise ConfigError(f"{self.prefix}: no expert {expert} shard {shard!r} (experts 0..{self.num_experts - 1}, "
                              f"shards {SHARDS})")  # fmt: skip
        where = f"{self.prefix}.{expert}.{shard}_proj.{param_name}"
        k = self.intermediate_size if shard == "down" else self.hidden_size
        if param_name == "g_idx":
            gs = k // self.groups["w2" if shard == "down" else "w13"]
            if not torch.equal(tensor.long().cpu(), torch.arange(k) // gs):
                raise ConfigError(f"{where} is not the trivial k // group_size (an act-order, desc_act=true "
                                  "checkpoint); Tessera reads GPTQ checkpoints made with desc_act=false only")  # fmt: skip
            return
        if param_name not in PARTS:
            raise ConfigError(f"{where}: a {self.weight_format} checkpoint's experts have qweight, qzeros, scales "
                              "(and g_idx) only")  # fmt: skip
        self.unprepare()
        target = getattr(self, f"{'w2' if shard == 'down' else 'w13'}_{param_name}").data[expert]
        if shard != "down":
            inter = self.intermediate_size
            start, end = (0, inter) if shard == "gate" else (inter, 2 * inter)
            packed = param_name == "qzeros" or (param_name == "qweight" and self.weight_format == "awq")
            target = target[:, start // 8 : end // 8] if packed else target[:, start:end]
        if tuple(target.shape) != tuple(tensor.shape):
            raise ConfigError(f"{where}: checkpoint shape {tuple(tensor.shape)} does not match the layer's "
                              f"{tuple(target.shape)}")  # fmt: skip
        target.copy_(tensor)
        self.loaded.add((expert, shard, param_name))

    def finish_loading(self) -> None:
        if self._prepared:
            return
        if self.loaded:
            want = {(e, s, p) for e in range(self.num_experts) for s in SHARDS for p in PARTS}
            missing = sorted(want - self.loaded)
            if missing:
                e, s, p = missing[0]
                raise ConfigError(f"{self.prefix}: the checkpoint lacks {len(missing)} expert tensors, e.g. "
                                  f"experts.{e}.{s}_proj.{p}")  # fmt: skip
        self.prepare_weights()

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        weights, ids = self._route(router_logits, self.top_k, self.renormalize, self.scoring)
        return self._kernel(x, self.w13_qweight, self.w13_scales, self.w13_qzeros, self.w2_qweight, self.w2_scales,
                            self.w2_qzeros, weights, ids, weight_format=self.weight_format)  # fmt: skip
