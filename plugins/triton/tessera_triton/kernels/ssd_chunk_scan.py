"""Triton ssd_chunk_scan: the Mamba2 selective scan, chunked state-space-dual form, in segments.

Layout: x [T, H, P] and out [T, H, P] with unit stride in P; dt [T, H]; B, C
[T, G, N] with unit stride in N; A, D, dt_bias [H] float32; ssm_states
[S, H, P, N] with unit stride in N (float32 recommended). Head h reads group
h // (H / G).

Each sequence is cut into segments of SEGMENT tokens (0: one segment per
sequence). One program per (segment, head, BLOCK_P slice of the head) walks its
segment chunk by chunk (BLOCK_L tokens; the op's chunk_size is the reference's
organisation, the kernel picks its own), carrying the [BLOCK_P, N] state in
float32 registers::

    a      = cumsum(dt' * A)                                  # within the chunk
    y      = ((C B^T) * exp(a_l - a_s) * dt'_s, causal) @ x   # intra-chunk
           + (C @ state^T) * exp(a_l) + D * x                 # from the carried state
    state  = exp(a_end) * state + (x * exp(a_end - a_s) * dt'_s)^T @ B

A sequence's first segment starts from its initial state, later ones from zero.
For sequences of several segments two more launches finish the job
(:mod:`tessera_triton.kernels.ssd_segments`: the combine and fix-up passes).
Segments let a long prompt use the whole card instead of one program per head.

The intra-chunk products run in x's dtype with float32 accumulation; so do the
products with the state for bfloat16 inputs (the state itself stays float32),
while float16 inputs use tf32 there where the backend has it (the state may exceed
float16's range) and float32 inputs IEEE float32. Rows past the end of a
segment load dt' = 0, so they neither decay nor feed the state.
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
from tessera_triton.common import BACKEND_OPTIONS, fast_fp32_dot_precision, launch_options, next_pow2
from tessera_triton.kernels.ssd_segments import segment_of, segment_plan, ssd_combine_kernel, ssd_fixup_kernel

FLOATS = (torch.float32, torch.float16, torch.bfloat16)

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_L": [16, 32, 64, 128], "BLOCK_P": [16, 32, 64], "SEGMENT": [0, 256, 512, 1024, 2048, 4096],
            "num_warps": [2, 4, 8], "num_stages": [1, 2, 3]},
    default={"BLOCK_L": 32, "BLOCK_P": 32, "SEGMENT": 1024, "num_warps": 4, "num_stages": 2},
    constraints=[lambda c: c["SEGMENT"] % c["BLOCK_L"] == 0],
    narrow=lambda key: {"BLOCK_L": [32, 64], "BLOCK_P": [32, 64], "SEGMENT": [512, 1024, 2048], "num_warps": [4],
                        "num_stages": [2]},
)  # fmt: skip
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
    seg_end_ptr, segs_ptr, scratch_end_ptr, scratch_ptr, seg_decay_ptr, acum_ptr,
    P, N, heads_per_group, num_seqs, H,
    stride_xt, stride_xh, stride_dtt, stride_bt, stride_bg, stride_ct, stride_cg, stride_ot, stride_oh,
    stride_ss, stride_sh, stride_sp,
    HAS_D: tl.constexpr, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, STATE_PRECISION: tl.constexpr,
    STATE_IN_BF16: tl.constexpr, SEGMENT: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    k = tl.program_id(0)
    h = tl.program_id(1)
    b = segment_of(k, seg_end_ptr, num_seqs, 64)
    if b >= num_seqs:
        return
    segs = tl.load(segs_ptr + b)
    j = k - (tl.load(seg_end_ptr + b) - segs)  # segment index within the sequence
    row = tl.load(scratch_end_ptr + b) - segs + j  # its scratch row (sequences of several segments)
    g = h // heads_per_group
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < P
    n = tl.arange(0, BLOCK_N)
    n_ok = n < N
    seq_end = tl.load(qsl_ptr + b + 1)
    start = tl.load(qsl_ptr + b) + j * SEGMENT
    end = tl.minimum(start + SEGMENT, seq_end)
    slot = tl.load(idx_ptr + b).to(tl.int64)
    has_init = (tl.load(init_ptr + b) != 0) & (j == 0)
    A = tl.load(A_ptr + h).to(tl.float32)
    dt_bias = tl.load(dt_bias_ptr + h).to(tl.float32)  # A when there is no bias (unused then)
    state_ptrs = states_ptr + slot * stride_ss + h * stride_sh + p[:, None] * stride_sp + n[None, :]
    state_mask = p_ok[:, None] & n_ok[None, :]
    state = tl.load(state_ptrs, mask=state_mask, other=0.0).to(tl.float32)  # [BLOCK_P, BLOCK_N]
    state = tl.where(has_init, state, 0.0)
    l = tl.arange(0, BLOCK_L)
    causal = l[:, None] >= l[None, :]
    a_base = tl.sum(
        tl.zeros([BLOCK_L], dtype=tl.float32), axis=0
    )  # decay from the segment's start to the current chunk
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
        if STATE_IN_BF16:  # bf16 inputs: the products with the state in bf16 too (float32 accumulation)
            from_state = tl.dot(Cm, tl.trans(state.to(tl.bfloat16)))
        else:
            from_state = tl.dot(Cm.to(tl.float32), tl.trans(state), input_precision=STATE_PRECISION)
        y += from_state * tl.exp(a)[:, None]
        if HAS_D:
            y += tl.load(D_ptr + h).to(tl.float32) * x.to(tl.float32)
        tl.store(out_ptr + t64[:, None] * stride_ot + h * stride_oh + p[None, :], y.to(out_ptr.dtype.element_ty),
                 mask=t_ok[:, None] & p_ok[None, :])  # fmt: skip
        if segs > 1:
            tl.store(acum_ptr + t64 * H + h, a_base + a, mask=t_ok)
        xw = x.to(tl.float32) * (tl.exp(a_end - a) * dt)[:, None]
        if STATE_IN_BF16:
            state = state * tl.exp(a_end) + tl.dot(tl.trans(xw.to(tl.bfloat16)), Bm)
        else:
            state = state * tl.exp(a_end) + tl.dot(
                tl.trans(xw), Bm.to(tl.float32), input_precision=STATE_PRECISION
            )
        a_base += a_end
    if segs > 1:  # the local final state and the segment's decay, for the combine pass
        scratch = scratch_ptr + ((row.to(tl.int64) * H + h) * P + p[:, None]) * BLOCK_N + n[None, :]
        tl.store(scratch, state, mask=state_mask)
        tl.store(seg_decay_ptr + row.to(tl.int64) * H + h, a_base)
    else:
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
    segment = config["SEGMENT"] or 1 << 30
    plan = segment_plan(query_start_loc, segment, tokens, batch)
    grid = (plan["max_segments"], heads, triton.cdiv(head_dim, config["BLOCK_P"]))
    A32 = A.float().contiguous()
    block_n = max(16, next_pow2(state_size))
    precision = "ieee" if x.dtype == torch.float32 else fast_fp32_dot_precision()
    scratch = torch.empty(
        plan["scratch_rows"], heads, head_dim, block_n, dtype=torch.float32, device=x.device
    )
    seg_decay = torch.empty(plan["scratch_rows"], heads, dtype=torch.float32, device=x.device)
    acum = torch.empty(tokens if plan["split"] else 1, heads, dtype=torch.float32, device=x.device)
    common = {"BLOCK_P": config["BLOCK_P"], "BLOCK_N": block_n, **launch_options(config)}
    _ssd_scan_kernel[grid](
        x, dt, A32, B, C, D.contiguous() if D is not None else A32, dt_bias.contiguous() if dt_bias is not None else A32,
        query_start_loc, ssm_states, state_indices, has_initial_state.to(torch.int32), out,
        plan["seg_end"], plan["segs"], plan["scratch_end"], scratch, seg_decay, acum,
        head_dim, state_size, heads // groups, batch, heads,
        x.stride(0), x.stride(1), dt.stride(0), B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        out.stride(0), out.stride(1), ssm_states.stride(0), ssm_states.stride(1), ssm_states.stride(2),
        HAS_D=D is not None, HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=bool(dt_softplus), STATE_PRECISION=precision,
        STATE_IN_BF16=x.dtype == torch.bfloat16, SEGMENT=segment, BLOCK_L=config["BLOCK_L"], **common,
    )  # fmt: skip
    if plan["split"]:
        ssd_combine_kernel[(batch, heads, grid[2])](
            plan["segs"], plan["scratch_end"], scratch, seg_decay, ssm_states, state_indices, head_dim, state_size,
            heads, ssm_states.stride(0), ssm_states.stride(1), ssm_states.stride(2), **common,
        )  # fmt: skip
        ssd_fixup_kernel[grid](
            C, query_start_loc, plan["seg_end"], plan["segs"], plan["scratch_end"], scratch, acum, out,
            head_dim, state_size, heads // groups, batch, heads, C.stride(0), C.stride(1), out.stride(0), out.stride(1),
            STATE_PRECISION=precision, SEGMENT=segment, BLOCK_L=config["BLOCK_L"], **common,
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
