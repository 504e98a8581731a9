"""What a layer needs to choose its kernels: the registry, the platform as data, dtype, device.

Layers call :meth:`KernelContext.kernel` once, at construction; every choice is
recorded (layer, op, kernel, provider) for ``tessera inspect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tessera.pluggable_layers.parallelism import Parallelism
from tessera.pluggable_layers.registry import BoundKernel, KernelRegistry, PlatformFacts


@dataclass(frozen=True)
class KernelChoice:
    layer: str
    op: str
    kernel: str
    provider: str
    graph_safe: bool
    fallback: bool
    weights: str | None = None  # "prepared by X as Y" when the kernel prepares its weights (plugin API 1.2)


@dataclass
class KernelContext:
    registry: KernelRegistry
    platform: PlatformFacts
    dtype: torch.dtype
    device: torch.device
    overrides: Mapping[str, str] = field(default_factory=dict)
    quantization: str | None = None
    parallel: Parallelism = field(default_factory=Parallelism)
    #: how the checkpoint stores its linear weights (a :class:`tessera.pluggable_layers.quant.CheckpointQuant`)
    checkpoint_quant: Any = None
    choices: list[KernelChoice] = field(default_factory=list)
    _bound: dict[tuple, BoundKernel] = field(default_factory=dict)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def kernel(self, op: str, layer: str, dtype: torch.dtype | None = None, **facts: Any) -> BoundKernel:
        """Select and bind the kernel for ``op`` used by ``layer`` (selection is shared per static facts)."""
        dtype_name = str(dtype).removeprefix("torch.") if dtype is not None else self.dtype_name
        key = (op, dtype_name, tuple(sorted(facts.items())))
        if key not in self._bound:
            selection = self.registry.select(op, self.platform, dtype_name, overrides=self.overrides, **facts)
            self._bound[key] = self.registry.bind(selection)
        bound = self._bound[key]
        fallback = bool(bound.selection and bound.selection.fallback)
        self.choices.append(
            KernelChoice(
                layer,
                op,
                bound.kernel.name,
                bound.kernel.provider,
                bound.kernel.graph_safe,
                fallback,
                bound.kernel.weights_line(),
            )
        )
        return bound

    def all_graph_safe(self, outside_graph: tuple[str, ...] = ("sample",)) -> bool:
        """Whether every kernel of the captured forward is graph-safe (ops run outside the graph excluded)."""
        return all(c.graph_safe for c in self.choices if c.op not in outside_graph)
