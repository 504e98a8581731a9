"""Tensor-parallel layers: column- and row-parallel Linear, vocab-parallel embedding and LM head.

Each rank holds a slice of the weight and reads only that slice from the checkpoint: a checkpoint
tensor is a torch tensor or a lazy safetensors slice (anything with ``shape`` and ``[slices]``), and
:func:`take` indexes it. Layers with ``reads_slices = True`` receive such lazy tensors from the
loader; everything else gets whole tensors. Communication goes through the collective ops
(``all_reduce``, ``all_gather``), so a platform can ship faster ones.

- Column-parallel: the output rows are split. A fused weight (qkv, gate_up, the Mamba in_proj) is a
  list of segments, each split on its own; a segment of fewer indivisible units than ranks (kv heads
  under GQA, Mamba groups) is replicated, each rank holding the unit its part of the others needs.
- Row-parallel: the input columns are split; partial outputs are summed with ``all_reduce``. Rank 0
  holds the bias, the others zeros, so the sum adds it once.
- Vocab-parallel: the vocabulary is padded to a multiple of the world size; rank r holds rows
  ``[r * V_pad / W, (r + 1) * V_pad / W)``, padding rows zero. The embedding masks ids outside its
  range and all-reduces; the LM head all-gathers the logits and drops the padding.

The factories return the plain layers on a single rank, so unsharded models are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.parallelism import Parallelism
from tessera.pluggable_layers.quant import make_linear


def take(t, dim: int, start: int, stop: int) -> torch.Tensor:
    """Elements ``[start, stop)`` of checkpoint tensor ``t`` along ``dim`` (a lazy slice reads only those)."""
    return t[tuple(slice(start, stop) if d == dim else slice(None) for d in range(len(t.shape)))]


def segments(sizes: Sequence[int], units: Sequence[int], par: Parallelism) -> list[tuple[int, int]]:
    """(start in the full tensor, length) of this rank's part of each segment of a fused dimension."""
    out, offset = [], 0
    for size, u in zip(sizes, units, strict=True):
        local = size // par.parts(u)
        out.append((offset + par.part(u) * local, local))
        offset += size
    return out


