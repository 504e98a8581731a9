"""Graph-safe kernels on platforms with graphs: each op case also runs through capture and replay.

The static buffers get ``PAD_ROWS`` padding rows past the case's rows (for the inputs the case names
in ``Inputs.pad``, filled with the value it gives there, NaN for activations; output tensors get NaN
rows), as a decode graph captured for a larger batch sees them. After a warm-up call (compilation
must not happen during capture), the kernel is captured, the real rows are written again, the
padding rows are poisoned again, and the graph is replayed. Then the real rows must match the eager
run within the op's budget, and every index output must be in range on *every* row, the padding
rows included: a kernel whose ids index memory must not emit a wild one for a junk row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tessera.conformance.postconditions import index_problem
from tessera.pluggable_layers.checks import trusted_indices
from tessera.pluggable_layers.measure import error_figures

PAD_ROWS = 3


def _padded(t: torch.Tensor, fill: float) -> torch.Tensor:
    pad = torch.full((PAD_ROWS, *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad])


def static_inputs(dev: dict, inputs) -> dict:
    """Copies of the kernel's inputs; padded where the case says how to pad, outputs with NaN rows."""
    padding = bool(inputs.pad)
    out = {}
    for name, v in dev.items():
        if not isinstance(v, torch.Tensor):
            out[name] = v
        elif name in inputs.pad:
            out[name] = _padded(v, inputs.pad[name])
        elif padding and name in inputs.poison:
            out[name] = _padded(v, float("nan"))
        else:
            out[name] = v.clone()
    return out


def refill(static: dict, dev: dict, inputs, originals: dict) -> None:
    """Write the case's rows (in-place tensors as they were before any run) into the static buffers
    again, and poison their padding rows again."""
    for name, v in dev.items():
        if not isinstance(v, torch.Tensor):
            continue
        v = originals.get(name, v)
        target = static[name]
        target[: v.shape[0]].copy_(v) if v.dim() else target.copy_(v)
        if target.dim() and target.shape[0] > v.shape[0]:
            target[v.shape[0] :].fill_(inputs.pad.get(name, float("nan")))


def capture_and_replay(platform, graph, run: Callable[[], Any], reset: Callable[[], None]) -> Any:
    """``run()`` once eagerly (it compiles outside the capture), then captured into ``graph`` under
    ``trusted_indices()`` (as the engine captures: value checks would read back to the host), then the
    graph replayed once; ``reset()`` puts the inputs back before the capture and before the replay.
    Returns what ``run()`` returned in the capture: the graph's outputs, which now hold the replay's."""
    run()
    platform.synchronize()
    reset()
    with trusted_indices(), platform.graph_capture(graph):
        captured = run()
    reset()
    graph.replay()
    platform.synchronize()
    return captured


def graph_replay_problems(
    platform, bound, dev: dict, inputs, pairs, budget: float, originals: dict
) -> list[str]:
    graph = platform.graph()
    if graph is None:
        return []
    try:
        static = static_inputs(dev, inputs)
        captured = capture_and_replay(
            platform, graph, lambda: bound(**static), lambda: refill(static, dev, inputs, originals)
        )
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot be captured is a finding
        return [f"graph replay: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]
    problems = []
    returned = captured if isinstance(captured, tuple | list) else (captured,)
    for label, (limit, distinct) in inputs.indices.items():
        t = returned[int(label[7:-1])] if label.startswith("return[") else static.get(label)
        problem = index_problem(label, t, limit, distinct)
        if problem:
            problems.append(f"graph replay with NaN padding rows: {problem}")
    eager = {label: o for label, o, _ in pairs}
    for i, r in enumerate(returned):
        label = f"return[{i}]"
        if (
            label not in eager
            or not isinstance(r, torch.Tensor)
            or not isinstance(eager[label], torch.Tensor)
        ):
            continue
        o = eager[label]
        if inputs.rows is not None:
            r = r[: inputs.rows.shape[0]][inputs.rows.to(r.device)]
        replayed = r[: o.shape[0]] if r.dim() else r
        figures = error_figures(replayed, o.detach().cpu().double())
        if figures.problem or not figures.normalized <= max(budget, 1e-6):
            problems.append(
                f"graph replay: {label} differs from the eager run ({figures.problem or figures.normalized})"
            )
    return problems
