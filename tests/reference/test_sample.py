"""sample: greedy, top-k and top-p against brute force on small vocabularies."""

from __future__ import annotations

import itertools

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.sample import sample


def brute_force_distribution(logits, temperature, top_k, top_p):
    """The sampling distribution by definition: enumerate tokens in probability order."""
    p = torch.softmax(logits.double() / temperature, 0)
    order = sorted(range(len(p)), key=lambda i: -float(p[i]))
    allowed = set(order)
    if 0 < top_k < len(p):
        kth = float(p[order[top_k - 1]])
        allowed = {i for i in allowed if float(p[i]) >= kth}
    if top_p < 1:
        mass = sum(float(p[i]) for i in allowed)
        kept, before = set(), 0.0
        for i in [i for i in order if i in allowed]:
            if before < top_p * mass:
                kept.add(i)
            before += float(p[i])
        allowed = kept
    q = torch.zeros_like(p)
    for i in allowed:
        q[i] = p[i]
    return q / q.sum()


def test_greedy_rows_take_the_argmax():
    logits = torch.randn(5, 50)
    n = 5
    tokens = sample(logits, torch.zeros(n), torch.zeros(n, dtype=torch.int32), torch.ones(n))
    assert tokens.tolist() == logits.argmax(-1).tolist()


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (3, 1.0), (0, 0.6), (4, 0.8)])
def test_sampling_frequencies_match_brute_force(top_k, top_p):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(8, generator=g) * 1.5
    rows = 6000
    batch = logits.expand(rows, 8).contiguous()
    noise = torch.empty(rows, 8, dtype=torch.float32).exponential_(generator=g)
    t = torch.full((rows,), 0.9)
    tokens = sample(
        batch, t, torch.full((rows,), top_k, dtype=torch.int32), torch.full((rows,), top_p), noise
    )
    freq = torch.bincount(tokens, minlength=8).double() / rows
    expected = brute_force_distribution(logits, 0.9, top_k, top_p)
    assert torch.all(freq[expected == 0] == 0), "a filtered-out token was sampled"
    assert float((freq - expected).abs().max()) < 0.03, (freq, expected)


def test_same_noise_same_tokens_and_bad_parameters():
    logits = torch.randn(3, 20)
    noise = torch.empty(3, 20).exponential_()
    args = (torch.ones(3), torch.zeros(3, dtype=torch.int32), torch.ones(3), noise)
    assert sample(logits, *args).tolist() == sample(logits, *args).tolist()
    with pytest.raises(KernelInputError, match="top_p"):
        sample(logits, torch.ones(3), torch.zeros(3, dtype=torch.int32), torch.tensor([1.0, 0.0, 0.5]))


def test_every_kept_set_is_reachable():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    for k, p in itertools.product([1, 2, 4], [0.3, 1.0]):
        dist = brute_force_distribution(logits, 1.0, k, p)
        assert abs(float(dist.sum()) - 1) < 1e-9 and int((dist > 0).sum()) >= 1
