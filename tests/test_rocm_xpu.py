"""ROCm and XPU without their hardware: simulated devices for kernel choice and tuned configs, every
triton kernel run under the interpreter with each platform's config values, the ROCm fp8 path's
quantization, and no IPEX anywhere."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.cases import all_cases
from tessera.conformance.ops import prepare
from tessera.pluggable_layers.measure import error_figures
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference

from .conftest import REPO
from .test_simulated_devices import amd, simulate_torch_cuda, simulate_xpu

runner = CliRunner()
GiB = 1 << 30
DECODE_KEY = "tokens=64,seqs=64,head_size=128,group=4,decode=1,dtype=bfloat16"


def explain_json(platform: str) -> dict:
    result = runner.invoke(app, ["kernels", "explain", "paged_attention", "--platform", platform, "--dtype", "bfloat16",
                                 "--shape", DECODE_KEY, "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_simulated_mi300x_explains_rocm_choices_and_config(fresh_discovery, monkeypatch):
    pytest.importorskip("triton")
    simulate_torch_cuda(
        monkeypatch, [amd("AMD Instinct MI300X", "gfx942:sramecc+:xnack-")], cuda=None, hip="6.4.43482"
    )
    data = explain_json("rocm")
    assert data["platform_available"] and data["device"] == "AMD_MI300X" and data["arch"] == "gfx942"
    assert data["selected"] == "triton_paged_attention"
    assert data["config"]["files"][0].endswith("tessera_rocm/configs/triton_paged_attention/AMD_MI300X.json")
    assert data["config"]["config"]["waves_per_eu"] == 2 and "exact" in data["config"]["source"]
    fp8 = runner.invoke(
        app, ["kernels", "explain", "linear_fp8", "--platform", "rocm", "--dtype", "bfloat16", "--json"]
    )
    assert json.loads(fp8.stdout)["selected"] == "rocm_scaled_mm_linear_fp8"


def test_simulated_max_1550_explains_xpu_choices_and_config(fresh_discovery, monkeypatch):
    pytest.importorskip("triton")
    props = SimpleNamespace(name="Intel(R) Data Center GPU Max 1550", total_memory=128 * GiB, driver_version="1.6.31294",
                            gpu_eu_count=1024, has_fp8=False)  # fmt: skip
    simulate_xpu(monkeypatch, [props])
    data = explain_json("xpu")
    assert data["device"] == "Intel_Max_1550" and data["selected"] == "triton_paged_attention"
    assert data["config"]["files"][0].endswith(
        "tessera_xpu/configs/triton_paged_attention/Intel_Max_1550.json"
    )
    assert data["config"]["config"]["grf_mode"] == "large"


def platform_configs(plugin: str) -> list[tuple[str, dict]]:
    """(kernel, config) for every distinct config in the plugin's shipped files."""
    seen, out = set(), []
    for path in sorted((REPO / "plugins" / plugin / f"tessera_{plugin}" / "configs").glob("*/*.json")):
        data = json.loads(path.read_text())
        for config in [*data["configs"].values(), data["default"]]:
            key = (path.parent.name, json.dumps(config, sort_keys=True))
            if config and key not in seen:
                seen.add(key)
                out.append((path.parent.name, config))
    return out


CASES_FOR = {"triton_paged_attention": ["decode_block_edges_gqa4", "mixed_prefill_decode_gqa8"],
             "triton_rms_norm": ["t7_h4099"], "triton_add_rms_norm": ["t7_h4099"], "triton_silu_and_mul": ["t7_i4099"]}  # fmt: skip


