"""LlamaForCausalLM (also Mistral and Qwen2 checkpoints) and Qwen3ForCausalLM (per-head q/k norm)."""

from __future__ import annotations

import re

from torch import nn

from tessera.models.base import CausalLM, layer_index
from tessera.models.common import DecoderAttention, GatedMLP, linear_loader, param_loader
from tessera.models.spec import ModelSpec
from tessera.pluggable_layers.batch import BatchMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.norm import RMSNorm

L = r"model\.layers\.(?P<layer>\d+)\."
#: a linear layer's checkpoint tensors: dense, GPTQ/AWQ 4-bit, fp8 with scales
P = r"(?P<param>weight|bias|qweight|qzeros|scales|g_idx|weight_scale|input_scale)"


class DenseDecoderLayer(nn.Module):
    def __init__(
        self, spec: ModelSpec, ctx: KernelContext, i: int, attn: DecoderAttention, mlp: nn.Module
    ) -> None:
        super().__init__()
        eps = float(spec.get("rms_norm_eps", default=1e-6))
        self.input_layernorm = RMSNorm(spec.hidden_size, eps, ctx, f"model.layers.{i}.input_layernorm")
        self.self_attn = attn
        self.post_attention_layernorm = RMSNorm(
            spec.hidden_size, eps, ctx, f"model.layers.{i}.post_attention_layernorm"
        )
        self.mlp = mlp

    def forward(self, positions, hidden, residual, meta: BatchMetadata):
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta.attention)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


def submodule(layers: nn.ModuleList, m: re.Match, *path: str) -> nn.Module | None:
    """The module at ``path`` inside the layer a checkpoint name points at, or None if it has none."""
    module = layer_index(m, layers)
    for name in path:
        module = getattr(module, name, None) if module is not None else None
    return module


def loader_or_none(module: nn.Module | None, make) -> object:
    return make(module) if module is not None else None


def attention_rules(layers: nn.ModuleList, attn_name: str = "self_attn") -> list:
    a = L + re.escape(attn_name) + r"\."

    def proj(m, name, shard=None):
        return loader_or_none(
            submodule(layers, m, attn_name, name), lambda t: linear_loader(t, m.group("param"), shard)
        )

    def norm(m):
        target = submodule(layers, m, attn_name, f"{m.group('which')}_norm")
        return loader_or_none(target, lambda t: param_loader(t.weight, m.group(0)))

    return [
        (
            re.compile(a + r"(?P<shard>[qkv])_proj\." + P),
            lambda m: proj(m, "qkv_proj", m.group("shard")),
        ),
        (re.compile(a + r"o_proj\." + P), lambda m: proj(m, "o_proj")),
        (re.compile(a + r"(?P<which>[qk])_norm\.weight"), norm),
    ]


def mlp_rules(layers: nn.ModuleList, mlp_name: str = "mlp") -> list:
    def proj(m, name, shard=None):
        return loader_or_none(
            submodule(layers, m, mlp_name, name), lambda t: linear_loader(t, m.group("param"), shard)
        )

    p = L + re.escape(mlp_name) + r"\."
    return [
        (
            re.compile(p + r"(?P<shard>gate|up)_proj\." + P),
            lambda m: proj(m, "gate_up_proj", m.group("shard")),
        ),
        (re.compile(p + r"down_proj\." + P), lambda m: proj(m, "down_proj")),
    ]


def norm_rules(layers: nn.ModuleList, names: tuple[str, ...]) -> list:
    def norm(m):
        return loader_or_none(
            submodule(layers, m, m.group("norm")), lambda t: param_loader(t.weight, m.group(0))
        )

    return [(re.compile(L + r"(?P<norm>" + "|".join(names) + r")\.weight"), norm)]


class LlamaForCausalLM(CausalLM):
    qk_norm = False
    quantized_checkpoints = True  # every linear layer is built by make_linear

    def __init__(self, spec: ModelSpec, ctx: KernelContext) -> None:
        super().__init__(spec, ctx)
        qkv_bias, o_bias = self.biases(spec)
        window = spec.get("sliding_window") if spec.get("use_sliding_window", default=True) else None
        for i in range(spec.num_layers):
            prefix = f"model.layers.{i}"
            attn = DecoderAttention(spec, ctx, f"{prefix}.self_attn", qk_norm=self.qk_norm, qkv_bias=qkv_bias,
                                    o_bias=o_bias, sliding_window=window)  # fmt: skip
            mlp = GatedMLP(spec.hidden_size, int(spec.require("intermediate_size")), ctx, f"{prefix}.mlp",
                           bias=bool(spec.get("mlp_bias", default=False)))  # fmt: skip
            self.layers.append(DenseDecoderLayer(spec, ctx, i, attn, mlp))

    @staticmethod
    def biases(spec: ModelSpec) -> tuple[bool, bool]:
        if spec.get("model_type") == "qwen2":
            return True, False
        bias = bool(spec.get("attention_bias", default=False))
        return bias, bias

    def weight_rules(self):
        return [*attention_rules(self.layers), *mlp_rules(self.layers),
                *norm_rules(self.layers, ("input_layernorm", "post_attention_layernorm"))]  # fmt: skip


class Qwen3ForCausalLM(LlamaForCausalLM):
    qk_norm = True
