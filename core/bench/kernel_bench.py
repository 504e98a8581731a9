"""``tessera bench kernels``: each op's selected kernel at the shapes that matter, with the floor
(bytes over the measured copy bandwidth, FLOPs over the measured matmul rate) and a torch peer timed
in the same run. Each kernel's output is checked against the peer (or the reference) first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tessera.pluggable_layers.measure import median_ms, median_ms_graph


@dataclass
class BenchCase:
    op: str
    label: str
    make: Callable[[torch.device, torch.dtype, torch.Generator], dict[str, Any]]  # kernel kwargs
    bytes: Callable[[dict], float]
    flops: Callable[[dict], float] = lambda kw: 0.0
    peers: dict[str, Callable[[dict], Callable[[], Any]]] = field(default_factory=dict)
    check: Callable[[Any, dict], float] | None = None  # normalized_error vs an independent result
    facts: dict[str, Any] = field(default_factory=dict)
    dtype: torch.dtype = torch.bfloat16
    copies: int = 1
    #: for ops that update state in place: keeps what the check needs before the first call
    before: Callable[[dict], Any] | None = None
    #: (unit, count) of work items per call, reported as items per second (e.g. tokens)
    items: tuple[str, Callable[[dict], float]] | None = None


def run_case(case: BenchCase, registry, facts, platform, device, limits: dict, iters: int = 20) -> dict:
    from tessera.pluggable_layers.checks import trusted_indices

    g = torch.Generator(device=device).manual_seed(0)
    inputs = [case.make(device, case.dtype, g) for _ in range(case.copies)]
    selection = registry.select(case.op, facts, str(case.dtype).removeprefix("torch."), **case.facts)
    kernel = registry.bind(selection)
    row = {"op": case.op, "case": case.label, "kernel": kernel.name, "provider": kernel.kernel.provider}
    with trusted_indices():
        kept = case.before(inputs[0]) if case.before is not None else None
        out = kernel(**inputs[0])
        platform.synchronize()
        if case.check is not None:
            row["check_error"] = (
                case.check(out, inputs[0], kept) if case.before else case.check(out, inputs[0])
            )
        calls = [lambda kw=kw: kernel(**kw) for kw in inputs]
        eager_ms = median_ms(calls, platform, iters=iters)
        graph_ms = median_ms_graph(calls, platform) if kernel.kernel.graph_safe else None
    ms = graph_ms if graph_ms is not None else eager_ms
    row.update(
        {"ms": ms, "ms_eager": eager_ms, "timed_with": "graph replay" if graph_ms is not None else "eager"}
    )
    nbytes, flops = case.bytes(inputs[0]), case.flops(inputs[0])
    floor_ms = max(nbytes / (limits["copy_GBps"] * 1e6), flops / (limits["matmul_TFLOPs"] * 1e9))
    row.update({"GBps": nbytes / ms / 1e6, "TFLOPs": flops / ms / 1e9, "floor_ms": floor_ms, "floor_share": floor_ms / ms,
                "copy_bandwidth_share": nbytes / ms / 1e6 / limits["copy_GBps"]})  # fmt: skip
    if case.items is not None:
        unit, count = case.items
        row[f"{unit}_per_s"] = count(inputs[0]) / ms * 1e3
    for name, make_peer in case.peers.items():
        try:
            fn = make_peer(inputs[0])
            fn()
            peer_graph = median_ms_graph([fn], platform)
            peer_ms = peer_graph if peer_graph is not None else median_ms([fn], platform, iters=iters)
            row[f"peer_{name}_ms"] = peer_ms
            row[f"speedup_vs_{name}"] = peer_ms / ms
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
            row[f"peer_{name}_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    return row
