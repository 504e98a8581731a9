"""The collective ops (all_reduce, all_gather, reduce_scatter): conformance on two CPU ranks through gloo
and ``kernels explain`` for them."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.cases.collectives import expected
from tessera.conformance.runner import RunOptions, run
from tessera.pluggable_layers.ops import COLLECTIVE_OPS, OPS


def test_collective_ops_are_in_the_contract():
    assert COLLECTIVE_OPS == ("all_reduce", "all_gather", "reduce_scatter")
    assert all(OPS[op].collective for op in COLLECTIVE_OPS) and not OPS["linear"].collective


def test_expected_semantics_on_stacked_inputs():
    xs = torch.arange(12, dtype=torch.float64).view(2, 2, 3)
    assert torch.equal(expected("all_reduce", xs, 1), xs[0] + xs[1])
    assert expected("all_gather", xs, 0, dim=-1).shape == (2, 6)
    assert torch.equal(expected("reduce_scatter", xs, 1, dim=0), (xs[0] + xs[1])[1:])


def test_collectives_pass_on_two_gloo_ranks_and_record_the_world_size(fresh_discovery):
    report = run(
        RunOptions(platform="cpu", ops=list(COLLECTIVE_OPS), levels=("op",), seed=5, dtypes=["float32"])
    )
    ops = {r.op for r in report.results}
    assert ops == set(COLLECTIVE_OPS) and report.world_size == 2
    assert all(r.status == "pass" and r.extra["world_size"] == "2" for r in report.results), [
        (r.case_id, r.message) for r in report.results if r.status != "pass"
    ]
    assert report.drawn["all_gather"]["generated"] == 3


def test_kernels_explain_lists_the_reference_collective(fresh_discovery):
    result = CliRunner().invoke(app, ["kernels", "explain", "all_reduce", "--platform", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["selected"] == "reference" and data["op"] == "all_reduce"