@pytest.mark.cpu_dtypes_independent  # the rocm and xpu kernels, in float32 and float16
@pytest.mark.parametrize("plugin", ["rocm", "xpu"])
def test_every_platform_config_runs_in_the_interpreter(plugin, fresh_discovery):
    pytest.importorskip("triton")
    from tessera.discovery import discover
    from tessera.kernel_registry import build_registry

    registry = build_registry(discover())
    cases = {c.case_id: c for c in all_cases()}
    configs = platform_configs(plugin)
    assert {k for k, _ in configs} == set(CASES_FOR)
    for kernel_name, config in configs:
        kernel = registry.find(kernel_name)
        for case_name in CASES_FOR[kernel_name]:
            case = cases[f"{kernel.op}/{case_name}"]
            inputs = case.build(torch.Generator().manual_seed(0))
            for dtype in (torch.float32, torch.float16):
                dev, ref = prepare(inputs.values, dtype, inputs.keep, torch.device("cpu"))
                got = kernel.fn(**dev, config=config)
                expected = reference(kernel.op)(**ref)
                got, expected = (got[0], expected[0]) if isinstance(got, tuple) else (got, expected)
                figures = error_figures(got, expected)
                budget = OPS[kernel.op].budget(str(dtype).removeprefix("torch."))
                assert figures.problem is None and figures.normalized <= budget, (
                    plugin,
                    kernel_name,
                    config,
                    case_name,
                    figures,
                )


def test_rocm_fp8_path(fresh_discovery):
    from tessera.platform import Capabilities
    from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_token as reference_quantize
    from tessera.pluggable_layers.registry import KernelQuery, PlatformFacts
    from tessera_rocm.kernels.linear_fp8 import quantize_per_token, supports

    x = torch.randn(9, 64)
    q, s = quantize_per_token(x, torch.float8_e4m3fnuz)
    rq, rs = reference_quantize(x, torch.float8_e4m3fnuz)
    assert torch.equal(q.float(), rq.float()) and torch.allclose(s, rs)
    assert float(q.float().abs().max()) <= 240.0
    mi300 = PlatformFacts("rocm", Capabilities(fp8_dtype="float8_e4m3fnuz"), arch="gfx942")
    mi250 = PlatformFacts("rocm", Capabilities(), arch="gfx90a")
    assert supports(KernelQuery("linear_fp8", mi300, "bfloat16", {"fp8_dtype": "float8_e4m3fnuz"})) is None
    assert "no fp8" in supports(KernelQuery("linear_fp8", mi250, "bfloat16", {}))
    assert "computes in float8_e4m3fnuz" in supports(
        KernelQuery("linear_fp8", mi300, "bfloat16", {"fp8_dtype": "float8_e4m3fn"})
    )


def test_no_ipex_anywhere(tmp_path, monkeypatch, fresh_discovery, checkpoints_dir_llama):
    sources = [
        p
        for root in ("core", "pluggable_layers", "conformance", "plugins")
        for p in (REPO / root).rglob("*.py")
    ]
    name = "intel_extension_for_pytorch"
    offenders = [
        str(p) for p in sources if f"import {name}" in p.read_text() or f"from {name}" in p.read_text()
    ]
    assert not offenders
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    from tessera import LLM, SamplingParams
    from tessera.conformance.runner import RunOptions, run
    from tessera.discovery import discover

    assert {p.report.plugin for p in discover().plugins} >= {"xpu", "rocm"}
    LLM(str(checkpoints_dir_llama)).generate([{"prompt_token_ids": [1, 2, 3]}], SamplingParams(max_tokens=4))
    run(RunOptions(platform="cpu", ops=["rms_norm"], seed=1))
    assert name not in sys.modules


@pytest.mark.parametrize("fp8", ["float8_e4m3fnuz", "float8_e4m3fn"])
def test_rocm_fp8_linear_against_the_reference_on_cpu(fp8):
    """torch._scaled_mm runs on the CPU too, so the whole ROCm fp8 kernel can be checked here."""
    from tessera.pluggable_layers.reference.linear_fp8 import linear_fp8 as reference_fp8
    from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel
    from tessera_rocm.kernels.linear_fp8 import linear_fp8

    wq, ws = quantize_per_channel(torch.randn(96, 256), getattr(torch, fp8))
    x, bias = torch.randn(7, 256, dtype=torch.bfloat16), torch.randn(96, dtype=torch.bfloat16)
    out = torch.full((7, 96), float("nan"), dtype=torch.bfloat16)
    linear_fp8(x, wq, ws, bias, out=out)
    figures = error_figures(out, reference_fp8(x.double(), wq, ws.double(), bias.double()))
    assert figures.problem is None and figures.normalized <= OPS["linear_fp8"].budget("bfloat16")
