"""Reference all_reduce: the sum of ``x[T, H]`` over the ranks of ``group``, through torch.distributed.

``group`` is a ``torch.distributed`` process group (None: the default group) on the platform's
backend (``Capabilities.dist_backend``: gloo on the CPU, nccl on NVIDIA, ...). Every rank calls it
with a tensor of the same shape and dtype and gets the same sum; ``x`` is reduced in place and
returned (the layer passes a tensor it owns). A world of one rank returns ``x`` untouched.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype


def all_reduce(x: torch.Tensor, group=None) -> torch.Tensor:
    import torch.distributed as dist

    check_dtype("all_reduce", "x", x, FLOATS)
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    if not x.is_contiguous():
        x = x.contiguous()
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x
