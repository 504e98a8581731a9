"""causal_conv1d(_update) against torch conv1d; ssd_chunk_scan and selective_state_update
against the token-by-token recurrence."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.causal_conv1d import causal_conv1d
from tessera.pluggable_layers.reference.causal_conv1d_update import causal_conv1d_update
from tessera.pluggable_layers.reference.selective_state_update import selective_state_update
from tessera.pluggable_layers.reference.ssd_chunk_scan import ssd_chunk_scan

f64 = torch.float64


def offsets(lengths):
    return torch.tensor([0, *torch.cumsum(torch.tensor(lengths), 0).tolist()], dtype=torch.int32)


def test_causal_conv1d_matches_torch_conv1d_with_initial_states():
    C, W, lengths = 6, 4, [1, 5, 9]
    x = torch.randn(sum(lengths), C, dtype=f64)
    weight, bias = torch.randn(C, W, dtype=f64), torch.randn(C, dtype=f64)
    states = torch.randn(5, C, W - 1, dtype=f64)
    initial = states.clone()
    idx, has = torch.tensor([3, 0, 4], dtype=torch.int32), torch.tensor([True, False, True])
    out = causal_conv1d(x, weight, bias, offsets(lengths), states, idx, has, activation="silu")
    qsl = offsets(lengths)
    for b in range(3):
        xs = x[qsl[b] : qsl[b + 1]].T  # [C, L]
        init = initial[idx[b]] if has[b] else torch.zeros(C, W - 1, dtype=f64)
        full = torch.cat([init, xs], -1)[None]
        expected = torch.nn.functional.silu(
            torch.nn.functional.conv1d(full, weight[:, None, :], bias, groups=C)
        )[0].T
        torch.testing.assert_close(out[qsl[b] : qsl[b + 1]], expected)
        torch.testing.assert_close(states[idx[b]], full[0, :, -(W - 1) :])
    torch.testing.assert_close(states[1], initial[1])  # untouched slot


def test_causal_conv1d_update_equals_one_token_prefill():
    C, W = 5, 4
    x, weight = torch.randn(3, C, dtype=f64), torch.randn(C, W, dtype=f64)
    states = torch.randn(4, C, W - 1, dtype=f64)
    states_prefill = states.clone()
    idx = torch.tensor([2, 0, 3], dtype=torch.int32)
    got = causal_conv1d_update(x, states, weight, None, idx, None)
    expected = causal_conv1d(
        x, weight, None, offsets([1, 1, 1]), states_prefill, idx, torch.ones(3, dtype=torch.bool), None
    )
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(states, states_prefill)


def recurrence(x, dt, A, B, C, D, init):
    """Token-by-token Mamba2 recurrence for one sequence (dt already effective)."""
    H = x.shape[1]
    Bh, Ch = B.repeat_interleave(H // B.shape[1], 1), C.repeat_interleave(H // C.shape[1], 1)
    state, ys = init.clone(), []
    for t in range(x.shape[0]):
        state = (
            torch.exp(dt[t] * A)[:, None, None] * state
            + dt[t][:, None, None] * x[t][:, :, None] * Bh[t][:, None, :]
        )
        ys.append(torch.einsum("hpn,hn->hp", state, Ch[t]) + D[:, None] * x[t])
    return torch.stack(ys), state


@pytest.mark.parametrize("chunk_size", [4, 8])
def test_ssd_chunk_scan_matches_the_recurrence(chunk_size):
    H, P, N, G = 4, 3, 5, 2
    lengths = [1, 7, 8, 13]  # one token, shorter than a chunk, chunk boundary, several chunks
    T = sum(lengths)
    x, dt = torch.randn(T, H, P, dtype=f64), torch.randn(T, H, dtype=f64)
    A, D, dt_bias = -torch.rand(H, dtype=f64) - 0.1, torch.randn(H, dtype=f64), torch.randn(H, dtype=f64)
    B, C = torch.randn(T, G, N, dtype=f64), torch.randn(T, G, N, dtype=f64)
    states = torch.randn(6, H, P, N, dtype=f64)
    initial = states.clone()
    idx, has = torch.tensor([5, 1, 2, 0], dtype=torch.int32), torch.tensor([True, False, True, True])
    out = ssd_chunk_scan(x, dt, A, B, C, D, dt_bias, True, offsets(lengths), states, idx, has, chunk_size)
    dt_eff = torch.nn.functional.softplus(dt + dt_bias)
    qsl = offsets(lengths)
    for b in range(4):
        s, e = qsl[b], qsl[b + 1]
        init = initial[idx[b]] if has[b] else torch.zeros(H, P, N, dtype=f64)
        y, final = recurrence(x[s:e], dt_eff[s:e], A, B[s:e], C[s:e], D, init)
        torch.testing.assert_close(out[s:e], y)
        torch.testing.assert_close(states[idx[b]], final)


def test_selective_state_update_is_one_recurrence_step():
    Bt, H, P, N, G = 3, 4, 2, 5, 1
    x, dt, z = (
        torch.randn(Bt, H, P, dtype=f64),
        torch.randn(Bt, H, dtype=f64),
        torch.randn(Bt, H, P, dtype=f64),
    )
    A, D = -torch.rand(H, dtype=f64), torch.randn(H, dtype=f64)
    B, C = torch.randn(Bt, G, N, dtype=f64), torch.randn(Bt, G, N, dtype=f64)
    states = torch.randn(5, H, P, N, dtype=f64)
    initial = states.clone()
    idx = torch.tensor([4, 0, 2], dtype=torch.int32)
    out = selective_state_update(states, x, dt, A, B, C, D, z, None, False, idx)
    for b in range(Bt):
        y, final = recurrence(x[b : b + 1], dt[b : b + 1], A, B[b : b + 1], C[b : b + 1], D, initial[idx[b]])
        torch.testing.assert_close(out[b], y[0] * torch.nn.functional.silu(z[b]))
        torch.testing.assert_close(states[idx[b]], final)


def test_state_indices_past_the_pool_are_rejected():
    with pytest.raises(KernelInputError, match="state_indices holds 7"):
        causal_conv1d_update(
            torch.randn(1, 4), torch.randn(2, 4, 3), torch.randn(4, 4), None, torch.tensor([7]), None
        )
