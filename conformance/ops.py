"""Level (b): one op case, on one kernel, at one dtype, against the float64 reference on the CPU."""

from __future__ import annotations

import time
from typing import Any

import torch

from tessera.conformance.cases import Case
from tessera.conformance.report import CaseResult
from tessera.pluggable_layers.measure import error_figures
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelImpl, KernelQuery, Selection

CASTABLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def prepare(values: dict[str, Any], dtype: torch.dtype, keep: tuple[str, ...], device) -> tuple[dict, dict]:
    """(kernel inputs on the device in the test dtype, reference inputs in float64 on the CPU) from one draw."""
    dev, ref = {}, {}
    for name, v in values.items():
        if isinstance(v, torch.Tensor):
            if v.dtype in CASTABLE:
                cast = v.to(torch.float32 if name in keep else dtype)
                ref[name] = cast.to(torch.float64)
            else:
                cast = v
                ref[name] = v.clone()
            dev[name] = cast.to(device).clone()
        else:
            dev[name] = ref[name] = v
    return dev, ref


def as_tuple(x):
    return tuple(x) if isinstance(x, tuple | list) else (x,)


def run_op_case(registry, facts, kernel: KernelImpl, case: Case, dtype_name: str, device, seed: int, perf=False,
                platform=None, limits=None) -> CaseResult:  # fmt: skip
    spec = OPS[case.op]
    base = dict(level="op", case_id=f"{case.op}/{kernel.name}/{dtype_name}/{case.name}", op=case.op, kernel=kernel.name,
                provider=kernel.provider, dtype=dtype_name, case=case.name, budget=spec.budget(dtype_name))  # fmt: skip
    query = KernelQuery(case.op, facts, dtype_name, case.facts)
    refusal = kernel.refusal(query)
    if refusal:
        return CaseResult(status="skip", message=f"kernel refuses: {refusal}", **base)
    inputs = case.build(torch.Generator().manual_seed(seed))
    dtype = getattr(torch, dtype_name)
    dev, ref = prepare(inputs.values, dtype, inputs.keep, device)
    bound = registry.bind(Selection(query=query, kernel=kernel, candidates=[]))
    start = time.perf_counter()
    try:
        expected = reference(case.op)(**ref)
        got = bound(**dev)
        if platform is not None:
            platform.synchronize()
    except Exception as exc:  # noqa: BLE001 - a kernel that raises is a result, not a crash
        return CaseResult(status="error", message=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                          seconds=time.perf_counter() - start, **base)  # fmt: skip
    pairs = []
    if inputs.compare_return:
        pairs += [
            (f"return[{i}]", o, r)
            for i, (o, r) in enumerate(zip(as_tuple(got), as_tuple(expected), strict=False))
        ]
    pairs += [(name, dev[name], ref[name]) for name in inputs.inplace]
    worst, problems = None, []
    for label, o, r in pairs:
        exact = spec.tolerance == "exact" or not r.is_floating_point()
        figures = error_figures(o, r)
        if exact and figures.max_abs != 0 and not figures.problem:
            figures.problem = f"differs from the reference in {label} (exact)"
        if figures.problem:
            problems.append(f"{label}: {figures.problem}")
        if r.is_floating_point() and (worst is None or figures.normalized > worst.normalized):
            worst = figures
    status = "pass"
    budget = spec.budget(dtype_name)
    if problems or (worst is not None and not worst.normalized <= budget):
        status = "fail"
    message = "; ".join(problems) or (
        "" if status == "pass" else f"normalized error {worst.normalized:.3e} over budget {budget:.1e}"
    )
    result = CaseResult(status=status, message=message, seconds=round(time.perf_counter() - start, 4),
                        max_abs=worst.max_abs if worst else 0.0, max_rel=worst.max_rel if worst else 0.0,
                        normalized=worst.normalized if worst else 0.0, **base)  # fmt: skip
    if perf and status == "pass" and platform is not None:
        from tessera.conformance.perf import time_kernel

        result.extra.update(time_kernel(bound, dev, platform, limits or {}))
    return result
