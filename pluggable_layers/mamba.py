"""The Mamba2 mixer (as in Bamba, Nemotron-H, Granite-4.0-H) with explicit state in and out.

in_proj -> [gate | xBC | dt]; xBC -> causal conv (+silu) -> [x | B | C]; the
selective scan with ``A = -exp(A_log)``, ``dt' = softplus(dt + dt_bias)`` and the
D skip; gated grouped RMSNorm with the gate; out_proj. Prefill chunks go through
``causal_conv1d`` + ``ssd_chunk_scan``, one-token decode sequences through
``causal_conv1d_update`` + ``selective_state_update``. The engine binds
``state = (conv_states[S, conv_dim, W-1], ssm_states[S, H, P, N])``; each
sequence owns one slot (``MambaMetadata.state_indices``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tessera.pluggable_layers.batch import MambaMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.norm import GatedRMSNorm


@dataclass(frozen=True)
class Mamba2Shape:
    hidden_size: int
    num_heads: int
    head_dim: int
    n_groups: int
    state_size: int
    conv_kernel: int
    chunk_size: int
    eps: float
    conv_bias: bool = True
    proj_bias: bool = False

    @property
    def intermediate(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.intermediate + 2 * self.n_groups * self.state_size


class Mamba2Mixer(nn.Module):
    def __init__(
        self, shape: Mamba2Shape, ctx: KernelContext, prefix: str, quantization: str | None = None
    ) -> None:
        super().__init__()
        if shape.num_heads % shape.n_groups:
            raise ConfigError(
                f"{prefix}: {shape.num_heads} heads are not divisible into {shape.n_groups} groups"
            )
        self.shape = s = shape
        self._build_in_proj(ctx, prefix, quantization)
        f32 = {"dtype": torch.float32, "device": ctx.device}
        self.conv_weight = nn.Parameter(
            torch.empty(s.conv_dim, s.conv_kernel, dtype=ctx.dtype, device=ctx.device), requires_grad=False
        )
        self.conv_bias = (
            nn.Parameter(torch.zeros(s.conv_dim, dtype=ctx.dtype, device=ctx.device), requires_grad=False)
            if s.conv_bias
            else None
        )
        self.dt_bias = nn.Parameter(torch.ones(s.num_heads, **f32), requires_grad=False)
        self.A_log = nn.Parameter(torch.zeros(s.num_heads, **f32), requires_grad=False)
        self.D = nn.Parameter(torch.ones(s.num_heads, **f32), requires_grad=False)
        self._build_norm_out_proj(ctx, prefix, quantization)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        facts = {
            "heads": s.num_heads,
            "head_dim": s.head_dim,
            "state_size": s.state_size,
            "conv_kernel": s.conv_kernel,
        }
        self._conv = ctx.kernel("causal_conv1d", prefix, **facts)
        self._conv_update = ctx.kernel("causal_conv1d_update", prefix, **facts)
        self._scan = ctx.kernel("ssd_chunk_scan", prefix, chunk_size=s.chunk_size, **facts)
        self._step = ctx.kernel("selective_state_update", prefix, **facts)

    def _build_in_proj(self, ctx: KernelContext, prefix: str, quantization: str | None) -> None:
        """in_proj (the tensor-parallel mixer splits it, the norm and out_proj by heads)."""
        s = self.shape
        self.in_proj = Linear(s.hidden_size, s.intermediate + s.conv_dim + s.num_heads, s.proj_bias, ctx,
                              f"{prefix}.in_proj", quantization=quantization)  # fmt: skip

    def _build_norm_out_proj(self, ctx: KernelContext, prefix: str, quantization: str | None) -> None:
        s = self.shape
        self.norm = GatedRMSNorm(s.intermediate, s.intermediate // s.n_groups, s.eps, ctx, f"{prefix}.norm")
        self.out_proj = Linear(
            s.intermediate, s.hidden_size, s.proj_bias, ctx, f"{prefix}.out_proj", quantization=quantization
        )

    def load_param(self, name: str, tensor: torch.Tensor) -> None:
        """Load a checkpoint tensor other than the projections: ``conv1d.weight`` ([C, 1, W] as in Hugging Face),
        ``conv1d.bias``, ``dt_bias``, ``A_log``, ``D`` or ``norm.weight``."""
        target = self.params_by_name(name)
        if name == "conv1d.weight":
            tensor = tensor.reshape(tensor.shape[0], -1)
        if tuple(target.shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{name}: checkpoint shape {tuple(tensor.shape)} does not match the mixer's {tuple(target.shape)}"
            )
        target.data.copy_(tensor)

    def params_by_name(self, name: str) -> torch.Tensor:
        found = {"conv1d.weight": self.conv_weight, "conv1d.bias": self.conv_bias, "dt_bias": self.dt_bias,
                 "A_log": self.A_log, "D": self.D, "norm.weight": self.norm.weight}.get(name)  # fmt: skip
        if found is None:
            raise ConfigError(f"the Mamba2 mixer has no parameter {name!r}")
        return found

    def forward(self, hidden: torch.Tensor, meta: MambaMetadata) -> torch.Tensor:
        if self.state is None:
            raise ConfigError("Mamba2 mixer has no state bound; the engine binds it after profiling memory")
        s = self.shape
        conv_states, ssm_states = self.state
        gate, xbc, dt = self.in_proj(hidden).split([s.intermediate, s.conv_dim, s.num_heads], dim=-1)
        A = -torch.exp(self.A_log)
        y = torch.empty(hidden.shape[0], s.num_heads, s.head_dim, dtype=hidden.dtype, device=hidden.device)
        nd = meta.num_decodes
        if nd:
            idx = meta.state_indices[:nd]
            conv = self._conv_update(
                xbc[:nd].contiguous(), conv_states, self.conv_weight, self.conv_bias, idx, "silu"
            )
            x, B, C = self._split_xbc(conv)
            y[:nd] = self._step(
                ssm_states, x, dt[:nd].contiguous(), A, B, C, self.D, None, self.dt_bias, True, idx
            )
        if hidden.shape[0] > nd:
            qsl = meta.query_start_loc[nd:] - meta.query_start_loc[nd]
            idx, has_init = meta.state_indices[nd:], meta.has_initial_state[nd:]
            conv = self._conv(
                xbc[nd:].contiguous(),
                self.conv_weight,
                self.conv_bias,
                qsl,
                conv_states,
                idx,
                has_init,
                "silu",
            )
            x, B, C = self._split_xbc(conv)
            y[nd:] = self._scan(x, dt[nd:].contiguous(), A, B, C, self.D, self.dt_bias, True, qsl, ssm_states, idx,
                                has_init, s.chunk_size)  # fmt: skip
        normed = self.norm(y.view(hidden.shape[0], s.intermediate), gate.contiguous())
        return self.out_proj(normed)

    def _split_xbc(self, xbc: torch.Tensor):
        s = self.shape
        x, B, C = xbc.split([s.intermediate, s.n_groups * s.state_size, s.n_groups * s.state_size], dim=-1)
        rows = xbc.shape[0]
        return (x.contiguous().view(rows, s.num_heads, s.head_dim), B.contiguous().view(rows, s.n_groups, s.state_size),
                C.contiguous().view(rows, s.n_groups, s.state_size))  # fmt: skip
