"""Reference reduce_scatter: the sum of ``x`` over the ranks, split in ``W`` chunks along ``dim``; rank r
gets chunk r.

``x``'s size along ``dim`` must divide by the world size. Written as an all_reduce followed by a
slice, which every backend offers (gloo has no native reduce_scatter); a vendor kernel does it in
one pass. ``group`` is a ``torch.distributed`` process group (None: the default group).
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, fail


def reduce_scatter(x: torch.Tensor, group=None, dim: int = -1) -> torch.Tensor:
    import torch.distributed as dist

    check_dtype("reduce_scatter", "x", x, FLOATS)
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if x.shape[dim] % world:
        fail(
            "reduce_scatter", f"x has {x.shape[dim]} elements along dim {dim}, not divisible by {world} ranks"
        )
    total = x.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total.chunk(world, dim=dim)[rank].contiguous()
