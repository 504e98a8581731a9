"""The Triton logprobs pass equals the shared torch one (tessera.pluggable_layers.sample_features.logprobs_of) on
fresh random logits: values, ranks and the top values, across tile edges (a last tile narrower than N), 16-bit
inputs, N = 0 and the op's largest N; rows of -inf and NaN keep every id in range and distinct."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.ops import MAX_LOGPROBS
from tessera.pluggable_layers.sample_features import logprobs_of
from tessera_triton.kernels.sample_logprobs import BLOCK, triton_logprobs

CASES = [(3, 1000, 5, torch.float32), (2, BLOCK + 1, 5, torch.float32), (2, BLOCK + 3, MAX_LOGPROBS, torch.float16),
         (4, 2 * BLOCK + 17, 1, torch.bfloat16), (2, 300, 0, torch.float32)]  # fmt: skip


@pytest.mark.parametrize("rows, vocab, n, dtype", CASES)
def test_matches_the_torch_logprobs(rows, vocab, n, dtype):
    g = torch.Generator().manual_seed(vocab + n)
    logits = (torch.randn(rows, vocab, generator=g) * 3).to(dtype)
    tokens = torch.randint(0, vocab, (rows,), generator=g)
    values, ids, rank = triton_logprobs(logits, tokens, n)
    want_values, want_ids, want_rank = logprobs_of(logits, tokens, n)
    assert values.shape == (rows, 1 + n) and ids.dtype == torch.int64 and rank.dtype == torch.int64
    assert torch.equal(rank, want_rank) and torch.equal(ids[:, 0], tokens)
    assert torch.allclose(values, want_values, atol=1e-4)  # top values; ids may differ only within ties
    lp = torch.log_softmax(logits.float(), dim=-1)
    assert torch.allclose(lp.gather(1, ids), values, atol=1e-4)


def test_rows_of_minus_inf_and_nan_keep_ids_in_range_and_distinct():
    vocab, n = BLOCK + 2, 5  # the last tile has two columns: three placeholders that must never come back
    logits = torch.randn(3, vocab)
    logits[0] = float("-inf")
    logits[1, 100:] = float("nan")
    logits[2, BLOCK:] = float("-inf")
    tokens = torch.tensor([3, 101, 0])
    values, ids, rank = triton_logprobs(logits, tokens, n)
    assert int(ids.min()) >= 0 and int(ids.max()) < vocab
    assert all(len(set(row[1:])) == n for row in ids.tolist())
    want_values, _, want_rank = logprobs_of(logits, tokens, n)  # all -inf: -inf - -inf, NaN in both
    assert torch.allclose(values, want_values, atol=1e-4, equal_nan=True) and torch.equal(rank, want_rank)
    assert torch.isnan(values[1]).all() and torch.isfinite(values[2]).all()
    assert set(ids[1, 1:].tolist()) <= set(range(100, vocab))  # NaN first, as torch.topk orders it
