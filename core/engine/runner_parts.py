"""RunnerParts: the loaded model on its device, the one input cache planning and decode graphs take.

Built once by the model runner after the weights are loaded; cache planning
(:func:`tessera.engine.cache_plan.plan_caches`) and decode graphs
(:class:`tessera.engine.graphs.DecodeGraphs`) read only this, never the runner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.platform import Platform
from tessera.pluggable_layers.checks import trusted_indices


@dataclass(frozen=True)
class RunnerParts:
    model: torch.nn.Module  # the model with weights loaded; caches are bound to its layers
    platform: Platform
    device: torch.device
    device_index: int
    dtype: torch.dtype
    max_model_len: int

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta) -> torch.Tensor:
        """The model forward over one flat batch (hidden states, one row per token)."""
        with trusted_indices():
            return self.model(input_ids, positions, meta)
