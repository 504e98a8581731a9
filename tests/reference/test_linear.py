"""linear and linear_fp8 against independent formulations."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.linear import linear
from tessera.pluggable_layers.reference.linear_fp8 import linear_fp8, quantize_per_channel


def test_linear_matches_a_dot_product_loop():
    x, w, b = (
        torch.randn(3, 5, dtype=torch.float64),
        torch.randn(4, 5, dtype=torch.float64),
        torch.randn(4, dtype=torch.float64),
    )
    expected = torch.tensor(
        [[sum(x[i, k] * w[n, k] for k in range(5)) + b[n] for n in range(4)] for i in range(3)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(linear(x, w, b), expected)
    with pytest.raises(KernelInputError, match="input features"):
        linear(x, torch.randn(4, 6, dtype=torch.float64))


def test_linear_fp8_close_to_unquantized_and_exact_on_representable_values():
    torch.manual_seed(0)
    x, w = torch.randn(16, 256), torch.randn(128, 256)
    wq, ws = quantize_per_channel(w, torch.float8_e4m3fn)
    got = linear_fp8(x, wq, ws)
    rel = (got - x @ w.T).norm() / (x @ w.T).norm()
    assert rel < 6e-2
    # values already on the fp8 grid (small integers, amax 448 per row) quantize exactly
    xi = torch.randint(-8, 9, (4, 32)).float()
    xi[:, 0] = 448
    wi = torch.randint(-8, 9, (8, 32)).float()
    wi[:, 0] = 448
    wq, ws = quantize_per_channel(wi, torch.float8_e4m3fn)
    torch.testing.assert_close(linear_fp8(xi, wq, ws), xi @ wi.T)


def test_linear_fp8_requires_an_fp8_weight():
    with pytest.raises(KernelInputError, match="fp8 dtype"):
        linear_fp8(torch.randn(2, 4), torch.randn(3, 4), torch.ones(3))
