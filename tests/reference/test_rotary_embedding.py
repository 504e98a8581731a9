"""rotary_embedding against the complex-number form of the rotation."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.rotary_embedding import rotary_embedding


def cos_sin_cache(max_pos: int, rot: int, base: float = 10000.0) -> torch.Tensor:
    inv_freq = 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)
    angles = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def complex_rotate(
    x: torch.Tensor, positions: torch.Tensor, rot: int, is_neox: bool, base=10000.0
) -> torch.Tensor:
    inv_freq = 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)
    phase = torch.polar(torch.ones(1, dtype=torch.float64), positions[:, None].double() * inv_freq[None, :])
    part = x[..., :rot]
    if is_neox:
        z = torch.complex(part[..., : rot // 2], part[..., rot // 2 :])
    else:
        z = torch.complex(part[..., 0::2], part[..., 1::2])
    z = z * phase[:, None, :]
    rotated = torch.cat([z.real, z.imag], -1) if is_neox else torch.stack([z.real, z.imag], -1).flatten(-2)
    return torch.cat([rotated, x[..., rot:]], dim=-1)


@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize(("head", "rot"), [(64, 64), (128, 64)])
def test_rotary_matches_complex_multiplication(is_neox, head, rot):
    positions = torch.randint(0, 500, (11,))
    q, k = torch.randn(11, 4, head, dtype=torch.float64), torch.randn(11, 2, head, dtype=torch.float64)
    q_out, k_out = rotary_embedding(positions, q, k, cos_sin_cache(512, rot), is_neox)
    torch.testing.assert_close(q_out, complex_rotate(q, positions, rot, is_neox))
    torch.testing.assert_close(k_out, complex_rotate(k, positions, rot, is_neox))


def test_rotary_rejects_positions_past_the_cache():
    q = torch.randn(2, 1, 8)
    with pytest.raises(KernelInputError, match="outside"):
        rotary_embedding(torch.tensor([0, 40]), q, q.clone(), cos_sin_cache(16, 8), True)
