"""Level (b): one op case, on one kernel, at one dtype, against the float64 reference on the CPU."""

from __future__ import annotations

import time
from typing import Any

import torch

from tessera.conformance.cases import Case
from tessera.conformance.cases.kv_layouts import case_layout
from tessera.conformance.graph_replay import graph_replay_problems
from tessera.conformance.postconditions import (
    finite_problem,
    guard,
    guard_problems,
    index_problem,
    op_indices,
    untouched_problem,
)
from tessera.conformance.report import CaseResult
from tessera.pluggable_layers.kernel_types import prepare_weights
from tessera.pluggable_layers.kv_layout import FACT, KV_OPS
from tessera.pluggable_layers.measure import error_figures
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelImpl, KernelQuery

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
    if case.params:
        base["extra"] = {"origin": case.origin, **{k: str(v) for k, v in case.params.items()}}
    query = KernelQuery(case.op, facts, dtype_name, case_facts(case))
    refusal, bound = registry.bind_exact(kernel, query)
    if refusal:
        return CaseResult(status="skip", message=f"kernel refuses: {refusal}", **base)
    inputs = case.build(torch.Generator().manual_seed(seed))
    inputs.indices = {**op_indices(case.op, inputs.values), **inputs.indices}
    dtype = getattr(torch, dtype_name)
    dev, ref = prepare(inputs.values, dtype, inputs.keep, device)
    before = {n: (dev[n].clone(), ref[n].clone()) for n in inputs.inplace}
    guards = guard(dev, tuple(dict.fromkeys(inputs.poison + inputs.inplace)))
    start = time.perf_counter()
    try:
        expected = reference(case.op)(**ref, **layout_kwargs(case))
        # the kernel's own weight layout (plugin API 1.2), made from the checkpoint-form tensors the case drew
        dev.update(prepare_weights(kernel, {w: dev[w] for w in spec.weights if w in dev}, case.facts))
        got = bound(**dev)
        if platform is not None:
            platform.synchronize()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a kernel that raises (or exits) is a result, not a crash
        return CaseResult(status="error", message=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                          seconds=time.perf_counter() - start, **base)  # fmt: skip
    problems = postcondition_problems(inputs, got, expected, dev, ref, before, guards)
    pairs = compared_pairs(inputs, got, expected, dev, ref)
    if inputs.tie_check is not None:
        problems += inputs.tie_check(as_tuple(got), ref)
    if platform is not None and kernel.graph_safe:
        originals = {n: b[0] for n, b in before.items()}
        problems += graph_replay_problems(
            platform, bound, dev, inputs, pairs, spec.budget(dtype_name), originals
        )
    result = judge(spec, dtype_name, pairs, problems, base, time.perf_counter() - start)
    if perf and result.status == "pass" and platform is not None:
        from tessera.conformance.perf import time_kernel

        result.extra.update(time_kernel(bound, dev, platform, limits or {}))
    return result


def case_facts(case: Case) -> dict:
    """The case's facts; a KV-cache case names its layout (the default one when it does not)."""
    if case.op in KV_OPS:
        return {FACT: case_layout(case), **case.facts}
    return case.facts


def layout_kwargs(case: Case) -> dict:
    """``kv_layout=`` for the reference of a KV-cache case."""
    return {FACT: case_layout(case)} if case.op in KV_OPS else {}


def postcondition_problems(inputs, got, expected, dev, ref, before, guards) -> list[str]:
    """Index bounds (on the kernel's and the reference's outputs), guards, and in-place scope."""
    problems = guard_problems(guards)
    returned, reference_returned = as_tuple(got), as_tuple(expected)
    for label, (limit, distinct) in inputs.indices.items():
        for who, values, source in (("", returned, dev), ("reference ", reference_returned, ref)):
            t = (
                values[int(label[7:-1])]
                if label.startswith("return[") and label[7:-1].isdigit()
                else source.get(label)
            )
            problem = index_problem(label, t, limit, distinct)
            if problem:
                problems.append(who + problem)
    for name, (dev_before, ref_before) in before.items():
        problem = untouched_problem(name, dev_before, dev[name], ref_before, ref[name])
        if problem:
            problems.append(problem)
    return problems


def compared_pairs(inputs, got, expected, dev, ref) -> list[tuple[str, object, torch.Tensor]]:
    """(label, kernel output, reference output) over the rows whose numbers the case defines."""
    pairs = []
    if inputs.compare_return:
        for i, (o, r) in enumerate(zip(as_tuple(got), as_tuple(expected), strict=False)):
            if inputs.rows is not None and isinstance(o, torch.Tensor) and o.shape[:1] == r.shape[:1]:
                o, r = o[inputs.rows.to(o.device)], r[inputs.rows]
            if f"return[{i}]" not in inputs.tied:
                pairs.append((f"return[{i}]", o, r))
    pairs += [(name, dev[name], ref[name]) for name in inputs.inplace]
    return pairs


def judge(spec, dtype_name: str, pairs, problems: list[str], base: dict, seconds: float) -> CaseResult:
    worst = None
    for label, o, r in pairs:
        exact = spec.tolerance == "exact" or not r.is_floating_point()
        figures = error_figures(o, r)
        if exact and figures.max_abs != 0 and not figures.problem:
            figures.problem = f"differs from the reference in {label} (exact)"
        if figures.problem:
            problems.append(f"{label}: {figures.problem}")
        elif (finite := finite_problem(label, o, r)) is not None:
            problems.append(finite)
        if r.is_floating_point() and (worst is None or figures.normalized > worst.normalized):
            worst = figures
    budget = spec.budget(dtype_name)
    status = "fail" if problems or (worst is not None and not worst.normalized <= budget) else "pass"
    message = "; ".join(problems) or (
        "" if status == "pass" else f"normalized error {worst.normalized:.3e} over budget {budget:.1e}"
    )
    return CaseResult(status=status, message=message[:2000], seconds=round(seconds, 4),
                      max_abs=worst.max_abs if worst else 0.0, max_rel=worst.max_rel if worst else 0.0,
                      normalized=worst.normalized if worst else 0.0, **base)  # fmt: skip
