"""One measurement module: the tuner, `bench kernels` and the conformance suite time and compare through
tessera.pluggable_layers.measure, and no second timing loop or limits probe exists elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from tessera.pluggable_layers import measure

from .conftest import REPO

MEASURE = REPO / "pluggable_layers" / "measure.py"
SCANNED = ("core", "pluggable_layers", "conformance", "plugins")
#: what each user takes from the module
USERS = {
    "pluggable_layers/tuner.py": {"median_ms", "output_error", "to_reference_inputs"},
    "core/bench/kernel_bench.py": {"median_ms", "median_ms_graph"},
    "core/bench/cases.py": {"normalized_error"},
    "conformance/ops.py": {"error_figures"},
    "conformance/perf.py": {"median_ms"},
    "conformance/runner.py": {"measure_limits"},
}
#: names of the module's timing, limits and error functions: defined nowhere else
OWNED = {"median_ms", "median_ms_graph", "time_call", "measure_limits", "normalized_error", "output_error",
         "error_figures", "compare", "rel_err", "to_reference_inputs"}  # fmt: skip
#: elapsed_time() outside the module: the contract level checks that events work, it times nothing
EVENT_CHECKS = {"conformance/levels/contract.py"}


def sources() -> list[Path]:
    return sorted(p for root in SCANNED for p in (REPO / root).rglob("*.py") if p != MEASURE)


def imported_from_measure(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "tessera.pluggable_layers.measure"
        for a in node.names
    }


@pytest.mark.parametrize(("user", "names"), sorted(USERS.items()))
def test_users_import_timing_and_errors_from_the_module(user, names):
    assert names <= imported_from_measure(REPO / user)


def test_no_second_timing_loop_or_limits_probe():
    found = []
    for path in sources():
        rel = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in OWNED:
                found.append(f"{rel}:{node.lineno}: defines {node.name}")
            is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if is_call and node.func.attr == "elapsed_time" and rel not in EVENT_CHECKS:
                found.append(f"{rel}:{node.lineno}: times with elapsed_time() itself")
    assert not found, "measurement outside tessera.pluggable_layers.measure:\n" + "\n".join(found)


def test_scan_sees_the_module_itself():
    tree = ast.parse(MEASURE.read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert OWNED - {"time_call", "compare", "rel_err"} <= defined


def test_cpu_limits_are_measured_at_the_platforms_probe(fresh_discovery):
    from tessera.discovery import select_platform

    cpu = select_platform("cpu")
    limits = measure.measure_limits(cpu, cpu.torch_device(0))
    assert (limits["copy_bytes"], limits["matmul_size"], limits["matmul_dtype"]) == (
        1 << 26,
        1024,
        "torch.float32",
    )
    assert limits["copy_GBps"] > 0 and limits["matmul_TFLOPs"] > 0


def test_graph_timing_is_none_without_graphs(fresh_discovery):
    from tessera.discovery import select_platform

    cpu = select_platform("cpu")
    calls = []
    assert measure.median_ms_graph([lambda: calls.append(1)], cpu) is None
    assert measure.median_ms([lambda: calls.append(1)], cpu, iters=4, warmup=2) >= 0 and len(calls) == 6


def test_error_figures():
    ref = torch.tensor([1.0, 2.0, float("nan"), 4.0], dtype=torch.float64)
    out = torch.tensor([1.0, 2.5, float("nan"), 4.0])
    figures = measure.error_figures(out, ref)
    assert figures.problem is None and figures.max_abs == 0.5 and figures.max_rel == 0.25
    assert figures.normalized == pytest.approx(0.5 / (1 + 4 + 16) ** 0.5)
    assert "never written" in measure.error_figures(torch.full((4,), float("nan")), ref).problem
    assert measure.error_figures(out[:3], ref).problem == "shape (3,), expected (4,)"
    assert measure.normalized_error(out, ref) != measure.normalized_error(out, ref)  # NaN output: NaN
    assert measure.normalized_error(out[:2], ref[:2]) == pytest.approx(0.5 / 5**0.5)
    assert measure.normalized_error(out[:2], ref) == float("inf")
    assert measure.to_reference_inputs((out.half(), torch.arange(3)))[0].dtype == torch.float64
