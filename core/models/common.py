"""Building blocks shared by the decoder models: attention block, gated MLP, weight loading."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch
from torch import nn

from tessera.models.spec import ModelLoadError, ModelSpec
from tessera.pluggable_layers.activation import SiluAndMul
from tessera.pluggable_layers.attention import Attention
from tessera.pluggable_layers.batch import AttentionMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.norm import RMSNorm
from tessera.pluggable_layers.parallel import column_linear, row_linear
from tessera.pluggable_layers.rotary import RotaryEmbedding


class DecoderAttention(nn.Module):
    """qkv projection (fused), optional per-head q/k RMSNorm (Qwen3), rotary, paged attention, o_proj."""

    def __init__(self, spec: ModelSpec, ctx: KernelContext, prefix: str, qk_norm: bool = False, qkv_bias: bool = False,
                 o_bias: bool = False, sliding_window: int | None = None, default_partial_rotary: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        full_q, full_k, d = spec.num_heads, spec.num_kv_heads, spec.head_dim
        q_cfg, par = ctx.quantization, ctx.parallel
        self.qkv_proj = column_linear(spec.hidden_size, [full_q * d, full_k * d, full_k * d], qkv_bias, ctx,
                                      f"{prefix}.qkv_proj", shard_names=("q", "k", "v"), quantization=q_cfg,
                                      units=[full_q, full_k, full_k])  # fmt: skip
        self.o_proj = row_linear(full_q * d, spec.hidden_size, o_bias, ctx, f"{prefix}.o_proj", quantization=q_cfg,
                                 units=full_q)  # fmt: skip
        hq, hk = (
            par.local(full_q),
            par.local(full_k),
        )  # this rank's heads (kv heads replicated when fewer than ranks)
        self.q_size, self.kv_size = hq * d, hk * d
        eps = float(spec.get("rms_norm_eps", default=1e-6))
        self.q_norm = RMSNorm(d, eps, ctx, f"{prefix}.q_norm") if qk_norm else None
        self.k_norm = RMSNorm(d, eps, ctx, f"{prefix}.k_norm") if qk_norm else None
        rope = spec.rope(default_partial_rotary)
        rotary_dim = int(d * rope["partial_rotary_factor"])
        self.rotary = RotaryEmbedding(d, rotary_dim, spec.max_position, rope["theta"], True, ctx, f"{prefix}.rotary",
                                      scaling=rope["scaling"])  # fmt: skip
        self.attn = Attention(hq, hk, d, d**-0.5, ctx, f"{prefix}.attn", sliding_window=sliding_window)
        self.hq, self.hk, self.d = hq, hk, d

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        tokens = hidden.shape[0]
        q, k, v = self.qkv_proj(hidden).split_with_sizes([self.q_size, self.kv_size, self.kv_size], 1)
        q, k = q.view(tokens, self.hq, self.d), k.view(tokens, self.hk, self.d)
        if self.q_norm is not None:
            q = self.q_norm(q.reshape(-1, self.d)).view(tokens, self.hq, self.d)
            k = self.k_norm(k.reshape(-1, self.d)).view(tokens, self.hk, self.d)
        q, k = self.rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, meta))  # attention takes q and k per head as they are


class GatedMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), with gate and up fused."""

    def __init__(
        self, hidden: int, intermediate: int, ctx: KernelContext, prefix: str, bias: bool = False
    ) -> None:
        super().__init__()
        self.gate_up_proj = column_linear(hidden, [intermediate, intermediate], bias, ctx, f"{prefix}.gate_up_proj",
                                          shard_names=("gate", "up"), quantization=ctx.quantization)  # fmt: skip
        self.act = SiluAndMul(ctx, f"{prefix}.act")
        self.down_proj = row_linear(
            intermediate, hidden, bias, ctx, f"{prefix}.down_proj", quantization=ctx.quantization
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))


Loader = Callable[[torch.Tensor], None]
Rule = tuple[re.Pattern, Callable[[re.Match], Loader | None]]


def load_by_rules(
    rules: list[Rule], weights: Iterable[tuple[str, torch.Tensor]], ignore: tuple[str, ...] = ()
) -> set[str]:
    """Route each checkpoint tensor to the loader of the first rule matching its name; returns the names loaded.

    Unknown names raise (a checkpoint that does not fit the architecture must not load silently).
    """
    loaded = set()
    for name, tensor in weights:
        if any(re.search(p, name) for p in ignore):
            continue
        for pattern, make_loader in rules:
            match = pattern.fullmatch(name)
            if match:
                loader = make_loader(match)
                if loader is None:
                    raise ModelLoadError(
                        f"checkpoint tensor {name!r} has no place in this model (index out of range?)"
                    )
                loader(tensor if getattr(loader, "reads_slices", False) else whole(tensor))
                loaded.add(name)
                break
        else:
            raise ModelLoadError(f"checkpoint tensor {name!r} does not belong to this architecture")
    return loaded


def whole(tensor) -> torch.Tensor:
    """A checkpoint tensor read in full (a lazy slice of a sharded load is read here; a tensor is itself)."""
    return tensor if isinstance(tensor, torch.Tensor) else tensor[tuple(slice(None) for _ in tensor.shape)]


def slicing(loader: Loader, module: nn.Module | None) -> Loader:
    """Mark ``loader`` as reading only its slice of a lazy checkpoint tensor when ``module`` is sharded."""
    loader.reads_slices = bool(getattr(module, "reads_slices", False))
    return loader


def linear_loader(layer: Linear, param: str, shard: str | None = None) -> Loader:
    return slicing(lambda t: layer.load_shard(param, t, shard), layer)


def weight_loader(module: nn.Module, name: str) -> Loader:
    """The loader of a module's ``weight``: its own ``load_weight`` when it has one (sharded), else a copy."""
    if hasattr(module, "load_weight"):
        return slicing(lambda t: module.load_weight(t), module)
    return param_loader(module.weight, name)


def param_loader(param: nn.Parameter | torch.Tensor, name: str) -> Loader:
    def load(t: torch.Tensor) -> None:
        target = param.data if isinstance(param, nn.Parameter) else param
        if tuple(target.shape) != tuple(t.shape):
            raise ModelLoadError(
                f"{name}: checkpoint shape {tuple(t.shape)} does not match the model's {tuple(target.shape)}"
            )
        target.copy_(t)

    return load
