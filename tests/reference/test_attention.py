"""kv_cache_write and paged_attention against dense SDPA on unpaged tensors."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.kv_cache_write import kv_cache_write
from tessera.pluggable_layers.reference.paged_attention import paged_attention


def build_paged(keys, values, block_size, num_blocks, generator):
    """Scatter per-sequence dense K/V into a shuffled paged cache; return caches and block tables."""
    heads, dim = keys[0].shape[1:]
    key_cache = torch.full((num_blocks, block_size, heads, dim), float("nan"), dtype=keys[0].dtype)
    value_cache = key_cache.clone()
    free = torch.randperm(num_blocks, generator=generator).tolist()
    max_blocks = max((k.shape[0] + block_size - 1) // block_size for k in keys)
    tables = torch.zeros(len(keys), max_blocks, dtype=torch.int32)
    for b, (k, v) in enumerate(zip(keys, values, strict=True)):
        n = (k.shape[0] + block_size - 1) // block_size
        blocks = [free.pop() for _ in range(n)]
        tables[b, :n] = torch.tensor(blocks)
        slots = torch.tensor(
            [blocks[i // block_size] * block_size + i % block_size for i in range(k.shape[0])]
        )
        kv_cache_write(k, v, key_cache, value_cache, slots)
    return key_cache, value_cache, tables


@pytest.mark.parametrize(("hq", "hk"), [(4, 4), (8, 2), (8, 1)])
@pytest.mark.parametrize("window", [None, 5])
def test_paged_attention_matches_dense_sdpa(hq, hk, window):
    g = torch.Generator().manual_seed(hq * 10 + hk)
    D, bs = 16, 4
    seq_lens, q_lens = [1, 9, 16, 23], [1, 9, 3, 1]  # decode, full prefill, chunked prefill, long decode
    keys = [torch.randn(n, hk, D, dtype=torch.float64, generator=g) for n in seq_lens]
    values = [torch.randn(n, hk, D, dtype=torch.float64, generator=g) for n in seq_lens]
    key_cache, value_cache, tables = build_paged(keys, values, bs, 32, g)
    qs = [torch.randn(n, hq, D, dtype=torch.float64, generator=g) for n in q_lens]
    qsl = torch.tensor([0, *torch.cumsum(torch.tensor(q_lens), 0).tolist()], dtype=torch.int32)
    out = paged_attention(
        torch.cat(qs),
        key_cache,
        value_cache,
        qsl,
        torch.tensor(seq_lens, dtype=torch.int32),
        tables,
        0.25,
        window,
    )
    for b, (q, k, v) in enumerate(zip(qs, keys, values, strict=True)):
        L, Lq = seq_lens[b], q_lens[b]
        qpos = torch.arange(L - Lq, L)[:, None]
        kpos = torch.arange(L)[None, :]
        mask = kpos <= qpos
        if window:
            mask &= qpos - kpos < window
        expected = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(0, 1),
            k.transpose(0, 1),
            v.transpose(0, 1),
            attn_mask=mask,
            scale=0.25,
            enable_gqa=hq != hk,
        ).transpose(0, 1)
        torch.testing.assert_close(out[qsl[b] : qsl[b + 1]], expected)


def test_kv_cache_write_skips_padding_and_rejects_out_of_range_slots():
    k, v = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    kc, vc = torch.zeros(2, 4, 2, 4), torch.zeros(2, 4, 2, 4)
    kv_cache_write(k, v, kc, vc, torch.tensor([5, -1, 0]))
    torch.testing.assert_close(kc[1, 1], k[0])
    torch.testing.assert_close(vc[0, 0], v[2])
    assert int((kc != 0).any(-1).any(-1).sum()) == 2
    with pytest.raises(KernelInputError, match="outside"):
        kv_cache_write(k, v, kc, vc, torch.tensor([0, 1, 8]))


def test_paged_attention_rejects_block_table_past_the_cache():
    q = torch.randn(1, 2, 8)
    kc = torch.randn(4, 4, 2, 8)
    with pytest.raises(KernelInputError, match=r"block_tables\[0\] holds 9"):
        paged_attention(
            q,
            kc,
            kc,
            torch.tensor([0, 1], dtype=torch.int32),
            torch.tensor([6], dtype=torch.int32),
            torch.tensor([[0, 9]], dtype=torch.int32),
            1.0,
        )


def test_paged_attention_rejects_mismatched_heads():
    with pytest.raises(KernelInputError, match="multiple of KV heads"):
        paged_attention(
            torch.randn(1, 3, 8),
            torch.randn(2, 4, 2, 8),
            torch.randn(2, 4, 2, 8),
            torch.tensor([0, 1], dtype=torch.int32),
            torch.tensor([1], dtype=torch.int32),
            torch.tensor([[0]], dtype=torch.int32),
            1.0,
        )
