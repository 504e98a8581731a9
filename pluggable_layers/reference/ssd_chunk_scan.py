"""Reference ssd_chunk_scan: the Mamba2 selective scan in its chunked state-space-dual form.

Per sequence, head ``h`` (group ``g = h // (H / G)``), with
``dt' = softplus(dt + dt_bias)`` (softplus only when ``dt_softplus``) the
recurrence is::

    state_t = exp(dt'_t * A[h]) * state_{t-1} + dt'_t * x_t[h] (outer) B_t[g]   # [P, N]
    out_t[h] = state_t @ C_t[g] + D[h] * x_t[h]

starting from ``ssm_states[state_indices[b]]`` when ``has_initial_state[b]``
(else zeros); the final state is written back there. This reference evaluates it
chunk by chunk (``chunk_size`` tokens): inside a chunk through the masked decay
matrix, across chunks through the carried state, which is how fast kernels
organise the work; tests check it against the token-by-token recurrence.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    INDEX,
    acc_dtype,
    check_dtype,
    check_index_range,
    check_out,
    check_rank,
    check_shape,
    fail,
    write,
)


def effective_dt(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool, acc) -> torch.Tensor:
    dt = dt.to(acc)
    if dt_bias is not None:
        dt = dt + dt_bias.to(acc)
    return torch.nn.functional.softplus(dt) if dt_softplus else dt


def heads_of_groups(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Expand ``[..., G, N]`` to ``[..., H, N]`` (each group serves H/G consecutive heads)."""
    return t.repeat_interleave(heads // t.shape[-2], dim=-2)


def check_ssm_args(op, x, dt, A, B, C, D, ssm_states, state_indices) -> None:
    check_dtype(op, "x", x, FLOATS)
    check_rank(op, "x", x, 3)
    rows, heads, head_dim = x.shape
    check_shape(op, "dt", dt, (rows, heads))
    check_shape(op, "A", A, (heads,))
    check_rank(op, "B", B, 3)
    check_shape(op, "C", C, tuple(B.shape))
    if B.shape[0] != rows or heads % B.shape[1]:
        fail(op, f"B/C must be [{rows}, G, N] with G dividing the {heads} heads, got {tuple(B.shape)}")
    if D is not None:
        check_shape(op, "D", D, (heads,))
    check_shape(op, "ssm_states", ssm_states, (None, heads, head_dim, B.shape[2]))
    check_dtype(op, "state_indices", state_indices, INDEX)
    check_index_range(op, "state_indices", state_indices, ssm_states.shape[0], "of the SSM state slots")


def scan_chunk(x, dt, A, B, C, state):
    """One chunk: x[L,H,P], dt[L,H], B/C[L,H,N], state[H,P,N] -> (y[L,H,P], new state)."""
    a_cum = torch.cumsum(dt * A, dim=0)  # [L, H]
    length = x.shape[0]
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    segment = (a_cum[:, None, :] - a_cum[None, :, :]).masked_fill(~causal[:, :, None], float("-inf"))
    weights = torch.exp(segment) * torch.einsum("thn,shn->tsh", C, B) * dt[None, :, :]
    y = torch.einsum("tsh,shp->thp", weights, x)
    y = y + torch.einsum("thn,hpn->thp", C, state) * torch.exp(a_cum)[:, :, None]
    decay_to_end = torch.exp(a_cum[-1][None, :] - a_cum) * dt  # [L, H]
    new_state = torch.exp(a_cum[-1])[:, None, None] * state + torch.einsum(
        "sh,shn,shp->hpn", decay_to_end, B, x
    )
    return y, new_state


def ssd_chunk_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
    query_start_loc: torch.Tensor,
    ssm_states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    chunk_size: int = 256,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "ssd_chunk_scan"
    check_ssm_args(op, x, dt, A, B, C, D, ssm_states, state_indices)
    batch = state_indices.shape[0]
    check_shape(op, "query_start_loc", query_start_loc, (batch + 1,))
    check_shape(op, "has_initial_state", has_initial_state, (batch,))
    if chunk_size < 1:
        fail(op, f"chunk_size must be positive, got {chunk_size}")
    check_out(op, out, tuple(x.shape), x.dtype)
    acc = acc_dtype(x)
    heads = x.shape[1]
    dt_eff = effective_dt(dt, dt_bias, dt_softplus, acc)
    Bh, Ch = heads_of_groups(B.to(acc), heads), heads_of_groups(C.to(acc), heads)
    result = torch.empty(x.shape, dtype=acc, device=x.device)
    for b in range(batch):
        start, end, slot = int(query_start_loc[b]), int(query_start_loc[b + 1]), int(state_indices[b])
        state = (
            ssm_states[slot].to(acc)
            if bool(has_initial_state[b])
            else torch.zeros_like(ssm_states[slot], dtype=acc)
        )
        for c0 in range(start, end, chunk_size):
            c1 = min(c0 + chunk_size, end)
            y, state = scan_chunk(x[c0:c1].to(acc), dt_eff[c0:c1], A.to(acc), Bh[c0:c1], Ch[c0:c1], state)
            result[c0:c1] = y
        ssm_states[slot] = state.to(ssm_states.dtype)
    if D is not None:
        result = result + D.to(acc)[None, :, None] * x.to(acc)
    return write(out, result.to(x.dtype))
