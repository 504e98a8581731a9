"""Registration of tessera-cpu's torch-native kernels, above the references, for the cpu platform."""

from __future__ import annotations

import functools
import sys

from tessera.pluggable_layers.registry import PRIORITY_PORTABLE

#: the KV-cache ops also come head-major (plugin API 1.2), one rank below the token-major pair, so
#: `TESSERA_KERNELS=paged_attention=cpu_torch_paged_attention_hnd` runs the engine in that layout
HEAD_MAJOR = ("paged_attention", "kv_cache_write")


def register_all(registry) -> None:
    from tessera_cpu.kernels import elementwise, moe_experts, paged_attention, positional, sample

    table = {
        "rms_norm": elementwise.rms_norm,
        "add_rms_norm": elementwise.add_rms_norm,
        "silu_and_mul": elementwise.silu_and_mul,
        "linear": elementwise.linear,
        "paged_attention": paged_attention.paged_attention,
        "moe_experts": moe_experts.moe_experts,
        "sample": sample.sample,
        "rotary_embedding": positional.rotary_embedding,
        "kv_cache_write": positional.kv_cache_write,
    }
    for op, fn in table.items():
        description = (sys.modules[fn.__module__].__doc__ or "torch-native").strip().splitlines()[0]
        registry.register(
            op, fn, name=f"cpu_torch_{op}", platforms=("cpu",), priority=PRIORITY_PORTABLE, graph_safe=False,
            description=description, features=sample.FEATURES if op == "sample" else (),
        )  # fmt: skip
        if op in HEAD_MAJOR:
            registry.register(
                op, functools.partial(fn, kv_layout="hnd"), name=f"cpu_torch_{op}_hnd", platforms=("cpu",),
                priority=PRIORITY_PORTABLE - 1, graph_safe=False, description=f"{description} (head-major KV blocks)",
                kv_layout="hnd",
            )  # fmt: skip
    from tessera_cpu.kernels import linear_wna16, moe_experts_wna16

    registry.register(
        "moe_experts_wna16", moe_experts_wna16.moe_experts_wna16, name="cpu_torch_moe_experts_wna16",
        platforms=("cpu",), priority=PRIORITY_PORTABLE, graph_safe=False,
        description=moe_experts_wna16.__doc__.strip().splitlines()[0], prepare=moe_experts_wna16.prepare,
        prepared_layout=moe_experts_wna16.PREPARED_LAYOUT,
    )  # fmt: skip
    registry.register(
        "linear_wna16", linear_wna16.linear_wna16, name="cpu_torch_linear_wna16", platforms=("cpu",),
        priority=PRIORITY_PORTABLE, graph_safe=False, description=linear_wna16.__doc__.strip().splitlines()[0],
        prepare=linear_wna16.prepare, prepared_layout=linear_wna16.PREPARED_LAYOUT,
    )  # fmt: skip