def read_segments(t, dim: int, segs: list[tuple[int, int]]) -> torch.Tensor:
    parts = [take(t, dim, start, start + n) for start, n in segs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def check_split(prefix: str, size: int, units: int, par: Parallelism, what: str = "output") -> None:
    parts = par.parts(units)
    if units % parts or size % units or par.world_size % parts:
        raise ConfigError(f"{prefix}: {what} of {size} ({units} units) cannot be split over {par.world_size} ranks; "
                          "choose a tensor_parallel_size that divides it (or that it divides)")  # fmt: skip


class ColumnParallelLinear(Linear):
    """Output rows split over the ranks, segment by segment (``units``: indivisible units per segment)."""

    reads_slices = True

    def __init__(self, input_size: int, output_sizes: int | Sequence[int], bias: bool, ctx: KernelContext, prefix: str,
                 shard_names: Sequence[str] | None = None, quantization: str | None = None,
                 units: Sequence[int] | None = None) -> None:  # fmt: skip
        sizes = [output_sizes] if isinstance(output_sizes, int) else list(output_sizes)
        units = list(units) if units is not None else sizes
        par = ctx.parallel
        for size, u in zip(sizes, units, strict=True):
            check_split(prefix, size, u, par)
        local = [size // par.parts(u) for size, u in zip(sizes, units, strict=True)]
        super().__init__(
            input_size, local, bias, ctx, prefix, shard_names=shard_names, quantization=quantization
        )
        self.full_sizes, self.units, self.parallel = sizes, units, par

    def load_shard(self, param_name: str, tensor, shard: str | None = None) -> None:
        if shard is None:  # one checkpoint tensor holds every segment
            return super().load_shard(
                param_name, read_segments(tensor, 0, segments(self.full_sizes, self.units, self.parallel))
            )
        self.shard_rows(shard)  # an unknown shard raises here
        i = self.shard_names.index(shard)
        (start, n), = segments([self.full_sizes[i]], [self.units[i]], self.parallel)  # fmt: skip
        return super().load_shard(param_name, take(tensor, 0, start, start + n), shard)


class RowParallelLinear(Linear):
    """Input columns split over the ranks; the partial products are summed with ``all_reduce``."""

    reads_slices = True

    def __init__(self, input_size: int, output_size: int, bias: bool, ctx: KernelContext, prefix: str,
                 quantization: str | None = None, units: int | None = None) -> None:  # fmt: skip
        par = ctx.parallel
        u = units or input_size
        if u % par.world_size or input_size % u:
            raise ConfigError(f"{prefix}: input of {input_size} ({u} units) cannot be split over {par.world_size} "
                              "ranks; choose a tensor_parallel_size that divides it")  # fmt: skip
        super().__init__(
            input_size // par.world_size, output_size, bias, ctx, prefix, quantization=quantization
        )
        self.parallel = par
        self._reduce = ctx.kernel("all_reduce", prefix, world_size=par.world_size)

    def load_shard(self, param_name: str, tensor, shard: str | None = None) -> None:
        if param_name == "bias":
            full = take(tensor, 0, 0, tensor.shape[0])
            return super().load_shard(
                "bias", full if self.parallel.rank == 0 else torch.zeros_like(full), shard
            )
        start = self.parallel.rank * self.input_size
        return super().load_shard(param_name, take(tensor, 1, start, start + self.input_size), shard)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduce(super().forward(x), self.parallel.group)


class VocabRange:
    """This rank's rows of a vocabulary padded to a multiple of the world size."""

    def __init__(self, vocab: int, par: Parallelism) -> None:
        self.vocab = vocab
        self.padded = -(-vocab // par.world_size) * par.world_size
        self.per_rank = self.padded // par.world_size
        self.start = par.rank * self.per_rank
        self.stop = min(self.start + self.per_rank, vocab)  # rows past it are padding

    def load(self, weight: torch.Tensor, tensor, prefix: str) -> None:
        if tuple(tensor.shape) != (self.vocab, weight.shape[1]):
            raise ConfigError(
                f"{prefix}: checkpoint shape {tuple(tensor.shape)} != ({self.vocab}, {weight.shape[1]})"
            )
        with torch.no_grad():
            weight.zero_()
            if self.stop > self.start:
                weight[: self.stop - self.start].copy_(take(tensor, 0, self.start, self.stop))


class VocabParallelEmbedding(nn.Module):
    reads_slices = True

    def __init__(self, vocab: int, hidden: int, ctx: KernelContext, prefix: str) -> None:
        super().__init__()
        self.prefix, self.parallel, self.range = prefix, ctx.parallel, VocabRange(vocab, ctx.parallel)
        self.weight = nn.Parameter(torch.empty(self.range.per_rank, hidden, dtype=ctx.dtype, device=ctx.device),
                                   requires_grad=False)  # fmt: skip
        self._reduce = ctx.kernel("all_reduce", prefix, world_size=ctx.parallel.world_size)

    def load_weight(self, tensor) -> None:
        self.range.load(self.weight.data, tensor, self.prefix)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.range.start
        inside = (local >= 0) & (local < self.range.per_rank)
        out = nn.functional.embedding(torch.where(inside, local, 0), self.weight)
        return self._reduce(out.masked_fill_(~inside[:, None], 0.0), self.parallel.group)


class ParallelLMHead(Linear):
    """The LM head split over the (padded) vocabulary; logits all-gathered, padding dropped."""

    reads_slices = True

    def __init__(self, hidden: int, vocab: int, ctx: KernelContext, prefix: str) -> None:
        self.range = VocabRange(vocab, ctx.parallel)
        super().__init__(hidden, self.range.per_rank, False, ctx, prefix)
        self.parallel = ctx.parallel
        self._gather = ctx.kernel("all_gather", prefix, world_size=ctx.parallel.world_size)

    def load_weight(self, tensor) -> None:
        self.range.load(self.weight.data, tensor, self.prefix)

    def load_shard(self, param_name: str, tensor, shard: str | None = None) -> None:
        self.load_weight(tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gather(super().forward(x), self.parallel.group, -1)[..., : self.range.vocab]


# -- factories: the plain layer on one rank ------------------------------------------------------
def refuse_quantized_checkpoint(ctx: KernelContext, prefix: str) -> None:
    if ctx.checkpoint_quant is not None:
        raise ConfigError(f"{prefix}: a quantized checkpoint ({ctx.checkpoint_quant.source}) cannot be split over "
                          "ranks yet; run it with tensor_parallel_size=1")  # fmt: skip


def column_linear(input_size, output_sizes, bias, ctx: KernelContext, prefix, shard_names=None, quantization=None,
                  units=None) -> Linear:  # fmt: skip
    if not ctx.parallel.sharded:
        return make_linear(
            input_size, output_sizes, bias, ctx, prefix, shard_names=shard_names, quantization=quantization
        )
    refuse_quantized_checkpoint(ctx, prefix)
    return ColumnParallelLinear(input_size, output_sizes, bias, ctx, prefix, shard_names, quantization, units)


def row_linear(
    input_size, output_size, bias, ctx: KernelContext, prefix, quantization=None, units=None
) -> Linear:
    if not ctx.parallel.sharded:
        return make_linear(input_size, output_size, bias, ctx, prefix, quantization=quantization)
    refuse_quantized_checkpoint(ctx, prefix)
    return RowParallelLinear(input_size, output_size, bias, ctx, prefix, quantization, units)


def vocab_embedding(vocab: int, hidden: int, ctx: KernelContext, prefix: str) -> nn.Module:
    if not ctx.parallel.sharded:
        embedding = nn.Embedding(vocab, hidden, dtype=ctx.dtype, device=ctx.device)
        embedding.weight.requires_grad_(False)
        return embedding
    return VocabParallelEmbedding(vocab, hidden, ctx, prefix)


def lm_head(hidden: int, vocab: int, ctx: KernelContext, prefix: str) -> Linear:
    if not ctx.parallel.sharded:
        return Linear(hidden, vocab, False, ctx, prefix)
    return ParallelLMHead(hidden, vocab, ctx, prefix)
