"""The ROCm fp8 GEMM on an AITER-style pre-shuffled weight, without AMD hardware: the shuffle against
the layout's address formula, the Triton kernel under TRITON_INTERPRET=1 on poisoned outputs against
the float64 reference (fp16 and bf16 activations, e4m3fn and e4m3fnuz weights, ragged M and K tiles,
bias), and the conformance op cases run through its prepare (an unshuffled weight fails with figures)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tessera.conformance.cases import all_cases
from tessera.conformance.ops import run_op_case
from tessera.platform import Capabilities
from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.measure import error_figures
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel
from tessera.pluggable_layers.registry import KernelQuery, PlatformFacts

pytest.importorskip("triton")

from tessera_rocm.kernels import linear_fp8_preshuffled as shuffled  # noqa: E402

NAME = "rocm_preshuffled_linear_fp8"


def rocm_facts(fp8="float8_e4m3fn", arch="gfx950") -> PlatformFacts:
    caps = Capabilities(dtypes=("float32", "float16", "bfloat16"), fp8_dtype=fp8, triton_backend=True)
    return PlatformFacts("rocm", caps, device="AMD_MI355X", arch=arch)


@pytest.mark.parametrize(("dtype", "kp"), [(torch.uint8, 16), (torch.int16, 8)])
def test_shuffle_places_each_element_at_the_aiter_address(dtype, kp):
    n, k = 48, 96
    w = torch.arange(n * k, dtype=torch.int64).remainder(251 if dtype == torch.uint8 else 30011)
    w = w.to(dtype).view(n, k)
    flat = shuffled.shuffle_weight(w).reshape(-1)
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(k), indexing="ij")
    addr = (
        (rows // 16) * 16 * k
        + (cols // 32) * 512
        + ((cols % 32) // kp) * 16 * kp
        + (rows % 16) * kp
        + cols % kp
    )
    assert torch.equal(flat[addr.reshape(-1)].view(n, k), w)
    assert torch.equal(shuffled.unshuffle_weight(shuffled.shuffle_weight(w)), w)
    # one lane's 16 bytes: row n's KP consecutive K elements are adjacent in memory
    assert torch.equal(flat[:kp], w[0, :kp]) and torch.equal(flat[kp : 2 * kp], w[1, :kp])


@pytest.mark.parametrize("fp8", ["float8_e4m3fn", "float8_e4m3fnuz"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("m", "k", "n", "bias", "config"), [
    (1, 256, 64, False, None),
    (7, 96, 48, True, {"BLOCK_K": 64, "BLOCK_N": 32}),  # a ragged last K tile, N not a multiple of BLOCK_N
    (33, 128, 16, True, {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 32}),
])  # fmt: skip
def test_kernel_matches_the_reference_on_poisoned_outputs(fp8, dtype, m, k, n, bias, config):
    g = torch.Generator().manual_seed(m * 31 + n)
    wq, ws = quantize_per_channel(torch.randn(n, k, generator=g) * k**-0.5, getattr(torch, fp8))
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    prepared = shuffled.prepare({"weight": wq, "weight_scale": ws.double()})
    assert prepared["weight"].shape == (n, k) and not torch.equal(
        prepared["weight"].view(torch.uint8), wq.view(torch.uint8)
    )
    out = torch.full((m, n), float("nan"), dtype=dtype)
    got = shuffled.linear_fp8(x, prepared["weight"], prepared["weight_scale"], b, out=out, config=config)
    expected = reference("linear_fp8")(x.double(), wq, ws.double(), b.double() if bias else None)
    figures = error_figures(got, expected)
    assert got is out and figures.problem is None
    assert figures.normalized <= OPS["linear_fp8"].budget(str(dtype).removeprefix("torch.")), figures


def test_supports_needs_the_tile_shapes_and_the_device_fp8():
    facts = rocm_facts()
    ok = {"fp8_dtype": "float8_e4m3fn", "in_features": 4096, "out_features": 1024}
    assert shuffled.supports(KernelQuery("linear_fp8", facts, "bfloat16", ok)) is None
    assert "in_features % 32" in shuffled.supports(
        KernelQuery("linear_fp8", facts, "bfloat16", {**ok, "in_features": 100})
    )
    assert "needs the layer's" in shuffled.supports(
        KernelQuery("linear_fp8", facts, "bfloat16", {"fp8_dtype": "float8_e4m3fn"})
    )
    assert "computes in float8_e4m3fnuz" in shuffled.supports(
        KernelQuery("linear_fp8", rocm_facts("float8_e4m3fnuz", "gfx942"), "bfloat16", ok)
    )
    with pytest.raises(KernelInputError, match="multiple of 16"):
        shuffled.shuffle_weight(torch.zeros(40, 64, dtype=torch.float8_e4m3fn))


def test_conformance_op_cases_run_through_prepare(fresh_discovery):
    from tessera.discovery import discover
    from tessera.kernel_registry import build_registry

    registry = build_registry(discover())
    kernel = registry.find(NAME)
    assert kernel.platforms == ("rocm",) and kernel.weights_line().startswith(
        f"prepared by {NAME} as weight fp8"
    )
    facts = rocm_facts()
    cases = [c for c in all_cases(False, 11) if c.op == "linear_fp8"]
    results = [
        run_op_case(registry, facts, kernel, c, d, torch.device("cpu"), 5)
        for c in cases
        for d in ("float16", "bfloat16")
    ]
    passed = {r.case for r in results if r.status == "pass"}
    assert passed >= {"m1_k256_n128", "m33_k512_n96_bias", "m80_k256_n128_bias"}
    assert all(r.status in ("pass", "skip") for r in results), [(r.case_id, r.message) for r in results]
    assert all("shuffled layout needs" in r.message for r in results if r.status == "skip")
    # the same kernel without its prepare reads the checkpoint's order as if shuffled: it fails, with figures
    unprepared = dataclasses.replace(kernel, prepare=None)
    wrong = run_op_case(registry, facts, unprepared, cases[0], "float16", torch.device("cpu"), 5)
    assert wrong.status == "fail" and wrong.normalized > wrong.budget


def test_fp8_checkpoint_layer_prepares_and_runs_on_it(fresh_discovery):
    """Default selection on ROCm stays scaled_mm; with the override the layer keeps the shuffled weight only."""
    from tessera.discovery import discover
    from tessera.kernel_registry import build_registry
    from tessera.pluggable_layers.context import KernelContext
    from tessera.pluggable_layers.quant import Fp8CheckpointLinear

    registry, facts = build_registry(discover()), rocm_facts()
    query = {"fp8_dtype": "float8_e4m3fn", "in_features": 64, "out_features": 48}
    selection = registry.select("linear_fp8", facts, "bfloat16", **query)
    assert selection.kernel.name == "rocm_scaled_mm_linear_fp8"
    assert any(c.kernel.name == NAME and c.verdict == "outranked" for c in selection.candidates)
    ctx = KernelContext(registry, facts, torch.float16, torch.device("cpu"), overrides={"linear_fp8": NAME})
    layer = Fp8CheckpointLinear(64, [32, 16], True, ctx, "gate_up", shard_names=("gate", "up"))
    g = torch.Generator().manual_seed(3)
    real = []
    for shard, n in (("gate", 32), ("up", 16)):
        wq, ws = quantize_per_channel(torch.randn(n, 64, generator=g) * 0.1, torch.float8_e4m3fn)
        layer.load_shard("weight", wq, shard)
        layer.load_shard("weight_scale", ws, shard)
        layer.load_shard("bias", torch.randn(n, generator=g).half(), shard)
        real.append((wq, ws))
    layer.finish_loading()
    assert ctx.choices[-1].kernel == NAME and ctx.choices[-1].weights.startswith(f"prepared by {NAME}")
    wq, ws = torch.cat([w for w, _ in real]), torch.cat([s for _, s in real])
    assert torch.equal(shuffled.unshuffle_weight(layer.weight.data).view(torch.uint8), wq.view(torch.uint8))
    x = torch.randn(5, 64, generator=g).half()
    expected = reference("linear_fp8")(x.double(), wq, ws.double(), layer.bias.double())
    figures = error_figures(layer(x), expected)
    assert figures.problem is None and figures.normalized <= OPS["linear_fp8"].budget("float16")
