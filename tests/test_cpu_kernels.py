"""tessera-cpu's torch-native kernels against the float64 reference, on fresh inputs, poisoned outputs."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.measure import normalized_error, to_reference_inputs
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera_cpu.kernels import elementwise, moe_experts, paged_attention, sample

from .reference.test_attention import build_paged


def check(op, out, expected, dtype):
    assert not torch.isnan(out).any(), "unwritten output elements"
    assert normalized_error(out, expected) <= OPS[op].budget(str(dtype).removeprefix("torch."))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norms_activation_linear(dtype):
    x, r, w = (
        torch.randn(7, 4099, dtype=dtype),
        torch.randn(7, 4099, dtype=dtype),
        torch.randn(4099, dtype=dtype),
    )
    out = torch.full_like(x, float("nan"))
    elementwise.rms_norm(x, w, 1e-6, out=out)
    check("rms_norm", out, reference("rms_norm")(*to_reference_inputs((x, w)), 1e-6), dtype)
    o, res = elementwise.add_rms_norm(x, r, w, 1e-6)
    ref_o, ref_res = reference("add_rms_norm")(*to_reference_inputs((x, r, w)), 1e-6)
    check("add_rms_norm", o, ref_o, dtype)
    check("add_rms_norm", res, ref_res, dtype)
    y = torch.full((7, 2049), float("nan"), dtype=dtype)
    g = torch.randn(7, 4098, dtype=dtype)
    elementwise.silu_and_mul(g, out=y)
    check("silu_and_mul", y, reference("silu_and_mul")(g.double()), dtype)
    wl = torch.randn(300, 4099, dtype=dtype)
    check("linear", elementwise.linear(x, wl, None), reference("linear")(x.double(), wl.double()), dtype)


@pytest.mark.parametrize(("hq", "hk", "window"), [(8, 2, None), (4, 4, 3), (8, 1, None)])
@pytest.mark.parametrize("decode_only", [False, True])
def test_paged_attention(hq, hk, window, decode_only):
    """Mixed batches go sequence by sequence; all-decode batches take the one-call path, whose padding
    reads NaN-filled cache blocks that must not reach the output."""
    g = torch.Generator().manual_seed(1)
    seq_lens, q_lens = [1, 17, 33, 8], [1, 1, 1, 1] if decode_only else [1, 17, 5, 1]
    keys = [torch.randn(n, hk, 32, generator=g) for n in seq_lens]
    values = [torch.randn(n, hk, 32, generator=g) for n in seq_lens]
    kc, vc, tables = build_paged(keys, values, 16, 12, g)
    q = torch.randn(sum(q_lens), hq, 32, generator=g)
    qsl = torch.tensor([0, *torch.cumsum(torch.tensor(q_lens), 0).tolist()], dtype=torch.int32)
    sl = torch.tensor(seq_lens, dtype=torch.int32)
    out = torch.full_like(q, float("nan"))
    paged_attention.paged_attention(q, kc, vc, qsl, sl, tables, 0.2, window, out=out)
    expected = reference("paged_attention")(
        q.double(), kc.double(), vc.double(), qsl, sl, tables, 0.2, window
    )
    check("paged_attention", out, expected, torch.float32)


def test_moe_experts_with_empty_experts():
    x = torch.randn(11, 64)
    w13, w2 = torch.randn(8, 96, 64), torch.randn(8, 64, 48)
    ids = torch.randint(0, 5, (11, 2), dtype=torch.int32)
    weights = torch.rand(11, 2)
    out = torch.full_like(x, float("nan"))
    moe_experts.moe_experts(x, w13, w2, weights, ids, out=out)
    check(
        "moe_experts",
        out,
        reference("moe_experts")(*to_reference_inputs((x, w13, w2, weights, ids))),
        torch.float32,
    )


def test_sample_matches_reference_token_for_token():
    logits = torch.randn(64, 97) * 2
    temperature = torch.rand(64) + 0.2
    temperature[::4] = 0
    top_k = torch.randint(0, 20, (64,), dtype=torch.int32)
    top_p = torch.rand(64) * 0.9 + 0.1
    top_p[::3] = 1.0
    noise = torch.empty(64, 97).exponential_()
    got = sample.sample(logits, temperature, top_k, top_p, noise)
    assert got.tolist() == reference("sample")(logits, temperature, top_k, top_p, noise).tolist()
