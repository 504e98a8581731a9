"""The capturable collectives: selected (graph-safe) only where the platform says its backend's collectives
can be captured, refused with the reason elsewhere; the cuda platform says so, the cpu platform does not.
(Capture itself needs a CUDA device with NCCL: not run here.)"""

from __future__ import annotations

import pytest

from tessera.kernel_registry import build_registry
from tessera.pluggable_layers.collectives import COLLECTIVES, NAME
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.device import Capabilities
from tessera.pluggable_layers.parallelism import Parallelism
from tessera.pluggable_layers.registry import PlatformFacts

CAPTURABLE = PlatformFacts("gpu", Capabilities(dtypes=("float32",), graphs=True, dist_backend="x",
                                               graph_safe_collectives=True))  # fmt: skip
NOT_CAPTURABLE = PlatformFacts("host", Capabilities(dtypes=("float32",), graphs=True, dist_backend="gloo"))


@pytest.mark.parametrize("op", sorted(COLLECTIVES))
def test_a_capturable_backend_selects_the_graph_safe_collective(fresh_discovery, op):
    selection = build_registry().select(op, CAPTURABLE, "float32")
    assert selection.kernel.name == NAME and selection.kernel.graph_safe


@pytest.mark.parametrize("op", sorted(COLLECTIVES))
def test_other_backends_keep_the_reference_and_say_why(fresh_discovery, op):
    selection = build_registry().select(op, NOT_CAPTURABLE, "float32")
    assert selection.kernel.name == "reference" and not selection.kernel.graph_safe
    (refused,) = [c for c in selection.candidates if c.kernel.name == NAME]
    assert refused.verdict == "refused" and "gloo backend's collectives cannot be captured" in refused.reason


def test_a_row_parallel_layer_stays_graph_safe_only_on_a_capturable_backend(fresh_discovery):
    import torch

    from tessera.pluggable_layers.parallel import RowParallelLinear

    def graph_safe_reduce(facts) -> bool:
        ctx = KernelContext(build_registry(), facts, torch.float32, torch.device("cpu"), {},
                            parallel=Parallelism(rank=0, world_size=2))  # fmt: skip
        RowParallelLinear(8, 4, False, ctx, "layers.0.mlp.down_proj")
        return all(c.graph_safe for c in ctx.choices if c.op == "all_reduce") and any(
            c.op == "all_reduce" for c in ctx.choices
        )

    assert graph_safe_reduce(CAPTURABLE) and not graph_safe_reduce(NOT_CAPTURABLE)


def test_the_cpu_platform_does_not_declare_capturable_collectives():
    from tessera.discovery import select_platform

    assert not select_platform("cpu").capabilities(0).graph_safe_collectives  # gloo: no capture
