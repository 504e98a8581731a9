"""rms_norm, add_rms_norm, gated_rms_norm, silu_and_mul against independent formulations."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.add_rms_norm import add_rms_norm
from tessera.pluggable_layers.reference.gated_rms_norm import gated_rms_norm
from tessera.pluggable_layers.reference.rms_norm import rms_norm
from tessera.pluggable_layers.reference.silu_and_mul import silu_and_mul


def test_rms_norm_matches_torch_rms_norm():
    x, w = torch.randn(7, 4099, dtype=torch.float64), torch.randn(4099, dtype=torch.float64)
    expected = torch.nn.functional.rms_norm(x, (4099,), w, eps=1e-6)
    torch.testing.assert_close(rms_norm(x, w, 1e-6), expected)


def test_rms_norm_writes_out_and_rejects_bad_input():
    x, w = torch.randn(3, 8), torch.randn(8)
    out = torch.full_like(x, float("nan"))
    assert rms_norm(x, w, 1e-5, out=out) is out and not out.isnan().any()
    with pytest.raises(KernelInputError, match="weight must have shape"):
        rms_norm(x, torch.randn(9), 1e-5)
    with pytest.raises(KernelInputError, match="dtype int64"):
        rms_norm(torch.ones(2, 8, dtype=torch.int64), w, 1e-5)


def test_add_rms_norm_is_add_then_norm():
    x, r, w = (
        torch.randn(5, 64, dtype=torch.float64),
        torch.randn(5, 64, dtype=torch.float64),
        torch.randn(64, dtype=torch.float64),
    )
    out, res = add_rms_norm(x, r, w, 1e-6)
    torch.testing.assert_close(res, x + r)
    torch.testing.assert_close(out, torch.nn.functional.rms_norm(x + r, (64,), w, eps=1e-6))


def test_add_rms_norm_rejects_mixed_dtypes():
    with pytest.raises(KernelInputError, match="share one dtype"):
        add_rms_norm(torch.randn(2, 4), torch.randn(2, 4, dtype=torch.float16), torch.randn(4), 1e-6)


@pytest.mark.parametrize("group_size", [16, 64])
def test_gated_rms_norm_per_group_loop(group_size):
    x, z, w = (
        torch.randn(6, 64, dtype=torch.float64),
        torch.randn(6, 64, dtype=torch.float64),
        torch.randn(64, dtype=torch.float64),
    )
    got = gated_rms_norm(x, z, w, 1e-5, group_size)
    g = x * z / (1 + torch.exp(-z))
    expected = torch.empty_like(x)
    for start in range(0, 64, group_size):
        part = g[:, start : start + group_size]
        rms = torch.sqrt((part * part).sum(-1, keepdim=True) / group_size + 1e-5)
        expected[:, start : start + group_size] = part / rms * w[start : start + group_size]
    torch.testing.assert_close(got, expected)
    with pytest.raises(KernelInputError, match="must divide"):
        gated_rms_norm(x, z, w, 1e-5, 48)


def test_silu_and_mul_by_definition():
    x = torch.randn(300, 2 * 37, dtype=torch.float64)
    gate, up = x[:, :37], x[:, 37:]
    torch.testing.assert_close(silu_and_mul(x), gate / (1 + torch.exp(-gate)) * up)
    with pytest.raises(KernelInputError, match="must be even"):
        silu_and_mul(torch.randn(2, 5))
