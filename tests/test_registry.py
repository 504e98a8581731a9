"""The kernel registry: selection, explain, overrides, ties, fallbacks and third-party kernel packs."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
from typer.testing import CliRunner

from tessera.cli import app
from tessera.discovery import discover, select_platform
from tessera.kernel_registry import build_registry, platform_facts
from tessera.platform import Capabilities
from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.registry import (
    KernelRegistry,
    PlatformFacts,
    parse_overrides,
    register_references,
)

runner = CliRunner()
CPU = PlatformFacts(name="cpu", capabilities=Capabilities())


def fresh_registry():
    registry = KernelRegistry()
    register_references(registry, provider="tessera test")
    return registry


def test_every_op_has_a_reference_for_every_platform():
    registry = fresh_registry()
    for op in OPS:
        for platform in ("cpu", "cuda", "some-future-npu"):
            assert registry.select(op, PlatformFacts(name=platform), "float32").kernel.name == "reference"


def test_priority_platform_dtype_and_supports():
    registry = fresh_registry()
    registry.register(
        "rms_norm", lambda *a: None, name="fast", platforms=("cpu",), priority=10, dtypes=("float16",)
    )
    registry.register(
        "rms_norm", lambda *a: None, name="picky", priority=20, supports=lambda q: "head size unsupported"
    )
    selection = registry.select("rms_norm", CPU, "float32")
    verdicts = {c.kernel.name: (c.verdict, c.reason) for c in selection.candidates}
    assert selection.kernel.name == "reference"
    assert verdicts["fast"] == ("refused", "no float32 support (supports float16)")
    assert verdicts["picky"] == ("refused", "head size unsupported")
    assert registry.select("rms_norm", CPU, "float16").kernel.name == "fast"
    assert registry.select("rms_norm", PlatformFacts(name="cuda"), "float16").kernel.name == "reference"


def test_ties_are_deterministic_and_reported():
    registry = fresh_registry()
    for name in ("zeta", "alpha"):
        registry.register("silu_and_mul", lambda *a: None, name=name, priority=5)
    selection = registry.select("silu_and_mul", CPU, "float32")
    assert selection.kernel.name == "alpha"
    assert "tied with zeta, taken by name order" in selection.candidates[0].reason


def test_duplicate_registration_is_an_error():
    registry = fresh_registry()
    with pytest.raises(KernelError, match="registered twice"):
        registry.register("rms_norm", lambda *a: None, name="reference")


def test_overrides_from_argument_and_environment(monkeypatch):
    registry = fresh_registry()
    registry.register("rms_norm", lambda *a: None, name="fast", priority=10)
    assert registry.select("rms_norm", CPU, "float32").kernel.name == "fast"
    monkeypatch.setenv("TESSERA_KERNELS", "rms_norm=reference")
    selection = registry.select("rms_norm", CPU, "float32")
    assert selection.kernel.name == "reference" and selection.override == "reference"
    assert registry.select("rms_norm", CPU, "float32", overrides={"rms_norm": "fast"}).kernel.name == "fast"
    monkeypatch.setenv("TESSERA_KERNELS", "rms_norm=nonexistent")
    with pytest.raises(
        KernelError, match="unknown kernel 'nonexistent' for rms_norm; known kernels: fast, reference"
    ):
        registry.select("rms_norm", CPU, "float32")


def test_override_of_a_refusing_kernel_is_an_error():
    registry = fresh_registry()
    registry.register("rms_norm", lambda *a: None, name="gpu_only", platforms=("cuda",))
    with pytest.raises(KernelError, match="override chose kernel 'gpu_only'.*registered for cuda only"):
        registry.select("rms_norm", CPU, "float32", overrides={"rms_norm": "gpu_only"})


@pytest.mark.parametrize("text", ["rms_norm", "=reference", "rms_norm="])
def test_malformed_override_text(text):
    with pytest.raises(KernelError, match="must look like op=kernel"):
        parse_overrides(text)


def test_unknown_op():
    with pytest.raises(KernelError, match="unknown op 'rmsnorm'; the ops are: rms_norm"):
        fresh_registry().select("rmsnorm", CPU)


def test_fallback_is_logged_once(caplog):
    registry = fresh_registry()
    registry.register("rms_norm", lambda *a: None, name="gpu_only", platforms=("cuda",))
    with caplog.at_level(logging.WARNING, logger="tessera.kernels"):
        for _ in range(3):
            assert registry.select("rms_norm", CPU, "float32").fallback
    assert len([r for r in caplog.records if "falls back" in r.message]) == 1


def test_installed_registry_prefers_cpu_torch_kernels(fresh_discovery):
    registry = build_registry(discover())
    facts = platform_facts(select_platform("cpu", discover()))
    assert registry.select("paged_attention", facts, "float32").kernel.name == "cpu_torch_paged_attention"
    assert registry.select("rms_norm", facts, "float32").kernel.provider == "tessera-cpu 0.1.0"


def test_env_override_changes_the_installed_choice(fresh_discovery, monkeypatch):
    facts = platform_facts(select_platform("cpu", discover()))
    registry = build_registry(discover())
    monkeypatch.setenv("TESSERA_KERNELS", "rms_norm=reference")
    assert registry.select("rms_norm", facts, "float32").kernel.name == "reference"


def test_third_party_kernel_pack_overrides_one_op(install_fixture):
    install_fixture("kernel_pack")
    discovery = discover()
    report = next(p.report for p in discovery.plugins if p.report.plugin == "fast_norm")
    assert report.kernel_pack and report.status == "ok"
    registry = build_registry(discovery)
    facts = platform_facts(select_platform("cpu", discovery))
    selection = registry.select("rms_norm", facts, "float32")
    assert selection.kernel.name == "vendor_fast_rms_norm"
    assert selection.kernel.provider == "tessera-fixture-fast-norm 0.1.0"
    assert selection.candidates[0].reason == "highest priority (200)"
    x = torch.randn(3, 8)
    registry.bind(selection)(x, torch.ones(8), 1e-6)
    assert sys.modules["fixture_fast_norm"].CALLS == [(3, 8)]
    assert registry.select("silu_and_mul", facts, "float32").kernel.name == "cpu_torch_silu_and_mul"


def test_cli_list_json_has_all_ops(fresh_discovery):
    import json

    result = runner.invoke(app, ["kernels", "list", "--json"])
    assert result.exit_code == 0, result.output
    ops = json.loads(result.stdout)["ops"]
    assert set(ops) == set(OPS) and len(ops) == 21
    for op, entry in ops.items():
        assert any(k["name"] == "reference" for k in entry["kernels"]), op


def test_cli_explain_paged_attention_on_cpu(fresh_discovery):
    result = runner.invoke(app, ["kernels", "explain", "paged_attention", "--platform", "cpu"])
    assert result.exit_code == 0, result.output
    assert "cpu_torch_paged_attention" in result.output and "selected" in result.output
    assert "reference" in result.output and "outranked" in result.output


def test_cli_explain_shows_the_kernel_pack_winning(install_fixture):
    install_fixture("kernel_pack")
    import json

    from tessera import kernel_registry as kernels

    kernels._cached.clear()
    result = runner.invoke(app, ["kernels", "explain", "rms_norm", "--platform", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["selected"] == "vendor_fast_rms_norm"
    assert data["candidates"][0]["reason"] == "highest priority (200)"
    kernels._cached.clear()


def test_cli_explain_unknown_platform(fresh_discovery):
    result = runner.invoke(app, ["kernels", "explain", "rms_norm", "--platform", "tpu"])
    assert result.exit_code == 2 and "unknown platform 'tpu'" in result.output
