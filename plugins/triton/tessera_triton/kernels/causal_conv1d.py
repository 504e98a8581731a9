"""Triton causal_conv1d (varlen prefill) and causal_conv1d_update (decode) for the Mamba2 mixer.

Layout: x [T, C] (prefill) or [B, C] (decode) with unit stride in C; weight
[C, W]; conv_states [S, C, W-1] with unit stride in the last dimension.

Prefill: one program per (BLOCK_T flat tokens, BLOCK_C channels). Each token
finds its sequence by counting the query_start_loc entries at or below it; tap
``j`` of the window reads input ``p - (W-1) + j`` of the sequence (p the token's
position in it), from x when that is >= 0, else from the sequence's conv state
(zeros without an initial state). A second launch writes each sequence's last
W-1 inputs back as its state, after every program has read the old one.

Decode: one program per (sequence, BLOCK_C channels) reads its state, emits one
output and writes the state shifted by one, in place.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_dtype, check_last_dim_contiguous, check_out
from tessera.pluggable_layers.reference.causal_conv1d import check_conv_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, constants, launch_options, next_pow2

FLOATS = (torch.float32, torch.float16, torch.bfloat16)

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_T": [1, 8, 16, 32, 64], "BLOCK_C": [64, 128, 256, 512], "num_warps": [1, 2, 4, 8]},
    # 8 warps: at 4 the 16 x 256 tile takes 255 registers a thread on sm_90 and spills (the compile check
    # reads ptxas's report); at 8 it takes 198 and spills nothing
    default={"BLOCK_T": 16, "BLOCK_C": 256, "num_warps": 8},
)
SHAPE_KEY = ShapeKey(
    {"channels": "pow2", "width": "exact", "tokens": "pow2"},
    lambda x, weight, *a, **k: {"channels": x.shape[1], "width": weight.shape[1], "tokens": x.shape[0]},
)
UPDATE_CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_C": [64, 128, 256, 512, 1024], "num_warps": [1, 2, 4, 8]},
    default={"BLOCK_C": 256, "num_warps": 2},
)
UPDATE_SHAPE_KEY = ShapeKey(
    {"channels": "pow2", "width": "exact", "seqs": "pow2"},
    lambda x, conv_states, weight, *a, **k: {"channels": x.shape[1], "width": weight.shape[1], "seqs": x.shape[0]},
)  # fmt: skip


@triton.jit
def _sequence_of(tokens, qsl_ptr, B, BLOCK_T: tl.constexpr, BLOCK_B: tl.constexpr):
    """The sequence each token belongs to: how many sequence ends lie at or below it."""
    seq = tl.zeros([BLOCK_T], dtype=tl.int32)
    for b0 in range(0, B, BLOCK_B):
        b = b0 + tl.arange(0, BLOCK_B)
        ends = tl.load(qsl_ptr + 1 + b, mask=b < B, other=2147483647)
        seq += tl.sum((ends[None, :] <= tokens[:, None]).to(tl.int32), axis=1)
    return seq


@triton.jit
def _conv_prefill_kernel(
    x_ptr, w_ptr, bias_ptr, qsl_ptr, states_ptr, idx_ptr, init_ptr, out_ptr,
    T, C, B, stride_x, stride_o, stride_ss, stride_sc,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    t_ok = tokens < T
    c_ok = chans < C
    seq = tl.minimum(_sequence_of(tokens, qsl_ptr, B, BLOCK_T, BLOCK_B), B - 1)
    start = tl.load(qsl_ptr + seq, mask=t_ok, other=0)
    slot = tl.load(idx_ptr + seq, mask=t_ok, other=0).to(tl.int64)
    has_init = tl.load(init_ptr + seq, mask=t_ok, other=0) != 0
    pos = tokens - start
    acc = tl.zeros([BLOCK_T, BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + chans, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    for j in tl.static_range(WIDTH):
        src = pos - (WIDTH - 1) + j  # input index within the sequence; < 0 reads the state
        w = tl.load(w_ptr + chans * WIDTH + j, mask=c_ok, other=0.0).to(tl.float32)
        from_x = t_ok & (src >= 0)
        from_state = t_ok & (src < 0) & has_init
        xv = tl.load(x_ptr + (tokens - (WIDTH - 1) + j)[:, None].to(tl.int64) * stride_x + chans[None, :],
                     mask=from_x[:, None] & c_ok[None, :], other=0.0)  # fmt: skip
        sv = tl.load(states_ptr + slot[:, None] * stride_ss + chans[None, :] * stride_sc + (WIDTH - 1 + src)[:, None],
                     mask=from_state[:, None] & c_ok[None, :], other=0.0)  # fmt: skip
        acc += (xv.to(tl.float32) + sv.to(tl.float32)) * w[None, :]
    if SILU:
        acc = acc / (1.0 + tl.exp(-acc))
    out_ptrs = out_ptr + tokens[:, None].to(tl.int64) * stride_o + chans[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=t_ok[:, None] & c_ok[None, :])


@triton.jit
def _conv_state_writeback_kernel(
    x_ptr, qsl_ptr, states_ptr, idx_ptr, init_ptr, C, stride_x, stride_ss, stride_sc,
    WIDTH: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """New state of sequence b: the last W-1 entries of [old state | x_b] (old state zeros without init)."""
    b = tl.program_id(0)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = chans < C
    start = tl.load(qsl_ptr + b)
    length = tl.load(qsl_ptr + b + 1) - start
    slot = tl.load(idx_ptr + b).to(tl.int64)
    has_init = tl.load(init_ptr + b) != 0
    i = tl.arange(0, BLOCK_W)
    src = length - (WIDTH - 1) + i  # input index of new state entry i; < 0 keeps an old state entry
    i_ok = i < WIDTH - 1
    row = states_ptr + slot * stride_ss + chans[None, :] * stride_sc
    old = tl.load(
        row + (WIDTH - 1 + src)[:, None], mask=(i_ok & (src < 0))[:, None] & c_ok[None, :], other=0.0
    )
    old = tl.where(has_init, old.to(tl.float32), 0.0)
    new = tl.load(x_ptr + (start + src)[:, None].to(tl.int64) * stride_x + chans[None, :],
                  mask=(i_ok & (src >= 0))[:, None] & c_ok[None, :], other=0.0)  # fmt: skip
    value = old.to(tl.float32) + new.to(tl.float32)
    tl.store(row + i[:, None], value.to(states_ptr.dtype.element_ty), mask=i_ok[:, None] & c_ok[None, :])


@triton.jit
def _conv_update_kernel(
    x_ptr, w_ptr, bias_ptr, states_ptr, idx_ptr, out_ptr, C, stride_x, stride_o, stride_ss, stride_sc,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = chans < C
    slot = tl.load(idx_ptr + b).to(tl.int64)
    row = states_ptr + slot * stride_ss + chans[:, None] * stride_sc
    i = tl.arange(0, BLOCK_W)
    s_mask = c_ok[:, None] & (i[None, :] < WIDTH - 1)
    state = tl.load(row + i[None, :], mask=s_mask, other=0.0).to(tl.float32)  # [BLOCK_C, BLOCK_W]
    xv = tl.load(x_ptr + b.to(tl.int64) * stride_x + chans, mask=c_ok, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + chans[:, None] * WIDTH + i[None, :], mask=s_mask, other=0.0).to(tl.float32)
    w_last = tl.load(w_ptr + chans * WIDTH + WIDTH - 1, mask=c_ok, other=0.0).to(tl.float32)
    acc = tl.sum(state * w, axis=1) + xv * w_last
    if HAS_BIAS:
        acc += tl.load(bias_ptr + chans, mask=c_ok, other=0.0).to(tl.float32)
    if SILU:
        acc = acc / (1.0 + tl.exp(-acc))
    tl.store(out_ptr + b.to(tl.int64) * stride_o + chans, acc.to(out_ptr.dtype.element_ty), mask=c_ok)
    # shift left by one: entry i takes old entry i+1, the last takes x
    nxt = tl.load(row + (i + 1)[None, :], mask=c_ok[:, None] & (i[None, :] < WIDTH - 2), other=0.0).to(
        tl.float32
    )
    shifted = tl.where(i[None, :] == WIDTH - 2, xv[:, None], nxt)
    tl.debug_barrier()
    tl.store(row + i[None, :], shifted.to(states_ptr.dtype.element_ty), mask=s_mask)


def _check(op, x, weight, conv_states, out):
    check_dtype(op, "x", x, FLOATS)
    check_last_dim_contiguous(op, "x", x)
    check_last_dim_contiguous(op, "conv_states", conv_states)
    check_out(op, out, tuple(x.shape), x.dtype)
    return torch.empty_like(x) if out is None else out, weight.contiguous()


def causal_conv1d(x, weight, bias, query_start_loc, conv_states, state_indices, has_initial_state,
                  activation="silu", out=None, config=None):  # fmt: skip
    op = "causal_conv1d"
    check_conv_args(op, x, weight, bias, conv_states, state_indices, activation)
    out, weight = _check(op, x, weight, conv_states, out)
    tokens, channels = x.shape
    batch = state_indices.shape[0]
    width = weight.shape[1]
    if batch == 0 or width < 2:
        from tessera.pluggable_layers.reference import reference

        return reference(op)(x, weight, bias, query_start_loc, conv_states, state_indices, has_initial_state,
                             activation, out=out)  # fmt: skip
    config = config or CONFIG_SPACE.default
    init = has_initial_state.to(torch.int32)
    if tokens:
        grid = (triton.cdiv(tokens, config["BLOCK_T"]), triton.cdiv(channels, config["BLOCK_C"]))
        _conv_prefill_kernel[grid](
            x, weight, bias if bias is not None else weight, query_start_loc, conv_states, state_indices, init, out,
            tokens, channels, batch, x.stride(0), out.stride(0), conv_states.stride(0), conv_states.stride(1),
            WIDTH=width, HAS_BIAS=bias is not None, SILU=activation == "silu", BLOCK_B=64,
            **constants(config, _conv_prefill_kernel), **launch_options(config),
        )  # fmt: skip
    _conv_state_writeback_kernel[(batch, triton.cdiv(channels, 256))](
        x, query_start_loc, conv_states, state_indices, init, channels, x.stride(0), conv_states.stride(0),
        conv_states.stride(1), WIDTH=width, BLOCK_W=next_pow2(width - 1), BLOCK_C=256,
    )  # fmt: skip
    return out


def causal_conv1d_update(
    x, conv_states, weight, bias, state_indices, activation="silu", out=None, config=None
):
    op = "causal_conv1d_update"
    check_conv_args(op, x, weight, bias, conv_states, state_indices, activation)
    out, weight = _check(op, x, weight, conv_states, out)
    batch, channels = x.shape
    width = weight.shape[1]
    config = config or UPDATE_CONFIG_SPACE.default
    if batch and width >= 2:
        _conv_update_kernel[(batch, triton.cdiv(channels, config["BLOCK_C"]))](
            x, weight, bias if bias is not None else weight, conv_states, state_indices, out, channels,
            x.stride(0), out.stride(0), conv_states.stride(0), conv_states.stride(1),
            WIDTH=width, HAS_BIAS=bias is not None, SILU=activation == "silu", BLOCK_W=next_pow2(width - 1),
            **constants(config, _conv_update_kernel), **launch_options(config),
        )  # fmt: skip
    elif batch:
        from tessera.pluggable_layers.reference import reference

        return reference(op)(x, conv_states, weight, bias, state_indices, activation, out=out)
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """One sequence of ``tokens`` tokens (from an initial state) and a conv of ``width`` taps."""
    tokens, channels, width = shape["tokens"], shape["channels"], shape.get("width", 4)
    x = torch.randn(tokens, channels, dtype=dtype, device=device)
    weight = torch.randn(channels, width, dtype=dtype, device=device)
    states = torch.randn(2, channels, width - 1, dtype=dtype, device=device)
    qsl = torch.tensor([0, tokens], dtype=torch.int32, device=device)
    idx = torch.tensor([1], dtype=torch.int32, device=device)
    init = torch.ones(1, dtype=torch.bool, device=device)
    return (x, weight, None, qsl, states, idx, init, "silu"), {}


def update_tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    seqs, channels, width = shape["seqs"], shape["channels"], shape.get("width", 4)
    x = torch.randn(seqs, channels, dtype=dtype, device=device)
    states = torch.randn(seqs + 1, channels, width - 1, dtype=dtype, device=device)
    weight = torch.randn(channels, width, dtype=dtype, device=device)
    idx = torch.randperm(seqs + 1, device=device)[:seqs].to(torch.int32)
    return (x, states, weight, None, idx, "silu"), {}
