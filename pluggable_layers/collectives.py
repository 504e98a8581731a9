"""Capturable collectives: the torch.distributed calls of the references, registered ``graph_safe``.

A collective can be captured into a device graph only where the platform's backend supports it (the
cuda plugin's does; gloo does not). The platform says so with ``Capabilities.graph_safe_collectives``; on such a
platform these kernels outrank the references, so decode graphs stay on under tensor parallelism. On
every other platform they are refused with the reason, and ``kernels explain all_reduce`` shows it.
"""

from __future__ import annotations

from tessera.pluggable_layers.kernel_types import PRIORITY_PORTABLE, KernelQuery
from tessera.pluggable_layers.reference.all_gather import all_gather
from tessera.pluggable_layers.reference.all_reduce import all_reduce
from tessera.pluggable_layers.reference.reduce_scatter import reduce_scatter

NAME = "dist_capturable"
COLLECTIVES = {"all_reduce": all_reduce, "all_gather": all_gather, "reduce_scatter": reduce_scatter}


def capturable_backend(query: KernelQuery) -> str | None:
    """None where the platform's distributed backend can be captured into a graph, else why not."""
    caps = query.platform.capabilities
    if caps.graph_safe_collectives:
        return None
    return (f"the {caps.dist_backend} backend's collectives cannot be captured into a graph "
            "(Capabilities.graph_safe_collectives is off)")  # fmt: skip


def register_collectives(registry, provider: str) -> None:
    """Register the capturable collectives for every platform; ``supports`` keeps them to capturable backends."""
    for op, fn in COLLECTIVES.items():
        registry.register(
            op, fn, name=NAME, platforms=None, priority=PRIORITY_PORTABLE, provider=provider, graph_safe=True,
            supports=capturable_backend, description="torch.distributed collective, captured into graphs",
            features=(),
        )  # fmt: skip
