"""Reference all_gather: every rank's ``x`` concatenated along ``dim`` in rank order, through torch.distributed.

Every rank passes a tensor of the same shape and dtype; the result has ``W`` times its size along
``dim`` and is the same on every rank (exact: values are copied, never summed). ``group`` is a
``torch.distributed`` process group (None: the default group).
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype


def all_gather(x: torch.Tensor, group=None, dim: int = -1) -> torch.Tensor:
    import torch.distributed as dist

    check_dtype("all_gather", "x", x, FLOATS)
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    world = dist.get_world_size(group)
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)
