"""moe_route and moe_experts against per-token loops."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel
from tessera.pluggable_layers.reference.moe_experts import moe_experts
from tessera.pluggable_layers.reference.moe_route import moe_route


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
@pytest.mark.parametrize("renormalize", [True, False])
def test_moe_route_per_token(scoring, renormalize):
    logits = torch.randn(9, 16, dtype=torch.float64)
    weights, ids = moe_route(logits, 4, renormalize, scoring)
    assert ids.dtype == torch.int32 and weights.shape == (9, 4)
    for t in range(9):
        scores = torch.softmax(logits[t], 0) if scoring == "softmax" else torch.sigmoid(logits[t])
        best = sorted(range(16), key=lambda e: -float(scores[e]))[:4]
        assert ids[t].tolist() == best
        expected = scores[best] / (scores[best].sum() if renormalize else 1)
        torch.testing.assert_close(weights[t], expected)


def test_moe_route_rejects_bad_top_k():
    with pytest.raises(KernelInputError, match="top_k"):
        moe_route(torch.randn(2, 4), 5)


def per_token_moe(x, w13, w2, weights, ids, s13=None, s2=None):
    out = torch.zeros_like(x)
    inter = w13.shape[1] // 2
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            a = w13[e] * (s13[e][:, None] if s13 is not None else 1)
            b = w2[e] * (s2[e][:, None] if s2 is not None else 1)
            h = a.double() @ x[t]
            act = torch.nn.functional.silu(h[:inter]) * h[inter:]
            out[t] += weights[t, j] * (b.double() @ act)
    return out


def test_moe_experts_matches_per_token_loop_with_empty_experts():
    E, H, I, T, k = 8, 32, 24, 13, 2
    x = torch.randn(T, H, dtype=torch.float64)
    w13, w2 = torch.randn(E, 2 * I, H, dtype=torch.float64), torch.randn(E, H, I, dtype=torch.float64)
    ids = torch.randint(0, 5, (T, k), dtype=torch.int32)  # experts 5..7 receive nothing
    weights = torch.rand(T, k, dtype=torch.float64)
    torch.testing.assert_close(moe_experts(x, w13, w2, weights, ids), per_token_moe(x, w13, w2, weights, ids))


def test_moe_experts_fp8_weights():
    E, H, I, T = 4, 32, 16, 5
    x = torch.randn(T, H, dtype=torch.float64)
    w13, w2 = torch.randn(E, 2 * I, H), torch.randn(E, H, I)
    q13, s13 = zip(*(quantize_per_channel(w13[e], torch.float8_e4m3fn) for e in range(E)), strict=True)
    q2, s2 = zip(*(quantize_per_channel(w2[e], torch.float8_e4m3fn) for e in range(E)), strict=True)
    q13, s13, q2, s2 = torch.stack(q13), torch.stack(s13), torch.stack(q2), torch.stack(s2)
    ids = torch.randint(0, E, (T, 2), dtype=torch.int32)
    weights = torch.rand(T, 2, dtype=torch.float64)
    got = moe_experts(x, q13, q2, weights, ids, s13, s2)
    torch.testing.assert_close(
        got, per_token_moe(x, q13.double(), q2.double(), weights, ids, s13.double(), s2.double())
    )


def test_moe_experts_rejects_ids_past_the_experts():
    x = torch.randn(2, 8)
    with pytest.raises(KernelInputError, match="outside"):
        moe_experts(x, torch.randn(2, 8, 8), torch.randn(2, 8, 4), torch.ones(2, 1), torch.tensor([[0], [2]]))
