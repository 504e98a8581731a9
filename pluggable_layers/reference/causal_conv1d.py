"""Reference causal_conv1d: Mamba2's depthwise causal convolution over a varlen batch.

``x[T, C]`` holds the tokens of ``B`` sequences back to back
(``query_start_loc``). Each sequence continues from its conv state
``conv_states[state_indices[b]]`` (``[C, W-1]``, oldest input first) when
``has_initial_state[b]``, else from zeros::

    window = [state | x_b]                            # [C, W-1+L]
    out[t, c] = act(bias[c] + sum_j weight[c, j] * window[c, t + j])

and the last ``W-1`` inputs of ``window`` are written back as the new state.
``activation`` is ``"silu"`` or None.
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
    checking_values,
    fail,
    write,
)

ACTIVATIONS = (None, "silu")


def activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return torch.nn.functional.silu(y) if activation == "silu" else y


def check_conv_args(op, x, weight, bias, conv_states, state_indices, activation) -> None:
    check_dtype(op, "x", x, FLOATS)
    check_rank(op, "x", x, 2)
    channels = x.shape[1]
    check_shape(op, "weight", weight, (channels, None))
    if bias is not None:
        check_shape(op, "bias", bias, (channels,))
    check_shape(op, "conv_states", conv_states, (None, channels, weight.shape[1] - 1))
    check_dtype(op, "state_indices", state_indices, INDEX)
    check_index_range(op, "state_indices", state_indices, conv_states.shape[0], "of the conv state slots")
    if activation not in ACTIVATIONS:
        fail(op, f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def conv_window(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, acc) -> torch.Tensor:
    """Outputs for every full window of ``window[C, W-1+L]``: ``[L, C]``."""
    width = weight.shape[1]
    frames = window.unfold(-1, width, 1)  # [C, L, W]
    y = (frames * weight.to(acc)[:, None, :]).sum(-1).T
    return y + bias.to(acc) if bias is not None else y


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    query_start_loc: torch.Tensor,
    conv_states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    activation: str | None = "silu",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    op = "causal_conv1d"
    check_conv_args(op, x, weight, bias, conv_states, state_indices, activation)
    batch = state_indices.shape[0]
    check_shape(op, "query_start_loc", query_start_loc, (batch + 1,))
    check_shape(op, "has_initial_state", has_initial_state, (batch,))
    if batch and checking_values() and int(query_start_loc[-1]) != x.shape[0]:
        fail(op, f"query_start_loc must end at the {x.shape[0]} tokens of x, got {query_start_loc.tolist()}")
    check_out(op, out, tuple(x.shape), x.dtype)
    acc = acc_dtype(x)
    result = torch.empty(x.shape, dtype=acc, device=x.device)
    for b in range(batch):
        start, end, slot = int(query_start_loc[b]), int(query_start_loc[b + 1]), int(state_indices[b])
        state = conv_states[slot].to(acc)
        if not bool(has_initial_state[b]):
            state = torch.zeros_like(state)
        window = torch.cat([state, x[start:end].to(acc).T], dim=-1)
        result[start:end] = activate(conv_window(window, weight, bias, acc), activation)
        conv_states[slot] = window[:, window.shape[1] - state.shape[1] :].to(conv_states.dtype)
    return write(out, result.to(x.dtype))
