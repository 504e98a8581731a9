"""The collective ops on several ranks: every collective case on every kernel registered for the
platform, in ``WORLD_SIZE`` processes that join one group on the platform's backend (gloo on the CPU).

Each rank takes its slice of the case's stacked inputs, calls the kernel with the real process group
and compares its result with the op's semantics computed in float64 from every rank's inputs. A case
passes when it passes on every rank; the results carry the world size, and so does the certificate.
"""

from __future__ import annotations

import time

import torch

from tessera.conformance.cases import Case
from tessera.conformance.cases.collectives import WORLD_SIZE, expected
from tessera.conformance.ops import judge
from tessera.conformance.report import CaseResult
from tessera.pluggable_layers.ops import OPS

#: how long the ranks may take for every collective case together
TIMEOUT_S = 300
ORDER = {"pass": 0, "skip": 1, "fail": 2, "error": 3}


def run_case(kernel, case: Case, dtype_name: str, rank: int, seed: int) -> dict:
    from tessera.pluggable_layers.registry import BoundKernel

    spec = OPS[case.op]
    base = dict(level="op", case_id=f"{case.op}/{kernel.name}/{dtype_name}/{case.name}", op=case.op, kernel=kernel.name,
                provider=kernel.provider, dtype=dtype_name, case=case.name, budget=spec.budget(dtype_name),
                extra={"world_size": str(WORLD_SIZE)})  # fmt: skip
    values = case.build(torch.Generator().manual_seed(seed)).values
    xs, dim = values["x"], values.get("dim", -1)
    dtype = getattr(torch, dtype_name)
    kwargs = {"dim": dim} if "dim" in values else {}
    start = time.perf_counter()
    try:
        got = BoundKernel(kernel, None)(xs[rank].to(dtype).clone(), None, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a kernel that raises is a result
        return CaseResult(
            status="error", message=f"rank {rank}: {type(exc).__name__}: {exc}"[:300], **base
        ).model_dump()
    want = expected(case.op, xs.to(dtype).to(torch.float64), rank, dim)
    result = judge(spec, dtype_name, [("return[0]", got.cpu(), want)], [], base, time.perf_counter() - start)
    if result.status != "pass":
        result.message = f"rank {rank}: {result.message}"
    return result.model_dump()


def _rank_main(rank: int, platform_name: str, device_index: int, port: int, work: list, seed: int, full: bool,
               queue) -> None:  # fmt: skip
    from tessera.conformance.cases import find_case
    from tessera.conformance.runner import case_seed
    from tessera.discovery import select_platform
    from tessera.distributed import Rendezvous, join_group
    from tessera.kernel_registry import get_registry

    try:
        platform = select_platform(platform_name)
        join_group(platform, Rendezvous("127.0.0.1", port, rank, WORLD_SIZE, rank), device_index + rank)
        registry = get_registry()
        results = []
        for case_id, kernel_name, dtype in work:
            case = find_case(case_id, full, seed)
            kernel = registry.get(case.op, kernel_name)
            results.append(run_case(kernel, case, dtype, rank, case_seed(seed, case)))
        queue.put((rank, results, None))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the cause
        queue.put((rank, [], f"{type(exc).__name__}: {exc}"))


def check(
    platform, work: list[tuple[Case, object, str]], device_index: int, seed: int, full: bool
) -> list[CaseResult]:
    """Run ``work`` (case, kernel, dtype) on ``WORLD_SIZE`` ranks; one merged result per item."""
    from tessera.distributed import max_ranks

    if not work:
        return []
    base = [dict(level="op", case_id=f"{c.op}/{k.name}/{d}/{c.name}", op=c.op, kernel=k.name, provider=k.provider,
                 dtype=d, case=c.name, extra={"world_size": str(WORLD_SIZE)}) for c, k, d in work]  # fmt: skip
    room = max_ranks(platform, device_index)
    if room is not None and room < WORLD_SIZE:
        why = f"the collective cases need {WORLD_SIZE} {platform.name} devices, this host has {room}"
        return [CaseResult(status="skip", message=why, **b) for b in base]
    per_rank, failure = _spawn(
        platform.name, device_index, [(c.case_id, k.name, d) for c, k, d in work], seed, full
    )
    out = []
    for i, b in enumerate(base):
        got = [CaseResult(**per_rank[r][i]) for r in range(WORLD_SIZE) if len(per_rank.get(r, [])) > i]
        if len(got) < WORLD_SIZE:
            out.append(CaseResult(status="error", message=failure or "a rank returned no result", **b))
            continue
        worst = max(got, key=lambda r: (ORDER.get(r.status, 3), r.normalized or 0.0))
        out.append(worst)
    return out


def _spawn(
    platform_name: str, device_index: int, work: list, seed: int, full: bool
) -> tuple[dict[int, list], str | None]:
    import multiprocessing as mp
    import queue as queue_mod

    from tessera.distributed import free_port

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, platform_name, device_index, port, work, seed, full, results),
                         daemon=True) for r in range(WORLD_SIZE)]  # fmt: skip
    for p in procs:
        p.start()
    per_rank, failure, deadline = {}, None, time.monotonic() + TIMEOUT_S
    while len(per_rank) < WORLD_SIZE and time.monotonic() < deadline:
        try:
            rank, rows, error = results.get(timeout=1.0)
        except queue_mod.Empty:
            dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in per_rank]
            if dead:
                failure = f"rank {dead[0]} exited with code {procs[dead[0]].exitcode}"
                break
            continue
        per_rank[rank] = rows
        failure = failure or (f"rank {rank}: {error}" if error else None)
        if error:  # its peers may wait in the rendezvous for it until the timeout: do not wait with them
            break
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    if len(per_rank) < WORLD_SIZE and failure is None:
        failure = f"the ranks did not finish within {TIMEOUT_S} s"
    return per_rank, failure
