"""tessera-cpu's torch-native kernels against the float64 reference, on fresh inputs, poisoned outputs."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.measure import normalized_error, to_reference_inputs
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera_cpu.kernels import elementwise, moe_experts, paged_attention, positional, sample

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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("rot", [64, 32])  # whole heads, and a partial rotary that passes the rest through
def test_rotary_embedding(dtype, is_neox, rot):
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(9, 8, 64, generator=g).to(dtype), torch.randn(9, 2, 64, generator=g).to(dtype)
    cache = torch.randn(100, rot, generator=g)
    positions = torch.randint(0, 100, (9,), generator=g)
    q_out, k_out = torch.full_like(q, float("nan")), torch.full_like(k, float("nan"))
    positional.rotary_embedding(positions, q, k, cache, is_neox, q_out, k_out)
    want_q, want_k = reference("rotary_embedding")(positions, q.double(), k.double(), cache.double(), is_neox)
    check("rotary_embedding", q_out, want_q, dtype)
    check("rotary_embedding", k_out, want_k, dtype)


#: (seq_lens, q_lens) of the batch shapes the kernel treats differently
ATTENTION_BATCHES = {
    "decodes": ([1, 17, 33, 8], [1, 1, 1, 1]),  # one batched call
    "equal-length decodes": ([19, 19, 19], [1, 1, 1]),  # one call without a mask
    "one decode": ([40], [1]),
    "mixed": ([1, 17, 33, 8], [1, 17, 5, 1]),  # decodes batched, each prefill chunk alone
    "fresh prompts": ([20, 20, 20], [20, 20, 20]),  # one causal call
    "chunks with prefixes": ([40, 36, 30, 7], [20, 30, 25, 1]),  # chunks padded into one call
    "empty queries": ([5, 12, 9], [2, 0, 1]),  # as many tokens as sequences, yet not all decodes
}


@pytest.mark.parametrize(("hq", "hk", "window"), [(8, 2, None), (4, 4, 3), (8, 1, None)])
@pytest.mark.parametrize("batch", list(ATTENTION_BATCHES))
@pytest.mark.parametrize("kv_layout", ["nhd", "hnd"])
def test_paged_attention(hq, hk, window, batch, kv_layout):
    """Every batch shape against the reference; unused cache slots hold NaN that must not reach the output."""
    from tessera.pluggable_layers.kv_layout import from_token_major

    g = torch.Generator().manual_seed(1)
    seq_lens, q_lens = ATTENTION_BATCHES[batch]
    keys = [torch.randn(n, hk, 32, generator=g) for n in seq_lens]
    values = [torch.randn(n, hk, 32, generator=g) for n in seq_lens]
    kc, vc, tables = build_paged(keys, values, 16, 16, g)
    q = torch.randn(sum(q_lens), hq, 32, generator=g)
    qsl = torch.tensor([0, *torch.cumsum(torch.tensor(q_lens), 0).tolist()], dtype=torch.int32)
    sl = torch.tensor(seq_lens, dtype=torch.int32)
    out = torch.full_like(q, float("nan"))
    caches = [from_token_major(c, kv_layout) for c in (kc, vc)]
    paged_attention.paged_attention(q, *caches, qsl, sl, tables, 0.2, window, out=out, kv_layout=kv_layout)
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


def test_degenerate_and_mixed_dtype_calls_match_the_reference():
    """The edges a fused fast path can lose: zero tokens, no rotary dims, q and k in different dtypes, a hidden
    size of 0, a weight in another dtype than x, caches in another dtype than q."""
    from tessera.pluggable_layers.reference.paged_attention import paged_attention as attention_ref

    rot_ref = reference("rotary_embedding")
    for positions, q, k, cache in (
        (torch.zeros(0, dtype=torch.int64), torch.randn(0, 4, 8), torch.randn(0, 2, 8), torch.randn(16, 8)),
        (torch.arange(3), torch.randn(3, 4, 8), torch.randn(3, 2, 8), torch.randn(16, 0)),
        (
            torch.arange(3),
            torch.randn(3, 4, 8, dtype=torch.float16),
            torch.randn(3, 2, 8),
            torch.randn(16, 8),
        ),
    ):
        for neox in (True, False):
            got, want = (
                positional.rotary_embedding(positions, q, k, cache, neox),
                rot_ref(positions, q, k, cache, neox),
            )
            for g, w in zip(got, want, strict=True):
                assert g.shape == w.shape and g.dtype == w.dtype
                assert torch.allclose(g.double(), w.double(), atol=2e-3 if g.dtype == torch.float16 else 1e-6)
    x, weight = torch.randn(5, 0), torch.ones(0)
    assert elementwise.rms_norm(x, weight, 1e-6).shape == (5, 0)
    assert [t.shape for t in elementwise.add_rms_norm(x, x, weight, 1e-6)] == [(5, 0), (5, 0)]
    x16, w32 = torch.randn(3, 16, dtype=torch.bfloat16), torch.randn(5, 16)
    check(
        "linear",
        elementwise.linear(x16, w32),
        reference("linear")(*to_reference_inputs((x16, w32))),
        x16.dtype,
    )
    with pytest.raises(Exception, match="out must have shape"):
        elementwise.add_rms_norm(
            x16, x16, torch.ones(16), 1e-6, residual_out=torch.empty(3, 16, dtype=torch.float64)
        )
    g = torch.Generator().manual_seed(2)
    keys, values = ([torch.randn(n, 2, 16, generator=g) for n in (5, 9)] for _ in range(2))
    kc, vc, tables = build_paged(keys, values, 4, 8, g)  # float32 caches, NaN past each sequence
    q = torch.randn(2, 4, 16, generator=g).bfloat16()  # two decodes
    qsl, lens = torch.tensor([0, 1, 2], dtype=torch.int32), torch.tensor([5, 9], dtype=torch.int32)
    got = paged_attention.paged_attention(q, kc, vc, qsl, lens, tables, 0.25)
    want = attention_ref(q, kc, vc, qsl, lens, tables, 0.25)
    assert got.dtype == want.dtype and torch.allclose(got.float(), want.float(), atol=2e-2)
