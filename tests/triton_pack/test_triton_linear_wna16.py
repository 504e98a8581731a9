"""The pack's linear_wna16 under TRITON_INTERPRET=1: its prepare on GPTQ (v1, v2) and AWQ checkpoint tensors,
then the GEMM, against the float64 reference on the checkpoint tensors: group size 128, 32 (a group
smaller than the K tile) and per channel, one token and ragged M, split K, bias, fp32 and fp16; the GEMV
that serves a few rows, with the same inputs, and both of its formulations (GV_MODE) on its edge shapes in
fp32, fp16 and bf16."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference import reference
from tests.quant_checkpoints import pack_awq, pack_gptq, quantize_rtn
from tests.triton_pack.test_triton_elementwise import normalized_error

pytest.importorskip("triton")

from tessera_triton.kernels import linear_wna16 as wna16  # noqa: E402


def checkpoint(k, n, group, fmt, sym=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * k**-0.5
    q, zeros, scales = quantize_rtn(w, group, sym)
    t = pack_awq(q, zeros, scales) if fmt == "awq" else pack_gptq(q, zeros, scales, group, v1=fmt == "gptq")
    return {"qweight": t["qweight"], "scales": t["scales"], "qzeros": t["qzeros"]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("m", "k", "n", "group", "fmt", "config"), [
    (1, 256, 64, 128, "gptq", {"BLOCK_K": 64, "BLOCK_N": 32, "SPLIT_K": 0, "UNPACK": 1}),
    (5, 256, 96, -1, "awq", {"BLOCK_K": 64, "BLOCK_N": 64, "SPLIT_K": 2, "DEQUANT": 1}),
    (33, 128, 64, 32, "gptq_v2", {"BLOCK_K": 64, "BLOCK_N": 32, "SPLIT_K": 1, "UNPACK": 1}),
    (17, 384, 40, 128, "awq", {"BLOCK_K": 128, "BLOCK_N": 32, "BLOCK_M": 32, "SPLIT_K": 1, "UNPACK": 0}),
    # the GEMV (M <= GEMV_ROWS): one tile, split K, a group smaller than GV_K, one group over a K that no
    # tile divides, ragged N, the dot path for the same M
    (1, 256, 64, 128, "gptq", {"GEMV_ROWS": 1, "GV_N": 64, "GV_K": 128}),
    (3, 1024, 96, 128, "awq", {"GEMV_ROWS": 4, "GV_N": 32, "GV_K": 64}),
    (8, 256, 40, 32, "gptq_v2", {"GEMV_ROWS": 8, "GV_N": 32, "GV_K": 128}),
    (2, 200, 72, -1, "gptq", {"GEMV_ROWS": 2, "GV_N": 64, "GV_K": 64}),
    (2, 256, 64, 128, "gptq", {"GEMV_ROWS": 0}),
])  # fmt: skip
def test_prepared_gemm_matches_reference(dtype, m, k, n, group, fmt, config):
    weights = checkpoint(k, n, group, fmt)
    weights["scales"] = weights["scales"].to(dtype)
    x, bias = torch.randn(m, k).to(dtype), torch.randn(n).to(dtype)
    prepared = wna16.prepare(dict(weights), weight_format=fmt)
    assert prepared["qweight"].shape == (k // 8, n) and prepared["qzeros"].shape == weights["scales"].shape
    out = torch.full((m, n), float("nan"), dtype=dtype)
    got = wna16.linear_wna16(x, prepared["qweight"], prepared["scales"], prepared["qzeros"], bias,
                             weight_format=fmt, out=out, config={**wna16.CONFIG_SPACE.default, **config})  # fmt: skip
    ref = reference("linear_wna16")(x.double(), weights["qweight"], weights["scales"].double(),
                                    weights["qzeros"], bias.double(), weight_format=fmt)  # fmt: skip
    assert got is out and not torch.isnan(got).any()
    assert normalized_error(got, ref) <= (2e-3 if dtype == torch.float32 else 5e-3)


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("m", "k", "n", "group", "fmt", "tiles", "bias"), [
    (1, 256, 64, 128, "gptq", (64, 128), True),  # one tile column, K in two groups
    (3, 1024, 96, 128, "awq", (32, 64), True),  # split K
    (1, 1024, 64, 256, "gptq_v2", (64, 64), False),  # split K, each split starting or ending inside a group
    (8, 256, 40, 32, "gptq_v2", (32, 128), True),  # a group smaller than GV_K (the tile shrinks), ragged N
    (2, 480, 64, 40, "gptq", (64, 64), False),  # a group of 40: 8-row tiles
    (2, 200, 72, -1, "gptq", (64, 64), True),  # one group over a K no tile divides, ragged N
    (1, 456, 72, -1, "awq", (64, 64), False),  # the same, split K: the last split ends in a partial tile
    (1, 256, 40, 128, "gptq", (256, 64), True),  # GV_N wider than N
])  # fmt: skip
def test_gemv_modes_match_reference(mode, dtype, m, k, n, group, fmt, tiles, bias):
    """Both GEMV formulations (GV_MODE 0: each tile reduced over K when read; 1: per-column sums reduced
    once) on the GEMV's edge shapes, every element written (the output starts as NaN)."""
    weights = checkpoint(k, n, group, fmt, seed=k + n)
    weights["scales"] = weights["scales"].to(dtype)
    x = torch.randn(m, k).to(dtype)
    b = torch.randn(n).to(dtype) if bias else None
    prepared = wna16.prepare(dict(weights), weight_format=fmt)
    config = {**wna16.CONFIG_SPACE.default, "GEMV_ROWS": 8, "GV_N": tiles[0], "GV_K": tiles[1]}
    config["GV_MODE"] = mode
    assert wna16.CONFIG_SPACE.problem(config) is None
    out = torch.full((m, n), float("nan"), dtype=dtype)
    got = wna16.linear_wna16(x, prepared["qweight"], prepared["scales"], prepared["qzeros"], b,
                             weight_format=fmt, out=out, config=config)  # fmt: skip
    ref = reference("linear_wna16")(x.double(), weights["qweight"], weights["scales"].double(),
                                    weights["qzeros"], None if b is None else b.double(), weight_format=fmt)  # fmt: skip
    assert got is out and not torch.isnan(got).any()
    tolerance = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    assert normalized_error(got, ref) <= tolerance


