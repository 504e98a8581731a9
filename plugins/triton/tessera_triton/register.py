"""Registration of the pack's kernels: every platform whose capabilities report ``triton_backend``.

Triton is imported here, when a registry is built, never at discovery. Without an
importable Triton the pack registers nothing and says so in the log.
"""

from __future__ import annotations

import importlib
import logging
import os

from tessera.pluggable_layers.registry import PRIORITY_PORTABLE
from tessera_triton.common import requires_triton

log = logging.getLogger("tessera.triton")

# op -> (module, launcher, tune-inputs function)
KERNELS = {
    "rms_norm": ("rms_norm", "rms_norm", "tune_inputs"),
    "add_rms_norm": ("rms_norm", "add_rms_norm", "add_tune_inputs"),
    "silu_and_mul": ("silu_and_mul", "silu_and_mul", "tune_inputs"),
    "rotary_embedding": ("rotary_embedding", "rotary_embedding", "tune_inputs"),
    "kv_cache_write": ("kv_cache_write", "kv_cache_write", "tune_inputs"),
    "paged_attention": ("paged_attention", "paged_attention", "tune_inputs"),
    "sample": ("sample", "sample", "tune_inputs"),
    "moe_route": ("moe_route", "moe_route", "tune_inputs"),
    "moe_experts": ("moe_experts", "moe_experts", "tune_inputs"),
    "causal_conv1d": ("causal_conv1d", "causal_conv1d", "tune_inputs"),
    "causal_conv1d_update": ("causal_conv1d", "causal_conv1d_update", "update_tune_inputs"),
    "ssd_chunk_scan": ("ssd_chunk_scan", "ssd_chunk_scan", "tune_inputs"),
    "selective_state_update": ("selective_state_update", "selective_state_update", "tune_inputs"),
    "gated_rms_norm": ("gated_rms_norm", "gated_rms_norm", "tune_inputs"),
    "linear_wna16": ("linear_wna16", "linear_wna16", "tune_inputs"),
    "moe_experts_wna16": ("moe_experts_wna16", "moe_experts_wna16", "tune_inputs"),
}
# ops whose module holds more than one kernel name their space and key explicitly
SPACES = {"causal_conv1d_update": ("UPDATE_CONFIG_SPACE", "UPDATE_SHAPE_KEY")}
#: the head-major KV pair (plugin API 1.2): triton_<op>_hnd, one rank below the token-major pair until a
#: platform's measurements say otherwise; op -> (module, launcher, tune-inputs function, shape key)
HEAD_MAJOR = {
    "kv_cache_write": ("kv_cache_write", "kv_cache_write_hnd", "tune_inputs_hnd", "HND_SHAPE_KEY"),
    "paged_attention": ("paged_attention", "paged_attention_hnd", "tune_inputs_hnd", "HND_SHAPE_KEY"),
}


# sample reads top_k / top_p on the host to decide whether to sort: not capturable
NOT_GRAPH_SAFE = {"sample"}


def kernel_name(op: str) -> str:
    return f"triton_{op}"


def use_persistent_cache() -> None:
    """Compiled kernels go to ``<tessera cache>/triton`` (kept across runs) unless TRITON_CACHE_DIR is set.

    Set before Triton compiles anything; Triton reads the variable when it writes or looks up a kernel."""
    from tessera.paths import cache_dir

    if not os.environ.get("TRITON_CACHE_DIR"):
        os.environ["TRITON_CACHE_DIR"] = str(cache_dir() / "triton")


def register_all(registry) -> None:
    """Register every kernel of the pack (triton_<op>) above the references."""
    use_persistent_cache()
    try:
        importlib.import_module("triton")
    except ImportError as exc:
        log.info("tessera-triton: Triton is not importable (%s); no Triton kernels registered", exc)
        return
    for op, (module_name, fn_name, inputs_name) in KERNELS.items():
        module = importlib.import_module(f"tessera_triton.kernels.{module_name}")
        space, key = SPACES.get(op, ("CONFIG_SPACE", "SHAPE_KEY"))
        registry.register(
            op, getattr(module, fn_name), name=kernel_name(op), priority=PRIORITY_PORTABLE,
            supports=requires_triton, graph_safe=op not in NOT_GRAPH_SAFE, config_space=getattr(module, space),
            shape_key=getattr(module, key),
            tune_inputs=getattr(module, inputs_name), description=(module.__doc__ or "").strip().splitlines()[0],
            features=getattr(module, "FEATURES", ()), prepare=getattr(module, "prepare", None),
            prepared_layout=getattr(module, "PREPARED_LAYOUT", ""),
        )  # fmt: skip
    for op, (module_name, fn_name, inputs_name, key) in HEAD_MAJOR.items():
        module = importlib.import_module(f"tessera_triton.kernels.{module_name}")
        fn = getattr(module, fn_name)
        registry.register(
            op, fn, name=f"{kernel_name(op)}_hnd", priority=PRIORITY_PORTABLE - 1, supports=requires_triton,
            config_space=module.CONFIG_SPACE, shape_key=getattr(module, key), tune_inputs=getattr(module, inputs_name),
            description=(fn.__doc__ or "").strip().splitlines()[0], kv_layout="hnd",
        )  # fmt: skip
