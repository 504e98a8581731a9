"""Reference selective_state_update: one decode step of the Mamba2 recurrence.

For each sequence ``b`` (state slot ``s = state_indices[b]``) and head ``h``
(group ``g``), with ``dt' = softplus(dt + dt_bias)`` when ``dt_softplus``::

    state = exp(dt'[b,h] * A[h]) * ssm_states[s, h] + dt'[b,h] * x[b,h] (outer) B[b,g]
    out[b,h] = state @ C[b,g] + D[h] * x[b,h]         (times silu(z[b,h]) when z is given)

and ``state`` is written back to ``ssm_states[s, h]`` in place.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import acc_dtype, check_out, check_shape, write
from tessera.pluggable_layers.reference.ssd_chunk_scan import check_ssm_args, effective_dt, heads_of_groups


def selective_state_update(
    ssm_states: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
    state_indices: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "selective_state_update"
    check_ssm_args(op, x, dt, A, B, C, D, ssm_states, state_indices)
    check_shape(op, "state_indices", state_indices, (x.shape[0],))
    if z is not None:
        check_shape(op, "z", z, tuple(x.shape))
    check_out(op, out, tuple(x.shape), x.dtype)
    acc = acc_dtype(x)
    heads = x.shape[1]
    dt_eff = effective_dt(dt, dt_bias, dt_softplus, acc)  # [B, H]
    Bh, Ch = heads_of_groups(B.to(acc), heads), heads_of_groups(C.to(acc), heads)
    slots = state_indices.long()
    state = ssm_states[slots].to(acc)  # [B, H, P, N]
    decay = torch.exp(dt_eff * A.to(acc))[:, :, None, None]
    state = decay * state + dt_eff[:, :, None, None] * x.to(acc)[:, :, :, None] * Bh[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", state, Ch)
    if D is not None:
        y = y + D.to(acc)[None, :, None] * x.to(acc)
    if z is not None:
        y = y * torch.nn.functional.silu(z.to(acc))
    ssm_states[slots] = state.to(ssm_states.dtype)
    return write(out, y.to(x.dtype))
