"""Triton ssd_chunk_scan: the Mamba2 selective scan, chunked state-space-dual form, fused in one kernel.

Layout: x [T, H, P] and out [T, H, P] with unit stride in P; dt [T, H]; B, C
[T, G, N] with unit stride in N; A, D, dt_bias [H] float32; ssm_states
[S, H, P, N] with unit stride in N (float32 recommended). Head h reads group
h // (H / G).

One program per (sequence, head, BLOCK_P slice of the head) walks its sequence
chunk by chunk (BLOCK_L tokens; the op's chunk_size is the reference's
organisation, the kernel picks its own) carrying the [BLOCK_P, N] state in
float32 registers::

    a      = cumsum(dt' * A)                               # within the chunk
    y      = ((C B^T) * exp(a_l - a_s) * dt'_s, causal) @ x   # intra-chunk
           + (C @ state^T) * exp(a_l) + D * x                 # from the carried state
    state  = exp(a_end) * state + (x * exp(a_end - a_s) * dt'_s)^T @ B

The intra-chunk products run in x's dtype with float32 accumulation; the products
with the state in tf32 (IEEE float32 for float32 inputs). Rows past the end of
the sequence load dt' = 0, so they neither decay nor feed the state. The final
state is written back to the sequence's slot.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import (
    check_dtype,
    check_last_dim_contiguous,
    check_out,
    check_shape,
    fail,
)
from tessera.pluggable_layers.reference.ssd_chunk_scan import check_ssm_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, constants, launch_options, next_pow2

FLOATS = (torch.float32, torch.float16, torch.bfloat16)

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={
        "BLOCK_L": [16, 32, 64, 128],
        "BLOCK_P": [16, 32, 64],
        "num_warps": [2, 4, 8],
        "num_stages": [1, 2, 3],
    },
    default={"BLOCK_L": 64, "BLOCK_P": 32, "num_warps": 4, "num_stages": 2},
    narrow=lambda key: {"BLOCK_L": [32, 64, 128], "num_stages": [1, 2]},
)
SHAPE_KEY = ShapeKey(
    {"heads": "exact", "head_dim": "exact", "state": "exact", "groups": "exact", "tokens": "pow2", "seqs": "pow2"},
    lambda x, dt, A, B, C, D, dt_bias, dt_softplus, query_start_loc, *a, **k: {
        "heads": x.shape[1], "head_dim": x.shape[2], "state": B.shape[2], "groups": B.shape[1], "tokens": x.shape[0],
        "seqs": query_start_loc.shape[0] - 1,
    },
)  # fmt: skip


@triton.jit
def effective_dt(dt, dt_bias, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr):
    if HAS_DT_BIAS:
        dt += dt_bias
    if DT_SOFTPLUS:
        dt = tl.where(dt > 20.0, dt, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))))
    return dt


@triton.jit
def _ssd_scan_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, dt_bias_ptr, qsl_ptr, states_ptr, idx_ptr, init_ptr, out_ptr,
    P, N, heads_per_group,
    stride_xt, stride_xh, stride_dtt, stride_bt, stride_bg, stride_ct, stride_cg, stride_ot, stride_oh,
    stride_ss, stride_sh, stride_sp,
    HAS_D: tl.constexpr, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, STATE_PRECISION: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    h = tl.program_id(1)
    g = h // heads_per_group
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < P
    n = tl.arange(0, BLOCK_N)
    n_ok = n < N
    start = tl.load(qsl_ptr + b)
    end = tl.load(qsl_ptr + b + 1)
    slot = tl.load(idx_ptr + b).to(tl.int64)
    has_init = tl.load(init_ptr + b) != 0
    A = tl.load(A_ptr + h).to(tl.float32)
    dt_bias = tl.load(dt_bias_ptr + h).to(tl.float32)  # A when there is no bias (unused then)
    state_ptrs = states_ptr + slot * stride_ss + h * stride_sh + p[:, None] * stride_sp + n[None, :]
    state_mask = p_ok[:, None] & n_ok[None, :]
    state = tl.load(state_ptrs, mask=state_mask, other=0.0).to(tl.float32)  # [BLOCK_P, BLOCK_N]
    state = tl.where(has_init, state, 0.0)
    l = tl.arange(0, BLOCK_L)
    causal = l[:, None] >= l[None, :]
    for c0 in range(start, end, BLOCK_L):
        t = c0 + l
        t_ok = t < end
        t64 = t.to(tl.int64)
        dt = tl.load(dt_ptr + t64 * stride_dtt + h, mask=t_ok, other=0.0).to(tl.float32)
        dt = tl.where(t_ok, effective_dt(dt, dt_bias, HAS_DT_BIAS, DT_SOFTPLUS), 0.0)
        a = tl.cumsum(dt * A, axis=0)
        a_end = tl.sum(dt * A, axis=0)
        x = tl.load(x_ptr + t64[:, None] * stride_xt + h * stride_xh + p[None, :],
                    mask=t_ok[:, None] & p_ok[None, :], other=0.0)  # fmt: skip
        Bm = tl.load(B_ptr + t64[:, None] * stride_bt + g * stride_bg + n[None, :],
                     mask=t_ok[:, None] & n_ok[None, :], other=0.0)  # fmt: skip
        Cm = tl.load(C_ptr + t64[:, None] * stride_ct + g * stride_cg + n[None, :],
                     mask=t_ok[:, None] & n_ok[None, :], other=0.0)  # fmt: skip
        cb = tl.dot(Cm, tl.trans(Bm), input_precision=STATE_PRECISION)  # [L, L]
        decay = tl.exp(tl.where(causal, a[:, None] - a[None, :], -float("inf")))
        w = cb * decay * dt[None, :]
        y = tl.dot(w.to(x.dtype), x, input_precision=STATE_PRECISION)  # [L, P]
        from_state = tl.dot(Cm.to(tl.float32), tl.trans(state), input_precision=STATE_PRECISION)
        y += from_state * tl.exp(a)[:, None]
        if HAS_D:
            y += tl.load(D_ptr + h).to(tl.float32) * x.to(tl.float32)
        tl.store(out_ptr + t64[:, None] * stride_ot + h * stride_oh + p[None, :], y.to(out_ptr.dtype.element_ty),
                 mask=t_ok[:, None] & p_ok[None, :])  # fmt: skip
        xw = x.to(tl.float32) * (tl.exp(a_end - a) * dt)[:, None]
        state = state * tl.exp(a_end) + tl.dot(
            tl.trans(xw), Bm.to(tl.float32), input_precision=STATE_PRECISION
        )
    tl.store(state_ptrs, state.to(states_ptr.dtype.element_ty), mask=state_mask)


def ssd_chunk_scan(x, dt, A, B, C, D, dt_bias, dt_softplus, query_start_loc, ssm_states, state_indices,
                   has_initial_state, chunk_size=256, out=None, config=None):  # fmt: skip
    op = "ssd_chunk_scan"
    check_ssm_args(op, x, dt, A, B, C, D, ssm_states, state_indices)
    check_dtype(op, "x", x, FLOATS)
    batch = state_indices.shape[0]
    check_shape(op, "query_start_loc", query_start_loc, (batch + 1,))
    check_shape(op, "has_initial_state", has_initial_state, (batch,))
    if chunk_size < 1:
        fail(op, f"chunk_size must be positive, got {chunk_size}")
    for name, t in (("x", x), ("B", B), ("C", C), ("ssm_states", ssm_states)):
        check_last_dim_contiguous(op, name, t)
    check_out(op, out, tuple(x.shape), x.dtype)
    out = torch.empty_like(x) if out is None else out
    tokens, heads, head_dim = x.shape
    groups, state_size = B.shape[1], B.shape[2]
    config = config or CONFIG_SPACE.default
    if batch == 0:
        return out
    grid = (batch, heads, triton.cdiv(head_dim, config["BLOCK_P"]))
    A32 = A.float().contiguous()
    _ssd_scan_kernel[grid](
        x, dt, A32, B, C, D.contiguous() if D is not None else A32, dt_bias.contiguous() if dt_bias is not None else A32,
        query_start_loc, ssm_states, state_indices, has_initial_state.to(torch.int32), out,
        head_dim, state_size, heads // groups,
        x.stride(0), x.stride(1), dt.stride(0), B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        out.stride(0), out.stride(1), ssm_states.stride(0), ssm_states.stride(1), ssm_states.stride(2),
        HAS_D=D is not None, HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=bool(dt_softplus),
        STATE_PRECISION="ieee" if x.dtype == torch.float32 else "tf32", BLOCK_N=max(16, next_pow2(state_size)),
        **constants(config), **launch_options(config),
    )  # fmt: skip
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """``seqs`` sequences sharing ``tokens`` tokens, from initial states (Mamba2's parameter ranges)."""
    tokens, heads, head_dim, state, groups = (
        shape[k] for k in ("tokens", "heads", "head_dim", "state", "groups")
    )
    seqs = min(shape.get("seqs", 1), tokens)
    x = torch.randn(tokens, heads, head_dim, dtype=dtype, device=device)
    dt = torch.randn(tokens, heads, dtype=dtype, device=device) - 2.0
    A = -torch.rand(heads, device=device) * 8 - 0.5
    B = torch.randn(tokens, groups, state, dtype=dtype, device=device)
    C = torch.randn(tokens, groups, state, dtype=dtype, device=device)
    D = torch.ones(heads, device=device)
    dt_bias = torch.zeros(heads, device=device)
    qsl = (torch.arange(seqs + 1, device=device) * tokens // seqs).to(torch.int32)
    states = torch.randn(seqs, heads, head_dim, state, device=device) * 0.1
    idx = torch.arange(seqs, dtype=torch.int32, device=device)
    init = torch.ones(seqs, dtype=torch.bool, device=device)
    return (x, dt, A, B, C, D, dt_bias, True, qsl, states, idx, init, 256), {}
