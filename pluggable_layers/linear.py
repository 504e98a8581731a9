"""Linear layers with Hugging Face weight loaders: plain, fused shards (qkv, gate_up), and FP8.

A ``Linear`` has one weight ``[sum(output_sizes), input_size]``; with several
``shard_names`` (for example ``("q", "k", "v")`` or ``("gate", "up")``) each
checkpoint tensor is copied into its rows by :meth:`Linear.load_shard`. With
``quantization="fp8"`` the weight is loaded in the model dtype, then
:meth:`Linear.finish_loading` quantizes it per output channel to the platform's
fp8 dtype and calls go to ``linear_fp8`` instead of ``linear``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.prepared import PreparedWeights, empty_weight
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel

QUANTIZATIONS = (None, "fp8")


class Linear(PreparedWeights, nn.Module):
    def __init__(
        self,
        input_size: int,
        output_sizes: int | Sequence[int],
        bias: bool,
        ctx: KernelContext,
        prefix: str,
        shard_names: Sequence[str] | None = None,
        quantization: str | None = None,
    ) -> None:
        super().__init__()
        sizes = [output_sizes] if isinstance(output_sizes, int) else list(output_sizes)
        if shard_names is not None and len(shard_names) != len(sizes):
            raise ConfigError(f"{prefix}: {len(shard_names)} shard names for {len(sizes)} output sizes")
        if quantization not in QUANTIZATIONS:
            raise ConfigError(f"{prefix}: quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        self.prefix = prefix
        self.input_size, self.output_sizes = input_size, sizes
        self.shard_names = list(shard_names or [])
        self.quantization = quantization
        self.fp8_dtype = ctx.platform.capabilities.fp8_dtype
        if quantization == "fp8" and not self.fp8_dtype:
            raise ConfigError(
                f"{prefix}: fp8 quantization needs a platform with an fp8 dtype; {ctx.platform.name} has none"
            )
        out = sum(sizes)
        self._dtype, self._device = ctx.dtype, ctx.device
        self.weight = nn.Parameter(
            torch.empty(out, input_size, dtype=ctx.dtype, device=ctx.device), requires_grad=False
        )
        self.bias = (
            nn.Parameter(torch.zeros(out, dtype=ctx.dtype, device=ctx.device), requires_grad=False)
            if bias
            else None
        )
        self.weight_scale: torch.Tensor | None = None
        if quantization == "fp8":
            self._kernel = ctx.kernel(
                "linear_fp8",
                prefix,
                fp8_dtype=self.fp8_dtype,
                in_features=input_size,
                out_features=sum(sizes),
            )
        else:
            self._kernel = ctx.kernel("linear", prefix)

    def shard_rows(self, shard: str) -> slice:
        if shard not in self.shard_names:
            raise ConfigError(f"{self.prefix}: unknown shard {shard!r}; shards are {self.shard_names}")
        i = self.shard_names.index(shard)
        start = sum(self.output_sizes[:i])
        return slice(start, start + self.output_sizes[i])

    def load_shard(self, param_name: str, tensor: torch.Tensor, shard: str | None = None) -> None:
        """Copy a checkpoint tensor into ``weight`` or ``bias`` (into the rows of ``shard`` if given)."""
        if (
            param_name not in ("weight", "bias")
            or not tensor.is_floating_point()
            or tensor.element_size() == 1
        ):
            raise ConfigError(f"{self.prefix}: checkpoint tensor {param_name} ({tensor.dtype}) is quantized, but this "
                              "layer loads unquantized weights; is config.json's quantization_config missing?")  # fmt: skip
        self.unprepare()
        param = getattr(self, param_name)
        target = param.data if shard is None else param.data[self.shard_rows(shard)]
        if tuple(target.shape) != tuple(tensor.shape):
            raise ConfigError(f"{self.prefix}.{param_name}{'[' + shard + ']' if shard else ''}: checkpoint shape "
                              f"{tuple(tensor.shape)} does not match the layer's {tuple(target.shape)}")  # fmt: skip
        target.copy_(tensor)

    def finish_loading(self) -> None:
        """Quantize the loaded weight when the layer is fp8 (idempotent), then let the kernel prepare it."""
        if self.quantization == "fp8" and self.weight.dtype != getattr(torch, self.fp8_dtype):
            q, scale = quantize_per_channel(self.weight.data, getattr(torch, self.fp8_dtype))
            self.weight = nn.Parameter(q, requires_grad=False)
            self.weight_scale = scale
        self.prepare_weights()

    def allocate_checkpoint_weights(self) -> None:
        self.weight = empty_weight((sum(self.output_sizes), self.input_size), self._dtype, self._device)
        self.weight_scale = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantization == "fp8":
            return self._kernel(x, self.weight, self.weight_scale, self.bias)
        return self._kernel(x, self.weight, self.bias)