def test_awq_repack_gives_the_gptq_words():
    gptq, awq = checkpoint(256, 64, 128, "gptq_v2"), checkpoint(256, 64, 128, "awq")
    assert torch.equal(wna16.prepare(awq, weight_format="awq")["qweight"], gptq["qweight"])
    v1 = wna16.prepare(checkpoint(256, 64, 128, "gptq"), weight_format="gptq")
    assert torch.equal(v1["qzeros"], wna16.prepare(gptq, weight_format="gptq_v2")["qzeros"])


def test_checkpoint_layout_is_refused_with_a_hint():
    weights = checkpoint(128, 64, 128, "gptq")
    with pytest.raises(KernelInputError, match="run this kernel's prepare"):
        wna16.linear_wna16(torch.randn(2, 128), weights["qweight"], weights["scales"], weights["qzeros"])


def test_malformed_inputs_are_clear_errors():
    prepared = wna16.prepare(checkpoint(128, 64, 128, "gptq"), weight_format="gptq")
    q, s, z = prepared["qweight"], prepared["scales"], prepared["qzeros"]
    with pytest.raises(KernelInputError, match="x must have 2 dimensions"):
        wna16.linear_wna16(torch.randn(2, 3, 128), q, s, z)
    with pytest.raises(KernelInputError, match="scales must have 2 dimensions"):
        wna16.linear_wna16(torch.randn(2, 128), q, s[0], z)
    with pytest.raises(KernelInputError, match="at least one group"):
        wna16.linear_wna16(torch.randn(2, 128), q, s[:0], z)


def test_gemv_tiles_never_straddle_groups():
    from tessera_triton.kernels.linear_wna16_gemv import gemv_tile_k

    assert gemv_tile_k({"GV_K": 128}, 4096, 128, 32) == 128
    assert gemv_tile_k({"GV_K": 128}, 4096, 32, 128) == 32  # shrunk to the group
    assert gemv_tile_k({"GV_K": 64}, 200, 200, 1) == 64  # one group: any tile
    assert gemv_tile_k({"GV_K": 64}, 480, 40, 12) == 8  # the largest power of two dividing 40
    assert gemv_tile_k({"GV_K": 64}, 36, 12, 3) is None  # not a multiple of 8: the dot path serves it
