"""The layer level's graph mode (and the op level's graph replay, which shares its capture helper),
driven through a platform whose "capture" runs the work at once.

No CPU platform captures graphs, so this checks the mode's plumbing (decode-shaped inputs built
before capture, state restored around warm-up, capture and replay, the reference run on its own
copy of the state), not a real graph: the cuda run does that on hardware.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from tessera.conformance.cases import all_cases
from tessera.conformance.levels import layers
from tessera.conformance.ops import run_op_case
from tessera.discovery import get_discovery, select_platform
from tessera.kernel_registry import get_registry, platform_facts
from tessera.pluggable_layers.checks import checking_values


class _RunAtOnceGraph:
    def replay(self) -> None:
        self.replays += 1

    replays = 0


class _EagerGraphPlatform:
    """The cpu platform, with a graph whose capture simply runs what it is given."""

    def __init__(self, base) -> None:
        self.base, self.graphs, self.checked_in_capture = base, [], []

    def graph(self):
        self.graphs.append(_RunAtOnceGraph())
        return self.graphs[-1]

    def graph_capture(self, graph, pool=None):
        # value checks of index tensors sync with the device: a capture must run without them
        self.checked_in_capture.append(checking_values())
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        return None


def test_layer_level_graph_mode_matches_reference_on_each_layer(fresh_discovery):
    platform = select_platform("cpu", get_discovery())
    caps = platform.capabilities(0).model_copy(update=dict(graphs=True, dtypes=("float32",)))
    fake = _EagerGraphPlatform(platform)
    registry = get_registry()
    results = layers.check(registry, platform_facts(platform), caps, torch.device("cpu"), 7, fake)
    graph_cases = {r.case_id: r for r in results if r.case_id.endswith("/graphs")}
    assert set(graph_cases) == {f"layer/{k}/float32/graphs" for k in ("linear", "moe", "mamba2", "attention")}
    for r in graph_cases.values():
        assert r.status == "pass", (r.case_id, r.message)
        assert r.normalized is not None and r.normalized <= r.budget
    assert len(fake.graphs) == 4 and all(g.replays == 1 for g in fake.graphs)
    assert fake.checked_in_capture == [False] * 4


def test_layer_level_without_graphs_has_no_graph_cases(fresh_discovery):
    platform = select_platform("cpu", get_discovery())
    caps = platform.capabilities(0).model_copy(update=dict(dtypes=("float32",)))
    results = layers.check(get_registry(), platform_facts(platform), caps, torch.device("cpu"), 7, platform)
    assert results and not [r for r in results if "graphs" in r.case_id]
    assert all(r.status == "pass" for r in results)


def test_op_level_graph_replay_captures_and_replays_each_case_once(fresh_discovery):
    platform = select_platform("cpu", get_discovery())
    fake, registry = _EagerGraphPlatform(platform), get_registry()
    cases = all_cases()[::12]  # ten ops, a few shapes each
    for case in cases:  # the reference, taken as graph-safe so the replay runs
        kernel = dataclasses.replace(registry.get(case.op, "reference"), graph_safe=True)
        result = run_op_case(registry, platform_facts(platform), kernel, case, "float32", torch.device("cpu"), 1,
                             platform=fake)  # fmt: skip
        assert result.status == "pass", (result.case_id, result.message)
    assert len(fake.graphs) == len(cases) and all(g.replays == 1 for g in fake.graphs)
    assert fake.checked_in_capture == [False] * len(cases)
