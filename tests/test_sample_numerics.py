"""sample is numerically safe at every finite temperature, in the reference, the cpu and the Triton kernels.

``temperature=1e-40`` (a float32 subnormal), 1e-38 and 1e-45 used to overflow
``logits / t`` to inf and softmax to NaN, so argmax picked token 0. A tiny
temperature must act like greedy (its mathematical limit); non-finite ones are
refused. The Triton kernel runs under TRITON_INTERPRET=1 in fp32.
"""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference import reference

TINY = [1e-45, 1e-40, 1e-38, 1e-30, 1e-12]


def kernels():
    from tessera_cpu.kernels import sample as cpu
    from tessera_triton.kernels import sample as triton_sample

    return {"reference": reference("sample"), "cpu": cpu.sample, "triton": triton_sample.sample}


@pytest.fixture(params=["reference", "cpu", "triton"])
def sample(request):
    return kernels()[request.param]


def inputs(rows: int, vocab: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * 3
    noise = torch.empty(rows, vocab).exponential_(generator=g)
    return logits, noise


@pytest.mark.parametrize("filtered", [False, True], ids=["race", "top_k_top_p"])
def test_tiny_temperatures_act_like_greedy(sample, filtered):
    logits, noise = inputs(len(TINY) + 1)
    temperature = torch.tensor([*TINY, 0.0], dtype=torch.float32)
    assert temperature[1] > 0, "1e-40 is a float32 subnormal, not zero"
    rows = len(temperature)
    top_k = torch.full((rows,), 5, dtype=torch.int32) if filtered else None
    top_p = torch.full((rows,), 0.9) if filtered else None
    tokens = sample(logits, temperature, top_k, top_p, noise)
    assert tokens.tolist() == logits.argmax(-1).tolist()


def test_tiny_temperature_with_masked_tokens_skips_them(sample):
    """min_tokens masks stop tokens to -inf: a tiny temperature must still pick the best unmasked token."""
    logits, noise = inputs(4, seed=1)
    best = logits.argmax(-1)
    logits[torch.arange(4), best] = float("-inf")
    logits[:, 0] = float("-inf")
    tokens = sample(logits, torch.tensor([1e-40, 1e-45, 1e-38, 0.5]), None, None, noise)
    assert tokens[:3].tolist() == logits.argmax(-1)[:3].tolist()
    assert bool(torch.isfinite(logits[torch.arange(4), tokens]).all()), "a masked token was drawn"


def test_ordinary_temperatures_are_unchanged(sample):
    """The overflow-safe forms give the tokens of the plain formula where that one does not overflow."""
    logits, noise = inputs(8, seed=2)
    temperature = torch.tensor([0.3, 0.7, 0.99, 1.0, 1.5, 3.0, 0.05, 0.0])
    expected = torch.argmax(torch.softmax(logits.double() / temperature.double().clamp_min(1e-300)[:, None], -1)
                            / noise.double(), -1)  # fmt: skip
    expected[-1] = logits[-1].argmax()
    assert sample(logits, temperature, None, None, noise).tolist() == expected.tolist()


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0])
def test_non_finite_or_negative_temperature_is_refused(sample, bad):
    logits, noise = inputs(2)
    with pytest.raises(KernelInputError, match="temperature must be finite and >= 0"):
        sample(logits, torch.tensor([0.5, bad]), None, None, noise)
