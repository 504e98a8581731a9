"""Plugin API 1.2: kernels that prepare their weights. The registry's checks, conformance through prepare
(a wrong repack fails with its figure), what explain and inspect show, and 1.0 / 1.1 plugins unchanged."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.runner import RunOptions, run
from tessera.discovery import discover, select_platform
from tessera.hookspecs import PLUGIN_API_VERSION
from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.kernel_types import prepare_weights
from tessera.pluggable_layers.registry import KernelRegistry


def test_prepare_is_checked_at_registration_and_call():
    registry = KernelRegistry()
    with pytest.raises(KernelError, match="rms_norm has no weight arguments"):
        registry.register("rms_norm", lambda *a: None, name="k", prepare=lambda w, **f: w)
    kernel = registry.register("linear", lambda *a: None, name="k", prepare=lambda w, **f: {"weight_t": 1},
                               prepared_layout="[K, N]")  # fmt: skip
    assert kernel.weights_line() == "prepared by k as [K, N]"
    with pytest.raises(KernelError, match="must return the same names"):
        prepare_weights(kernel, {"weight": 0}, {})


def test_conformance_runs_through_prepare_and_a_wrong_repack_fails_with_its_figure(home, install_fixture):
    install_fixture("wrong_repack")
    report = run(RunOptions(platform="cpu", ops=["linear_wna16"], dtypes=["float32"], levels=("op",), seed=5,
                            origins=["fixed"]))  # fmt: skip
    by = {}
    for r in report.results:
        by.setdefault(r.kernel, {})[r.case] = r
    assert all(r.status == "pass" for r in by["cpu_torch_linear_wna16"].values())
    for case, r in by["wrong_wna16_no_v1_offset"].items():
        v1 = case.endswith(("_gptq", "_gptq_sym", "_gptq_bias"))
        assert (r.status == "fail") == v1, (case, r.status, r.message)
        if v1:
            assert r.normalized > r.budget and "over budget" in r.message
    awq = {c: r.status for c, r in by["wrong_wna16_awq_order"].items() if "awq" in c}
    assert awq and set(awq.values()) == {"fail"}


def test_explain_and_inspect_show_the_prepared_layout(tmp_path, fresh_discovery):
    from tests.quant_checkpoints import write_int4_checkpoint

    runner = CliRunner()
    shown = runner.invoke(
        app, ["kernels", "explain", "linear_wna16", "--platform", "cpu", "--dtype", "float32"]
    )
    assert shown.exit_code == 0, shown.output
    assert "weights: prepared by cpu_torch_linear_wna16 as dense weight [N, K]" in " ".join(
        shown.output.split()
    )
    as_json = runner.invoke(
        app, ["kernels", "explain", "linear_wna16", "-p", "cpu", "--dtype", "float32", "--json"]
    )
    assert json.loads(as_json.output)["weights"].startswith("prepared by cpu_torch_linear_wna16 as ")
    quant, _ = write_int4_checkpoint("llama", tmp_path, "awq", 128)
    inspected = runner.invoke(app, ["inspect", "--model", str(quant), "--dtype", "float32"])
    assert inspected.exit_code == 0, inspected.output
    text = " ".join(inspected.output.split())
    assert "linear_wna16" in text and "prepared by cpu_torch_linear_wna16" in text


def test_plugins_written_against_1_0_and_1_1_load_register_and_run(install_fixture, checkpoints_dir_llama):
    from tessera import LLM, SamplingParams
    from tessera.kernel_registry import get_registry, platform_facts

    assert PLUGIN_API_VERSION == "1.2"
    install_fixture("api_1_0")
    install_fixture("api_1_1")
    import fixture_api_1_0
    import fixture_api_1_1

    reports = {p.report.plugin: p.report for p in discover().plugins}
    assert reports["api_1_0"].status == reports["api_1_1"].status == "ok"
    cpu = platform_facts(select_platform("cpu"))
    registry = get_registry()
    assert registry.select("sample", cpu, "float32").kernel.name == "vendor_sample_1_0"
    assert registry.select("linear", cpu, "float32").kernel.name == "vendor_linear_1_1"
    llm = LLM(str(checkpoints_dir_llama), dtype="float32")
    out = llm.generate(
        [[3, 4, 5]], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True), use_tqdm=False
    )
    assert len(out[0].outputs[0].token_ids) == 4
    assert fixture_api_1_0.CALLS and fixture_api_1_1.CALLS
    assert all(w[1] == x[1] for x, w in fixture_api_1_1.CALLS)  # weight [N, K] as the checkpoint holds it
