"""Level (a): the platform contract: devices, memory queries, synchronize, events, graphs when claimed."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from tessera.conformance.report import CaseResult


def _check(name: str, fn: Callable[[], str | None]) -> CaseResult:
    start = time.perf_counter()
    try:
        problem = fn()
    except Exception as exc:  # noqa: BLE001
        problem = f"raised {type(exc).__name__}: {exc}"
    status = "fail" if problem else "pass"
    return CaseResult(level="platform", case_id=f"platform/{name}", op="platform", case=name, status=status,
                      message=problem or "", seconds=round(time.perf_counter() - start, 4))  # fmt: skip


def check(platform, index: int) -> list[CaseResult]:
    device = platform.torch_device(index)
    caps = platform.capabilities(index)

    def devices():
        devs = platform.devices()
        if not devs or index >= len(devs):
            return f"devices() lists {len(devs)} device(s); index {index} is missing"
        d = devs[index]
        if not d.name or not d.arch or d.memory_total <= 0:
            return f"device {index} lacks a name, arch or memory total: {d}"
        return None

    def memory():
        free, total = platform.mem_get_info(index)
        if not 0 <= free <= total or total <= 0:
            return f"mem_get_info returned free={free}, total={total}"
        x = torch.empty(1 << 20, dtype=torch.float32, device=device).fill_(1.0)
        platform.synchronize(index)
        peak = platform.peak_memory(index)
        return (
            None
            if peak >= 0 and float(x.sum()) == float(1 << 20)
            else f"peak_memory {peak} or allocation misbehaved"
        )

    def sync_and_events():
        a = torch.randn(1024, 1024, device=device)
        start, end = platform.event(), platform.event()
        start.record()
        b = a @ a
        end.record()
        end.synchronize()
        platform.synchronize(index)
        ms = start.elapsed_time(end)
        return None if ms >= 0 and bool(torch.isfinite(b).all()) else f"event elapsed_time {ms}"

    def seeding():
        platform.manual_seed(1234)
        a = torch.randn(16, device=device)
        platform.manual_seed(1234)
        return (
            None
            if torch.equal(a, torch.randn(16, device=device))
            else "manual_seed does not make draws repeat"
        )

    def dtypes():
        for name in caps.dtypes:
            t = torch.ones(4, dtype=getattr(torch, name), device=device) * 2
            if float(t.sum()) != 8.0:
                return f"arithmetic in {name} is wrong"
        return None

    def graphs():
        graph = platform.graph()
        if graph is None:
            return "capabilities claim graphs but graph() returned None"
        x = torch.zeros(256, device=device)
        y = torch.zeros(256, device=device)
        platform.synchronize(index)
        with platform.graph_capture(graph):
            y.copy_(x * 2 + 1)
        x.fill_(3.0)
        graph.replay()
        platform.synchronize(index)
        return None if bool((y == 7.0).all()) else "replay did not recompute from the new input"

    checks = [("devices", devices), ("memory", memory), ("synchronize_events", sync_and_events), ("manual_seed", seeding),
              ("dtypes", dtypes)]  # fmt: skip
    if caps.graphs:
        checks.append(("graphs", graphs))
    return [_check(name, fn) for name, fn in checks]
