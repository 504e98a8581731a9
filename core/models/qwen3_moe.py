"""Qwen3MoeForCausalLM: Qwen3 attention with sparse MoE feed-forward layers (dense where configured)."""

from __future__ import annotations

import re

import torch
from torch import nn

from tessera.models.base import CausalLM, layer_index
from tessera.models.common import DecoderAttention, GatedMLP, linear_loader, slicing
from tessera.models.llama import DenseDecoderLayer, L, attention_rules, mlp_rules, norm_rules
from tessera.models.spec import ModelSpec
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.moe_wna16 import WNA16FusedMoE
from tessera.pluggable_layers.parallel_mixers import fused_moe


class SparseMoeBlock(nn.Module):
    def __init__(self, spec: ModelSpec, ctx: KernelContext, prefix: str) -> None:
        super().__init__()
        num_experts = int(spec.require("num_experts", "num_local_experts"))
        self.gate = Linear(spec.hidden_size, num_experts, False, ctx, f"{prefix}.gate")
        args = (num_experts, int(spec.require("num_experts_per_tok")), spec.hidden_size,
                int(spec.require("moe_intermediate_size")), ctx, f"{prefix}.experts")  # fmt: skip
        renormalize = bool(spec.get("norm_topk_prob", default=True))
        scheme = ctx.checkpoint_quant
        if scheme is not None and scheme.method == "wna16":
            if ctx.parallel.sharded:
                raise ConfigError(
                    f"{prefix}: 4-bit experts are not sharded across ranks yet; run on one rank"
                )
            self.experts = WNA16FusedMoE(*args, scheme=scheme, renormalize=renormalize)
        else:
            self.experts = fused_moe(*args, renormalize=renormalize, quantization=ctx.quantization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.experts(x, self.gate(x))


def is_sparse(spec: ModelSpec, i: int) -> bool:
    step = int(spec.get("decoder_sparse_step", default=1))
    experts = int(spec.get("num_experts", "num_local_experts", default=0))
    return i not in (spec.get("mlp_only_layers") or []) and experts > 0 and (i + 1) % step == 0


class Qwen3MoeForCausalLM(CausalLM):
    quantized_checkpoints = (
        "wna16",
    )  # GPTQ / AWQ: the experts by moe_experts_wna16, the rest by make_linear

    def __init__(self, spec: ModelSpec, ctx: KernelContext) -> None:
        super().__init__(spec, ctx)
        for i in range(spec.num_layers):
            prefix = f"model.layers.{i}"
            attn = DecoderAttention(spec, ctx, f"{prefix}.self_attn", qk_norm=True,
                                    qkv_bias=bool(spec.get("attention_bias", default=False)))  # fmt: skip
            if is_sparse(spec, i):
                mlp = SparseMoeBlock(spec, ctx, f"{prefix}.mlp")
            else:
                mlp = GatedMLP(spec.hidden_size, int(spec.require("intermediate_size")), ctx, f"{prefix}.mlp")
            self.layers.append(DenseDecoderLayer(spec, ctx, i, attn, mlp))

    def weight_rules(self):
        def moe(m):
            layer = layer_index(m, self.layers)
            return layer.mlp if layer is not None and isinstance(layer.mlp, SparseMoeBlock) else None

        def expert(m):
            block = moe(m)
            if block is None:
                return None
            return slicing(
                lambda t: block.experts.load_expert(int(m.group("expert")), m.group("shard"), t),
                block.experts,
            )

        def fused(m):
            block = moe(m)
            if block is None:
                return None
            inter = block.experts.intermediate_size

            def load(t):
                for e in range(t.shape[0]):
                    if m.group("which") == "gate_up":
                        block.experts.load_expert(e, "gate", t[e, :inter])
                        block.experts.load_expert(e, "up", t[e, inter:])
                    else:
                        block.experts.load_expert(e, "down", t[e])

            return load

        def int4_expert(m):
            block = moe(m)
            if block is None or not isinstance(block.experts, WNA16FusedMoE):
                return None
            expert, shard, part = int(m.group("expert")), m.group("shard"), m.group("part")
            return lambda t: block.experts.load_expert(expert, shard, part, t)

        def router(m):
            block = moe(m)
            return block and linear_loader(block.gate, "weight")

        return [
            (re.compile(L + r"mlp\.experts\.(?P<expert>\d+)\.(?P<shard>gate|up|down)_proj\.weight"), expert),
            (re.compile(L + r"mlp\.experts\.(?P<which>gate_up|down)_proj"), fused),
            (re.compile(L + r"mlp\.experts\.(?P<expert>\d+)\.(?P<shard>gate|up|down)_proj\."
                        r"(?P<part>qweight|qzeros|scales|g_idx)"), int4_expert),
            (re.compile(L + r"mlp\.gate\.weight"), router),
            *attention_rules(self.layers), *mlp_rules(self.layers),
            *norm_rules(self.layers, ("input_layernorm", "post_attention_layernorm")),
        ]  # fmt: skip
