"""The sampling layer: per-row temperature, top-k and top-p through the ``sample`` op.

Two selections of the op are made at construction: one for batches that use
none of the op's 1.1 features (any kernel, a 1.0 one included, can serve them),
and one with every feature asked for (penalties, logit bias, min_p, logprobs),
which refuses kernels that do not declare them. A batch goes to the second one
only when it uses a feature, so a fast 1.0 kernel keeps serving plain batches.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.ops import MAX_LOGPROBS

FULL_FACTS = {"penalties": True, "logit_bias": True, "min_p": True, "logprobs": MAX_LOGPROBS}


class Sampler(nn.Module):
    def __init__(self, ctx: KernelContext, prefix: str = "sampler") -> None:
        super().__init__()
        self._kernel = ctx.kernel("sample", prefix, dtype=torch.float32)
        self._full = ctx.kernel("sample", f"{prefix}.features", dtype=torch.float32, **FULL_FACTS)

    def forward(self, logits, temperature, top_k, top_p, exponential_noise=None, **features) -> torch.Tensor:
        """Token ids, or with ``num_logprobs`` in ``features`` the op's tuple; None features are dropped."""
        features = {k: v for k, v in features.items() if v is not None}
        kernel = self._full if features else self._kernel
        return kernel(logits.float(), temperature, top_k, top_p, exponential_noise, **features)
