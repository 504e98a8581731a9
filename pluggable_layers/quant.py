"""Linear layers for pre-quantized checkpoints: 4-bit GPTQ/AWQ (op ``linear_wna16``) and FP8 as stored
(op ``linear_fp8``), plus :func:`make_linear`, which builds the right one for the checkpoint.

The weights are loaded exactly as the checkpoint stores them, shard by shard (a fused qkv or gate_up
layer takes its shards' output columns), then handed once to the kernel's ``prepare`` (plugin API 1.2),
which turns them into the kernel's own layout; only that form is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.prepared import PreparedWeights, empty_weight
from tessera.pluggable_layers.reference.linear_wna16 import WEIGHT_FORMATS, checkpoint_shape


@dataclass(frozen=True)
class CheckpointQuant:
    """How a checkpoint stores its linear weights (read from config.json's ``quantization_config``)."""

    method: (
        str  # "wna16" (4-bit weights, 16-bit activations) or "fp8" (fp8 weights, per-token fp8 activations)
    )
    weight_format: str | None = None  # wna16: gptq, gptq_v2 or awq
    group_size: int = 128  # wna16: input channels per scale, -1 for one group (per output channel)
    source: str = ""  # what config.json said, for messages

    def __post_init__(self) -> None:
        if self.method not in ("wna16", "fp8"):
            raise ConfigError(f"unknown checkpoint quantization method {self.method!r}")
        if self.method == "wna16" and self.weight_format not in WEIGHT_FORMATS:
            raise ConfigError(
                f"wna16 weight_format must be one of {WEIGHT_FORMATS}, got {self.weight_format!r}"
            )


class _ShardedLoad(PreparedWeights, nn.Module):
    """Shared by the quantized layers: output sizes, shard columns, and a record of what was loaded."""

    def _init_shards(self, input_size, output_sizes, bias, ctx, prefix, shard_names) -> None:
        sizes = [output_sizes] if isinstance(output_sizes, int) else list(output_sizes)
        if shard_names is not None and len(shard_names) != len(sizes):
            raise ConfigError(f"{prefix}: {len(shard_names)} shard names for {len(sizes)} output sizes")
        self.prefix, self.input_size, self.output_sizes = prefix, input_size, sizes
        self.shard_names = list(shard_names or [])
        self._dtype, self._device = ctx.dtype, ctx.device
        self.has_bias = bias
        self.loaded: set[tuple[str, str | None]] = set()

    def shard_cols(self, shard: str | None) -> tuple[int, int]:
        if shard is None:
            return 0, sum(self.output_sizes)
        if shard not in self.shard_names:
            raise ConfigError(f"{self.prefix}: unknown shard {shard!r}; shards are {self.shard_names}")
        i = self.shard_names.index(shard)
        start = sum(self.output_sizes[:i])
        return start, start + self.output_sizes[i]

    def _copy(self, name: str, tensor: torch.Tensor, target: torch.Tensor, shard: str | None) -> None:
        if tuple(target.shape) != tuple(tensor.shape):
            raise ConfigError(f"{self.prefix}.{name}{'[' + shard + ']' if shard else ''}: checkpoint shape "
                              f"{tuple(tensor.shape)} does not match the layer's {tuple(target.shape)}")  # fmt: skip
        target.copy_(tensor)
        self.loaded.add((name, shard))

    def check_loaded(self, names: tuple[str, ...]) -> None:
        """Every shard of ``names`` loaded, once anything was (a layer never loaded is seen by its NaNs, or is
        filled by ``load_format="random"``)."""
        if not self.loaded:
            return
        shards = self.shard_names or [None]
        missing = [f"{n}[{s}]" if s else n for n in names for s in shards if (n, s) not in self.loaded]
        if missing:
            raise ConfigError(f"{self.prefix}: the checkpoint lacks {', '.join(missing)}")


class WNA16Linear(_ShardedLoad):
    """A linear layer whose weight is 4-bit (GPTQ or AWQ layout), computed by the ``linear_wna16`` op."""

    def __init__(self, input_size, output_sizes, bias, ctx: KernelContext, prefix, scheme: CheckpointQuant,
                 shard_names: Sequence[str] | None = None) -> None:  # fmt: skip
        super().__init__()
        self._init_shards(input_size, output_sizes, bias, ctx, prefix, shard_names)
        self.weight_format, gs = scheme.weight_format, scheme.group_size
        if gs != -1 and (gs <= 0 or input_size % gs):
            raise ConfigError(f"{prefix}: group size {gs} does not divide the {input_size} input channels")
        self.group_size = input_size if gs == -1 else gs
        self.groups = input_size // self.group_size
        for n in self.output_sizes:
            if n % 8:
                raise ConfigError(f"{prefix}: {n} output channels is not a multiple of 8 (4-bit packing)")
        self.allocate_checkpoint_weights()
        self.bias = empty_weight((sum(self.output_sizes),), ctx.dtype, ctx.device) if bias else None
        self._kernel = ctx.kernel("linear_wna16", prefix, weight_format=self.weight_format)

    def allocate_checkpoint_weights(self) -> None:
        shapes = checkpoint_shape(self.weight_format, self.input_size, sum(self.output_sizes), self.groups)
        self.qweight = empty_weight(shapes["qweight"], torch.int32, self._device)
        self.qzeros = empty_weight(shapes["qzeros"], torch.int32, self._device)
        self.scales = empty_weight(shapes["scales"], self._dtype, self._device)
        self.loaded = {k for k in self.loaded if k[0] == "bias"}

    def load_shard(self, param_name: str, tensor: torch.Tensor, shard: str | None = None) -> None:
        start, end = self.shard_cols(shard)
        if param_name == "g_idx":
            return self._check_g_idx(tensor)
        if param_name == "bias":
            return self._copy("bias", tensor, self.bias.data[start:end], shard)
        if param_name not in ("qweight", "qzeros", "scales"):
            raise ConfigError(f"{self.prefix}: a {self.weight_format} checkpoint has no {param_name!r} tensor here; "
                              "expected qweight, qzeros, scales (and g_idx, bias)")  # fmt: skip
        self.unprepare()
        packed = param_name == "qzeros" or (param_name == "qweight" and self.weight_format == "awq")
        cols = slice(start // 8, end // 8) if packed else slice(start, end)
        self._copy(param_name, tensor, getattr(self, param_name).data[:, cols], shard)

    def _check_g_idx(self, g_idx: torch.Tensor) -> None:
        trivial = torch.arange(self.input_size, device=g_idx.device) // self.group_size
        if tuple(g_idx.shape) != (self.input_size,) or not torch.equal(g_idx.long(), trivial):
            raise ConfigError(f"{self.prefix}: g_idx is not the trivial k // group_size (an act-order, desc_act=true "
                              "checkpoint); Tessera reads GPTQ checkpoints made with desc_act=false only")  # fmt: skip

    def finish_loading(self) -> None:
        if not self._prepared:
            self.check_loaded(("qweight", "qzeros", "scales") + (("bias",) if self.has_bias else ()))
        self.prepare_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._kernel(
            x, self.qweight, self.scales, self.qzeros, self.bias, weight_format=self.weight_format
        )


class Fp8CheckpointLinear(_ShardedLoad):
    """A linear layer whose fp8 weight and scales are loaded as stored (per-tensor or per-channel), computed by
    ``linear_fp8`` (activations quantized per token, dynamically). Per-tensor scales of fused shards become
    per-row scales, so no weight is re-quantized. On a platform whose fp8 dtype is ``float8_e4m3fnuz``
    (ROCm gfx942) the e4m3fn bytes are reinterpreted and the scales doubled (fnuz's bias is one higher)."""

    def __init__(self, input_size, output_sizes, bias, ctx: KernelContext, prefix,
                 shard_names: Sequence[str] | None = None) -> None:  # fmt: skip
        super().__init__()
        self._init_shards(input_size, output_sizes, bias, ctx, prefix, shard_names)
        self.fp8_dtype = ctx.platform.capabilities.fp8_dtype or "float8_e4m3fn"
        if self.fp8_dtype not in ("float8_e4m3fn", "float8_e4m3fnuz"):
            raise ConfigError(
                f"{prefix}: the platform's fp8 dtype {self.fp8_dtype} cannot hold e4m3 checkpoints"
            )
        self.allocate_checkpoint_weights()
        self.bias = empty_weight((sum(self.output_sizes),), ctx.dtype, ctx.device) if bias else None
        self._kernel = ctx.kernel("linear_fp8", prefix, fp8_dtype=self.fp8_dtype, in_features=input_size,
                                  out_features=sum(self.output_sizes))  # fmt: skip

    def allocate_checkpoint_weights(self) -> None:
        n = sum(self.output_sizes)
        self.weight = empty_weight((n, self.input_size), torch.float8_e4m3fn, self._device)
        self.weight_scale = empty_weight((n,), torch.float32, self._device)
        self.loaded = {k for k in self.loaded if k[0] == "bias"}

    def load_shard(self, param_name: str, tensor: torch.Tensor, shard: str | None = None) -> None:
        start, end = self.shard_cols(shard)
        if param_name == "input_scale":
            return None  # a static activation scale: activations are quantized per token instead
        if param_name == "bias":
            return self._copy("bias", tensor, self.bias.data[start:end], shard)
        self.unprepare()
        if param_name == "weight":
            if tensor.dtype != torch.float8_e4m3fn:
                raise ConfigError(
                    f"{self.prefix}.weight is {tensor.dtype}; fp8 checkpoints must store float8_e4m3fn"
                )
            return self._copy("weight", tensor, self.weight.data[start:end], shard)
        if param_name != "weight_scale":
            raise ConfigError(f"{self.prefix}: an fp8 checkpoint has no {param_name!r} tensor here")
        scale = tensor.float().reshape(-1)
        if scale.numel() == 1:  # per tensor
            scale = scale.expand(end - start)
        self._copy("weight_scale", scale, self.weight_scale.data[start:end], shard)

    def finish_loading(self) -> None:
        if self._prepared:
            return
        self.check_loaded(("weight", "weight_scale") + (("bias",) if self.has_bias else ()))
        if self.fp8_dtype == "float8_e4m3fnuz" and self.weight.dtype == torch.float8_e4m3fn:
            bits = self.weight.data.view(torch.int8)
            bits = torch.where(bits == -128, torch.zeros_like(bits), bits)  # -0 in e4m3fn is NaN in fnuz
            self.weight = nn.Parameter(bits.view(torch.float8_e4m3fnuz), requires_grad=False)
            self.weight_scale = nn.Parameter(self.weight_scale.data * 2.0, requires_grad=False)
        self.prepare_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._kernel(x, self.weight, self.weight_scale, self.bias)


def make_linear(input_size: int, output_sizes: int | Sequence[int], bias: bool, ctx: KernelContext, prefix: str,
                shard_names: Sequence[str] | None = None, quantization: str | None = None) -> nn.Module:  # fmt: skip
    """The linear layer for the checkpoint: :class:`Linear` unless ``ctx.checkpoint_quant`` says otherwise."""
    scheme: CheckpointQuant | None = ctx.checkpoint_quant
    if scheme is None:
        return Linear(
            input_size, output_sizes, bias, ctx, prefix, shard_names=shard_names, quantization=quantization
        )
    if quantization is not None:
        raise ConfigError(f"quantization={quantization!r} quantizes a 16-bit checkpoint on load, but this checkpoint "
                          f"is quantized already ({scheme.source}); leave quantization unset")  # fmt: skip
    if scheme.method == "wna16":
        return WNA16Linear(input_size, output_sizes, bias, ctx, prefix, scheme, shard_names=shard_names)
    return Fp8CheckpointLinear(input_size, output_sizes, bias, ctx, prefix, shard_names=shard_names)
