"""The pack's conformance test: tessera's suite on this pack's kernels, through tessera's pytest plugin.

`pytest tests` (from the pack's folder) runs every op case of every kernel named ``example_*`` at
every dtype the platform claims, against the float64 reference, one test per case; a case that
fails shows its error figures. TESSERA_PACK_PLATFORM picks the platform (default: cpu).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

PLATFORM = os.environ.get("TESSERA_PACK_PLATFORM", "cpu")


def test_the_pack_is_discovered_and_registers_its_kernel():
    from tessera.discovery import discover
    from tessera.kernel_registry import build_registry

    discovery = discover()
    report = next(p.report for p in discovery.plugins if p.report.plugin == "example_pack")
    assert report.status == "ok" and report.kernel_pack, report.error
    registry = build_registry(discovery)
    kernel = registry.get("rms_norm", "example_rms_norm")
    assert kernel.provider == "tessera-example-kernel-pack 0.1.0" and kernel.config_space is not None
    linear = registry.get("linear", "example_linear_kmajor")
    assert linear.prepare is not None and "[K, N]" in linear.weights_line()


def test_a_layer_keeps_only_the_prepared_weight():
    import torch

    from tessera.discovery import get_discovery, select_platform
    from tessera.kernel_registry import get_registry, platform_facts
    from tessera.pluggable_layers.context import KernelContext
    from tessera.pluggable_layers.linear import Linear

    platform = select_platform("cpu", get_discovery())
    overrides = {"linear": "example_linear_kmajor"}
    ctx = KernelContext(
        get_registry(), platform_facts(platform), torch.float32, torch.device("cpu"), overrides
    )
    layer = Linear(48, 40, True, ctx, "proj")
    weight, bias = torch.randn(40, 48), torch.randn(40)
    layer.load_shard("weight", weight)
    layer.load_shard("bias", bias)
    layer.finish_loading()
    x = torch.randn(5, 48)
    assert torch.allclose(layer(x), x @ weight.T + bias, atol=1e-5)
    kept = dict(layer.named_parameters()) | dict(layer.named_buffers())
    assert all(tuple(t.shape) != (40, 48) for t in kept.values())  # no second, checkpoint-form copy


def test_conformance_suite_passes_on_the_pack(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "tessera.conformance",
           "--tessera-platform", PLATFORM, "--tessera-kernels", "example_*"]  # fmt: skip
    env = dict(os.environ, TESSERA_HOME=str(tmp_path))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    # the 5 platform-contract checks, then the kernel's op cases (fixed, drawn and zoo shapes x dtypes)
    assert passed and int(passed.group(1)) > 20 and "failed" not in summary, summary


@pytest.mark.parametrize("rows", [1, 3, 256])
def test_every_chunk_size_matches_the_reference(rows):
    import torch
    from tessera_example_pack.rms_norm import rms_norm

    from tessera.pluggable_layers.reference import reference

    x, w = torch.randn(7, 96, dtype=torch.float64), torch.randn(96, dtype=torch.float64)
    out = torch.full((7, 96), float("nan"), dtype=torch.float32)
    rms_norm(x.float(), w.float(), 1e-6, out=out, config={"ROWS": rows})
    expected = reference("rms_norm")(x, w, 1e-6)
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-6)
