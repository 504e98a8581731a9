"""Tensor- and expert-parallel MoE, and the Mamba2 mixer split by heads.

MoE, tensor-parallel: every rank holds every expert's slice of the intermediate dimension
(``I / W`` rows of gate and up, the same columns of down); partial outputs are all-reduced.
MoE, expert-parallel: rank r holds whole experts ``[r * E / W, (r + 1) * E / W)``; the router runs
on every rank over all experts, a token's weight for an expert held elsewhere is zeroed (its id
mapped to a local expert, so the experts kernel sees ids in range), and the outputs are all-reduced.

Mamba2, split by heads: each rank holds ``H / W`` heads of x, the gate, dt, A, D and the gated norm,
and ``G / W`` groups of B and C (all of them replicated when there is one group, ``G = 1``); the
norm's group spans every rank then, so its mean of squares is all-reduced. out_proj is row-parallel.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.mamba import Mamba2Mixer, Mamba2Shape
from tessera.pluggable_layers.moe import FusedMoE
from tessera.pluggable_layers.norm import GatedRMSNorm
from tessera.pluggable_layers.parallel import (
    ColumnParallelLinear,
    RowParallelLinear,
    read_segments,
    segments,
    take,
)


class ParallelFusedMoE(FusedMoE):
    reads_slices = True

    def __init__(self, num_experts: int, top_k: int, hidden_size: int, intermediate_size: int, ctx: KernelContext,
                 prefix: str, renormalize: bool = True, scoring: str = "softmax", quantization: str | None = None) -> None:  # fmt: skip
        par = ctx.parallel
        self.parallel, self.full_experts, self.full_intermediate = par, num_experts, intermediate_size
        ep = par.expert_parallel
        total = num_experts if ep else intermediate_size
        if total % par.world_size:
            what = f"{num_experts} experts" if ep else f"an expert intermediate size of {intermediate_size}"
            raise ConfigError(f"{prefix}: {what} cannot be split over {par.world_size} ranks; choose a "
                              f"tensor_parallel_size that divides it{'' if ep else ' or enable expert parallelism'}")  # fmt: skip
        local_e = num_experts // par.world_size if ep else num_experts
        local_i = intermediate_size if ep else intermediate_size // par.world_size
        super().__init__(
            local_e, top_k, hidden_size, local_i, ctx, prefix, renormalize, scoring, quantization
        )
        self.first_expert = par.rank * local_e if ep else 0
        if ep:  # the router picks among all experts
            self._route = ctx.kernel(
                "moe_route", prefix, num_experts=num_experts, top_k=top_k, dtype=ctx.dtype
            )
        self._reduce = ctx.kernel("all_reduce", prefix, world_size=par.world_size)

    def load_expert(self, expert: int, shard: str, tensor) -> None:
        if self.parallel.expert_parallel:
            local = expert - self.first_expert
            if 0 <= local < self.num_experts:
                super().load_expert(local, shard, take(tensor, 0, 0, tensor.shape[0]))
            elif not 0 <= expert < self.full_experts:
                super().load_expert(expert, shard, tensor)  # raises: no such expert
            return
        inter, r = self.intermediate_size, self.parallel.rank
        dim = 1 if shard == "down" else 0
        super().load_expert(expert, shard, take(tensor, dim, r * inter, (r + 1) * inter))

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        weights, ids = self._route(router_logits, self.top_k, self.renormalize, self.scoring)
        if self.parallel.expert_parallel:
            local = ids - self.first_expert
            here = (local >= 0) & (local < self.num_experts)
            weights, ids = weights * here, torch.where(here, local, 0).to(ids.dtype)
        out = self._experts(x, self.w13, self.w2, weights, ids, self.w13_scale, self.w2_scale)
        return self._reduce(out, self.parallel.group)


class AllReduceGatedRMSNorm(nn.Module):
    """The gated RMS norm of one group spread over every rank: the mean of squares is all-reduced."""

    def __init__(self, local: int, total: int, eps: float, ctx: KernelContext, prefix: str) -> None:
        super().__init__()
        self.total, self.eps, self.parallel = total, eps, ctx.parallel
        self.weight = nn.Parameter(torch.ones(local, dtype=ctx.dtype, device=ctx.device), requires_grad=False)
        self._reduce = ctx.kernel("all_reduce", prefix, world_size=ctx.parallel.world_size)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        g = x.float()
        if z is not None:
            g = g * nn.functional.silu(z.float())
        squares = self._reduce(g.pow(2).sum(-1, keepdim=True), self.parallel.group)
        return (g * torch.rsqrt(squares / self.total + self.eps) * self.weight.float()).to(x.dtype)


class ParallelMamba2Mixer(Mamba2Mixer):
    reads_slices = True

    def __init__(
        self, shape: Mamba2Shape, ctx: KernelContext, prefix: str, quantization: str | None = None
    ) -> None:
        par = ctx.parallel
        heads, groups = shape.num_heads, shape.n_groups
        if heads % par.world_size or not (groups % par.world_size == 0 or groups == 1):
            raise ConfigError(f"{prefix}: a Mamba2 mixer of {heads} heads in {groups} groups cannot be split over "
                              f"{par.world_size} ranks (heads must divide by it; groups too, unless there is one)")  # fmt: skip
        self.full, self.parallel = shape, par
        local = dataclasses.replace(shape, num_heads=heads // par.world_size, n_groups=par.local(groups))
        super().__init__(local, ctx, prefix, quantization)

    def _segments(self, with_gate_dt: bool) -> list[tuple[int, int]]:
        f = self.full
        gn = f.n_groups * f.state_size
        sizes, units = [f.intermediate, gn, gn], [f.num_heads, f.n_groups, f.n_groups]
        if with_gate_dt:
            sizes, units = [f.intermediate, *sizes, f.num_heads], [f.num_heads, *units, f.num_heads]
        return segments(sizes, units, self.parallel)

    def _build_in_proj(self, ctx: KernelContext, prefix: str, quantization: str | None) -> None:
        f = self.full
        gn = f.n_groups * f.state_size
        self.in_proj = ColumnParallelLinear(f.hidden_size, [f.intermediate, f.intermediate, gn, gn, f.num_heads],
                                            f.proj_bias, ctx, f"{prefix}.in_proj", quantization=quantization,
                                            units=[f.num_heads, f.num_heads, f.n_groups, f.n_groups, f.num_heads])  # fmt: skip

    def _build_norm_out_proj(self, ctx: KernelContext, prefix: str, quantization: str | None) -> None:
        s, f = self.shape, self.full
        if f.n_groups == 1 and self.parallel.sharded:
            self.norm = AllReduceGatedRMSNorm(s.intermediate, f.intermediate, s.eps, ctx, f"{prefix}.norm")
        else:
            self.norm = GatedRMSNorm(
                s.intermediate, f.intermediate // f.n_groups, s.eps, ctx, f"{prefix}.norm"
            )
        self.out_proj = RowParallelLinear(f.intermediate, f.hidden_size, f.proj_bias, ctx, f"{prefix}.out_proj",
                                          quantization=quantization, units=f.num_heads)  # fmt: skip

    def load_param(self, name: str, tensor) -> None:
        r, s = self.parallel.rank, self.shape
        if name.startswith("conv1d."):
            tensor = read_segments(tensor, 0, self._segments(with_gate_dt=False))
        elif name == "norm.weight":
            tensor = take(tensor, 0, r * s.intermediate, (r + 1) * s.intermediate)
        else:  # dt_bias, A_log, D: one per head
            tensor = take(tensor, 0, r * s.num_heads, (r + 1) * s.num_heads)
        super().load_param(name, tensor)


def fused_moe(*args, **kwargs) -> FusedMoE:
    """The MoE layer for the context's parallelism (the plain one on a single rank)."""
    ctx = args[4] if len(args) > 4 else kwargs["ctx"]
    return (ParallelFusedMoE if ctx.parallel.sharded else FusedMoE)(*args, **kwargs)


def mamba2_mixer(
    shape: Mamba2Shape, ctx: KernelContext, prefix: str, quantization: str | None = None
) -> Mamba2Mixer:
    return (ParallelMamba2Mixer if ctx.parallel.sharded else Mamba2Mixer)(shape, ctx, prefix, quantization)
