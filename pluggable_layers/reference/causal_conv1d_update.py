"""Reference causal_conv1d_update: one decode step of causal_conv1d per sequence.

``x[B, C]`` is one new input per sequence; ``conv_states[state_indices[b]]``
(``[C, W-1]``) is shifted left by one with ``x[b]`` appended, in place, and
``out[b] = act(bias + sum_j weight[:, j] * [state | x[b]][:, j])``.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import acc_dtype, check_out, check_shape, write
from tessera.pluggable_layers.reference.causal_conv1d import activate, check_conv_args, conv_window


def causal_conv1d_update(
    x: torch.Tensor,
    conv_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    state_indices: torch.Tensor,
    activation: str | None = "silu",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "causal_conv1d_update"
    check_conv_args(op, x, weight, bias, conv_states, state_indices, activation)
    check_shape(op, "state_indices", state_indices, (x.shape[0],))
    check_out(op, out, tuple(x.shape), x.dtype)
    acc = acc_dtype(x)
    result = torch.empty(x.shape, dtype=acc, device=x.device)
    for b in range(x.shape[0]):
        slot = int(state_indices[b])
        window = torch.cat([conv_states[slot].to(acc), x[b].to(acc)[:, None]], dim=-1)
        result[b] = activate(conv_window(window, weight, bias, acc), activation)[0]
        conv_states[slot] = window[:, 1:].to(conv_states.dtype)
    return write(out, result.to(x.dtype))
