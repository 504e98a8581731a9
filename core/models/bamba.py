"""BambaForCausalLM: a Mamba2 / attention hybrid. Each layer is a Mamba2 mixer or an attention
block (partial rotary), followed by a SwiGLU feed-forward."""

from __future__ import annotations

import re

from torch import nn

from tessera.models.base import CausalLM, layer_index
from tessera.models.common import DecoderAttention, GatedMLP, linear_loader, slicing
from tessera.models.llama import L, attention_rules, mlp_rules, norm_rules
from tessera.models.spec import ModelSpec
from tessera.pluggable_layers.batch import BatchMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.mamba import Mamba2Shape
from tessera.pluggable_layers.norm import RMSNorm
from tessera.pluggable_layers.parallel_mixers import mamba2_mixer


def mamba_shape(spec: ModelSpec) -> Mamba2Shape:
    heads = int(spec.require("mamba_n_heads"))
    expand = int(spec.get("mamba_expand", default=2))
    head_dim = spec.get("mamba_d_head")
    head_dim = int(expand * spec.hidden_size // heads) if head_dim in (None, "auto") else int(head_dim)
    return Mamba2Shape(
        hidden_size=spec.hidden_size, num_heads=heads, head_dim=head_dim, n_groups=int(spec.get("mamba_n_groups", default=1)),
        state_size=int(spec.require("mamba_d_state")), conv_kernel=int(spec.get("mamba_d_conv", default=4)),
        chunk_size=int(spec.get("mamba_chunk_size", default=256)), eps=float(spec.get("rms_norm_eps", default=1e-6)),
        conv_bias=bool(spec.get("mamba_conv_bias", default=True)), proj_bias=bool(spec.get("mamba_proj_bias", default=False)),
    )  # fmt: skip


def layer_types(spec: ModelSpec) -> list[str]:
    attn = set(spec.get("attn_layer_indices") or [])
    return ["attention" if i in attn else "mamba" for i in range(spec.num_layers)]


class HybridLayer(nn.Module):
    def __init__(self, spec: ModelSpec, ctx: KernelContext, i: int, kind: str) -> None:
        super().__init__()
        prefix = f"model.layers.{i}"
        eps = float(spec.get("rms_norm_eps", default=1e-6))
        self.kind = kind
        self.input_layernorm = RMSNorm(spec.hidden_size, eps, ctx, f"{prefix}.input_layernorm")
        if kind == "mamba":
            self.mamba = mamba2_mixer(
                mamba_shape(spec), ctx, f"{prefix}.mamba", quantization=ctx.quantization
            )
        else:
            bias = bool(spec.get("attention_bias", default=False))
            self.self_attn = DecoderAttention(spec, ctx, f"{prefix}.self_attn", qkv_bias=bias, o_bias=bias,
                                              default_partial_rotary=0.5)  # fmt: skip
        self.pre_ff_layernorm = RMSNorm(spec.hidden_size, eps, ctx, f"{prefix}.pre_ff_layernorm")
        self.feed_forward = GatedMLP(spec.hidden_size, int(spec.require("intermediate_size")), ctx, f"{prefix}.feed_forward",
                                     bias=bool(spec.get("mlp_bias", default=False)))  # fmt: skip

    def forward(self, positions, hidden, residual, meta: BatchMetadata):
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        if self.kind == "mamba":
            hidden = self.mamba(hidden, meta.mamba)
        else:
            hidden = self.self_attn(positions, hidden, meta.attention)
        hidden, residual = self.pre_ff_layernorm(hidden, residual)
        return self.feed_forward(hidden), residual


class BambaForCausalLM(CausalLM):
    final_norm_name = "model.final_layernorm"

    def __init__(self, spec: ModelSpec, ctx: KernelContext) -> None:
        super().__init__(spec, ctx)
        for i, kind in enumerate(layer_types(spec)):
            self.layers.append(HybridLayer(spec, ctx, i, kind))

    def weight_rules(self):
        def mixer(m):
            layer = layer_index(m, self.layers)
            return getattr(layer, "mamba", None) if layer is not None else None

        def proj(m):
            block = mixer(m)
            return block and linear_loader(getattr(block, m.group("proj")), m.group("param"))

        def param(m):
            block = mixer(m)
            name = m.group("name")
            if block is None or (name == "conv1d.bias" and block.conv_bias is None):
                return None
            return slicing(lambda t: block.load_param(name, t), block)

        mp = L + r"mamba\."
        return [
            (re.compile(mp + r"(?P<proj>in_proj|out_proj)\.(?P<param>weight|bias)"), proj),
            (re.compile(mp + r"(?P<name>conv1d\.weight|conv1d\.bias|dt_bias|A_log|D|norm\.weight)"), param),
            *attention_rules(self.layers), *mlp_rules(self.layers, "feed_forward"),
            *norm_rules(self.layers, ("input_layernorm", "pre_ff_layernorm")),
        ]  # fmt: skip
