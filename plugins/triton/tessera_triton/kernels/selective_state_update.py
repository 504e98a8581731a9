"""Triton selective_state_update: one decode step of the Mamba2 recurrence, state updated in place.

Layout: ssm_states [S, H, P, N] with unit stride in N; x, z, out [B, H, P]
with unit stride in P; dt [B, H]; B, C [B, G, N] with unit stride in N.
One program per (sequence, head, BLOCK_P rows of the head's state): it reads
its [BLOCK_P, N] slice once, decays it and adds dt' * x (outer) B, writes it
back and emits ``state @ C + D * x`` (times silu(z) when z is given). The
state is the traffic that matters: read once and written once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_dtype, check_last_dim_contiguous, check_out, check_shape
from tessera.pluggable_layers.reference.ssd_chunk_scan import check_ssm_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, constants, launch_options, next_pow2
from tessera_triton.kernels.ssd_chunk_scan import effective_dt

FLOATS = (torch.float32, torch.float16, torch.bfloat16)

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_P": [1, 2, 4, 8, 16, 32, 64], "num_warps": [1, 2, 4, 8]},
    default={"BLOCK_P": 8, "num_warps": 4},
)
SHAPE_KEY = ShapeKey(
    {"heads": "exact", "head_dim": "exact", "state": "exact", "seqs": "pow2"},
    lambda ssm_states, x, dt, A, B, *a, **k: {
        "heads": x.shape[1], "head_dim": x.shape[2], "state": B.shape[2], "seqs": x.shape[0],
    },
)  # fmt: skip


@triton.jit
def _state_update_kernel(
    states_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dt_bias_ptr, idx_ptr, out_ptr,
    P, N, heads_per_group,
    stride_ss, stride_sh, stride_sp, stride_xb, stride_xh, stride_dtb, stride_bb, stride_bg, stride_cb, stride_cg,
    stride_zb, stride_zh, stride_ob, stride_oh,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    g = h // heads_per_group
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok = p < P
    n_ok = n < N
    slot = tl.load(idx_ptr + b).to(tl.int64)
    state_ptrs = states_ptr + slot * stride_ss + h * stride_sh + p[:, None] * stride_sp + n[None, :]
    mask = p_ok[:, None] & n_ok[None, :]
    state = tl.load(state_ptrs, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + b * stride_xb + h * stride_xh + p, mask=p_ok, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * stride_dtb + h).to(tl.float32)
    dt = effective_dt(dt, tl.load(dt_bias_ptr + h).to(tl.float32), HAS_DT_BIAS, DT_SOFTPLUS)
    A = tl.load(A_ptr + h).to(tl.float32)
    Bv = tl.load(B_ptr + b * stride_bb + g * stride_bg + n, mask=n_ok, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * stride_cb + g * stride_cg + n, mask=n_ok, other=0.0).to(tl.float32)
    state = state * tl.exp(dt * A) + (dt * x)[:, None] * Bv[None, :]
    tl.store(state_ptrs, state.to(states_ptr.dtype.element_ty), mask=mask)
    y = tl.sum(state * Cv[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + h).to(tl.float32) * x
    if HAS_Z:
        z = tl.load(z_ptr + b * stride_zb + h * stride_zh + p, mask=p_ok, other=0.0).to(tl.float32)
        y *= z / (1.0 + tl.exp(-z))
    tl.store(out_ptr + b * stride_ob + h * stride_oh + p, y.to(out_ptr.dtype.element_ty), mask=p_ok)


def selective_state_update(ssm_states, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_indices, out=None,
                           config=None):  # fmt: skip
    op = "selective_state_update"
    check_ssm_args(op, x, dt, A, B, C, D, ssm_states, state_indices)
    check_dtype(op, "x", x, FLOATS)
    check_shape(op, "state_indices", state_indices, (x.shape[0],))
    if z is not None:
        check_shape(op, "z", z, tuple(x.shape))
        check_last_dim_contiguous(op, "z", z)
    for name, t in (("x", x), ("B", B), ("C", C), ("ssm_states", ssm_states)):
        check_last_dim_contiguous(op, name, t)
    check_out(op, out, tuple(x.shape), x.dtype)
    out = torch.empty_like(x) if out is None else out
    batch, heads, head_dim = x.shape
    config = config or CONFIG_SPACE.default
    if batch:
        A32 = A.float().contiguous()
        grid = (batch, heads, triton.cdiv(head_dim, config["BLOCK_P"]))
        _state_update_kernel[grid](
            ssm_states, x, dt, A32, B, C, D.contiguous() if D is not None else A32, z if z is not None else x,
            dt_bias.contiguous() if dt_bias is not None else A32, state_indices, out,
            head_dim, B.shape[2], heads // B.shape[1],
            ssm_states.stride(0), ssm_states.stride(1), ssm_states.stride(2), x.stride(0), x.stride(1), dt.stride(0),
            B.stride(0), B.stride(1), C.stride(0), C.stride(1), (z if z is not None else x).stride(0),
            (z if z is not None else x).stride(1), out.stride(0), out.stride(1),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_DT_BIAS=dt_bias is not None,
            DT_SOFTPLUS=bool(dt_softplus), BLOCK_N=next_pow2(B.shape[2]), **constants(config, _state_update_kernel), **launch_options(config),
        )  # fmt: skip
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    seqs, heads, head_dim, state = (shape[k] for k in ("seqs", "heads", "head_dim", "state"))
    states = torch.randn(seqs + 1, heads, head_dim, state, device=device)
    x = torch.randn(seqs, heads, head_dim, dtype=dtype, device=device)
    dt = torch.randn(seqs, heads, dtype=dtype, device=device) - 2.0
    A = -torch.rand(heads, device=device) * 8 - 0.5
    B = torch.randn(seqs, 1, state, dtype=dtype, device=device)
    C = torch.randn_like(B)
    idx = torch.randperm(seqs + 1, device=device)[:seqs].to(torch.int32)
    return (states, x, dt, A, B, C, torch.ones(heads, device=device), torch.randn_like(x), torch.zeros(heads, device=device),
            True, idx), {}  # fmt: skip
