"""The triton pack's first kernels under TRITON_INTERPRET=1 on CPU tensors, fp32 and fp16,
odd shapes (hidden 4099, 1 token, 300 tokens), poisoned outputs, against the float64 reference."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference

triton = pytest.importorskip("triton")

from tessera_triton.kernels import kv_cache_write as kvw  # noqa: E402
from tessera_triton.kernels import rms_norm as rn  # noqa: E402
from tessera_triton.kernels import rotary_embedding as rope  # noqa: E402
from tessera_triton.kernels import silu_and_mul as sm  # noqa: E402

DTYPES = [torch.float32, torch.float16]
TOKENS = [1, 300]
# (tokens, hidden): the odd hidden size with few tokens, many tokens with a small odd hidden size,
# so the interpreter (one Python loop per program) stays fast
SHAPES = [(1, 4099), (3, 4099), (300, 131)]


def normalized_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert not out.isnan().any(), "output has NaN (unwritten elements?)"
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30))


def budget(op: str, dtype: torch.dtype) -> float:
    return OPS[op].budget(str(dtype).removeprefix("torch."))


def poisoned(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype)


def as64(*ts):
    return [t.double() if t.is_floating_point() else t for t in ts]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "hidden"), SHAPES)
@pytest.mark.parametrize("config", [None, {"BLOCK": 256, "num_warps": 2}])
def test_rms_norm(dtype, tokens, hidden, config):
    x, w = torch.randn(tokens, hidden, dtype=dtype), torch.randn(hidden, dtype=dtype)
    out = poisoned(x.shape, dtype)
    rn.rms_norm(x, w, 1e-6, out=out, config=config)
    assert normalized_error(out, reference("rms_norm")(*as64(x, w), 1e-6)) <= budget("rms_norm", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "hidden"), SHAPES)
def test_add_rms_norm(dtype, tokens, hidden):
    x, r = torch.randn(tokens, hidden, dtype=dtype), torch.randn(tokens, hidden, dtype=dtype)
    w = torch.randn(hidden, dtype=dtype)
    out, res = poisoned(x.shape, dtype), poisoned(x.shape, dtype)
    rn.add_rms_norm(x, r, w, 1e-6, out=out, residual_out=res)
    ref_out, ref_res = reference("add_rms_norm")(*as64(x, r, w), 1e-6)
    assert normalized_error(res, ref_res) <= budget("add_rms_norm", dtype)
    assert normalized_error(out, ref_out) <= budget("add_rms_norm", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "hidden"), SHAPES)
def test_silu_and_mul(dtype, tokens, hidden):
    x = torch.randn(tokens, 2 * hidden, dtype=dtype)
    out = poisoned((tokens, hidden), dtype)
    sm.silu_and_mul(x, out=out, config={"BLOCK": 512, "num_warps": 4})
    assert normalized_error(out, reference("silu_and_mul")(x.double())) <= budget("silu_and_mul", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize(("is_neox", "head", "rot"), [(True, 128, 128), (False, 64, 64), (True, 80, 32)])
def test_rotary_embedding_on_a_fused_qkv_view(dtype, tokens, is_neox, head, rot):
    hq, hk = (4, 2) if tokens == 1 else (2, 1)
    qkv = torch.randn(tokens, (hq + 2 * hk) * head, dtype=dtype)
    q = qkv[:, : hq * head].view(tokens, hq, head)
    k = qkv[:, hq * head : (hq + hk) * head].view(tokens, hk, head)
    positions = torch.randint(0, 1000, (tokens,))
    cache = torch.randn(1000, rot)
    q_out, k_out = poisoned(q.shape, dtype), poisoned(k.shape, dtype)
    rope.rotary_embedding(positions, q, k, cache, is_neox, q_out=q_out, k_out=k_out)
    ref_q, ref_k = reference("rotary_embedding")(positions, q.double(), k.double(), cache.double(), is_neox)
    assert normalized_error(q_out, ref_q) <= budget("rotary_embedding", dtype)
    assert normalized_error(k_out, ref_k) <= budget("rotary_embedding", dtype)


def test_rotary_embedding_with_q_and_k_in_different_dtypes():
    positions = torch.randint(0, 100, (3,))
    q, k, cache = torch.randn(3, 4, 64), torch.randn(3, 2, 64, dtype=torch.float16), torch.randn(100, 64)
    q_out, k_out = rope.rotary_embedding(positions, q, k, cache, True)
    ref_q, ref_k = reference("rotary_embedding")(positions, q.double(), k.double(), cache.double(), True)
    assert normalized_error(q_out, ref_q) <= budget("rotary_embedding", torch.float32)
    assert normalized_error(k_out, ref_k) <= budget("rotary_embedding", torch.float16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", TOKENS)
def test_kv_cache_write(dtype, tokens):
    heads, dim, block = 3, 40, 16
    blocks = tokens // block + 4
    kv = torch.randn(tokens, 2 * heads * dim, dtype=dtype)
    key, value = kv[:, : heads * dim].view(tokens, heads, dim), kv[:, heads * dim :].view(tokens, heads, dim)
    slots = torch.randperm(blocks * block)[:tokens]
    slots[0] = -1  # padding token
    kc, vc = poisoned((blocks, block, heads, dim), dtype), poisoned((blocks, block, heads, dim), dtype)
    ref_kc, ref_vc = kc.clone(), vc.clone()
    kvw.kv_cache_write(key, value, kc, vc, slots)
    reference("kv_cache_write")(key, value, ref_kc, ref_vc, slots)
    assert torch.equal(kc.isnan(), ref_kc.isnan()) and torch.equal(kc.nan_to_num(), ref_kc.nan_to_num())
    assert torch.equal(vc.nan_to_num(), ref_vc.nan_to_num())


def test_launchers_reject_bad_input():
    with pytest.raises(KernelInputError, match="unit stride"):
        rn.rms_norm(torch.randn(4, 8).T, torch.randn(4), 1e-6)
    with pytest.raises(KernelInputError, match="dtype int32"):
        sm.silu_and_mul(torch.ones(2, 4, dtype=torch.int32))
    with pytest.raises(KernelInputError, match="outside"):
        kvw.kv_cache_write(
            torch.randn(1, 1, 4),
            torch.randn(1, 1, 4),
            torch.zeros(1, 2, 1, 4),
            torch.zeros(1, 2, 1, 4),
            torch.tensor([2]),
        )
    with pytest.raises(KernelInputError, match="rotary dim"):
        rope.rotary_embedding(
            torch.tensor([0]), torch.randn(1, 1, 8), torch.randn(1, 1, 8), torch.randn(4, 10), True
        )


def test_sample_draws_its_own_noise_when_none_is_given():
    from tessera_triton.kernels import sample as smp

    logits = torch.randn(6, 300)
    temperature = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 0.0])
    tokens = smp.sample(logits, temperature, None, None, None)
    greedy = temperature == 0
    assert torch.equal(tokens[greedy], logits.argmax(-1)[greedy])
    assert bool(((tokens >= 0) & (tokens < 300)).all())
    filtered = smp.sample(logits, torch.ones(6), torch.full((6,), 1, dtype=torch.int32), None, None)
    assert torch.equal(filtered, logits.argmax(-1)), "top-k 1 keeps only the most likely token"


@pytest.mark.parametrize("splits", [0, 3, 64])
def test_sample_splits_the_vocabulary_and_keeps_argmax_ties_lowest(splits):
    from tessera_triton.kernels import sample as smp

    rows, vocab = 3, 5000  # two BLOCK=4096 tiles, the second one partial
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=g)
    logits[0, 4500] = logits[0, 17] = 50.0  # a tie across splits: the lowest index wins, as torch.argmax
    logits[1, 4999] = 40.0  # the last element of the partial tile
    noise = torch.empty(rows, vocab).exponential_(generator=g)
    temperature = torch.tensor([0.0, 0.0, 0.7])
    config = {"BLOCK": 4096, "SPLITS": splits, "num_warps": 8}
    tokens = smp.sample(logits, temperature, None, None, noise, config=config)
    expected = reference("sample")(logits.double(), temperature, None, None, noise.double())
    assert tokens.tolist() == expected.tolist()
    assert tokens[:2].tolist() == [17, 4999]
