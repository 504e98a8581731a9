"""The second phase of the Triton ssd_chunk_scan for sequences cut into several segments.

The first pass (:mod:`tessera_triton.kernels.ssd_chunk_scan`) leaves, per later segment of such a
sequence, its local final state (from a zero start) and its decay in scratch rows, and the cumulative
decay ``a_t`` of every token from its segment's start. Two launches finish the job: the combine pass
walks each sequence's segments in order (state entering segment j = decay of segment j-1 times the state
entering it plus its local final state) and writes the final state; the fix-up pass adds each later
segment's missing term, ``(C_t @ state_in^T) * exp(a_t)``, to its outputs. :func:`segment_plan` lays out
the segments and scratch rows on the device, with no host sync.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def segment_plan(query_start_loc: torch.Tensor, segment: int, tokens: int, batch: int) -> dict:
    """Segments per sequence (at least one) and scratch rows for sequences of several, with no host sync."""
    lens = (query_start_loc[1:] - query_start_loc[:-1]).to(torch.int32)
    segs = torch.clamp((lens + segment - 1) // segment, min=1).to(torch.int32)
    several = torch.where(segs > 1, segs, 0)
    split = tokens > segment  # only then can a sequence have several segments
    return {"segs": segs, "seg_end": torch.cumsum(segs, 0, dtype=torch.int32),
            "scratch_end": torch.cumsum(several, 0, dtype=torch.int32), "split": split,
            "max_segments": triton.cdiv(tokens, segment) + batch,
            "scratch_rows": 2 * triton.cdiv(tokens, segment) + 1 if split else 1}  # fmt: skip


@triton.jit
def segment_of(k, seg_end_ptr, B, BLOCK_B: tl.constexpr):
    """The sequence owning segment k: how many sequences' segment ranges end at or below k."""
    seq = k * 0
    for b0 in range(0, B, BLOCK_B):
        b = b0 + tl.arange(0, BLOCK_B)
        ends = tl.load(seg_end_ptr + b, mask=b < B, other=2147483647)
        seq += tl.sum((ends <= k).to(tl.int32), axis=0)
    return seq


@triton.jit
def ssd_combine_kernel(
    segs_ptr, scratch_end_ptr, scratch_ptr, seg_decay_ptr, states_ptr, idx_ptr, P, N, H,
    stride_ss, stride_sh, stride_sp, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Per sequence of several segments: replace each local state by the state entering its segment."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    segs = tl.load(segs_ptr + b)
    if segs == 1:
        return
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    mask = (p < P)[:, None] & (n < N)[None, :]
    first = tl.load(scratch_end_ptr + b) - segs
    running = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    for j in range(0, segs):
        row = (first + j).to(tl.int64)
        ptrs = scratch_ptr + ((row * H + h) * P + p[:, None]) * BLOCK_N + n[None, :]
        local = tl.load(ptrs, mask=mask, other=0.0)
        tl.store(ptrs, running, mask=mask)
        running = running * tl.exp(tl.load(seg_decay_ptr + row * H + h)) + local
    slot = tl.load(idx_ptr + b).to(tl.int64)
    state_ptrs = states_ptr + slot * stride_ss + h * stride_sh + p[:, None] * stride_sp + n[None, :]
    tl.store(state_ptrs, running.to(states_ptr.dtype.element_ty), mask=mask)


@triton.jit
def ssd_fixup_kernel(
    C_ptr, qsl_ptr, seg_end_ptr, segs_ptr, scratch_end_ptr, scratch_ptr, acum_ptr, out_ptr,
    P, N, heads_per_group, num_seqs, H, stride_ct, stride_cg, stride_ot, stride_oh, STATE_PRECISION: tl.constexpr,
    SEGMENT: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """out_t += (C_t @ state_in^T) * exp(a_t) over the tokens of every segment but a sequence's first."""
    k = tl.program_id(0)
    h = tl.program_id(1)
    b = segment_of(k, seg_end_ptr, num_seqs, 64)
    if b >= num_seqs:
        return
    segs = tl.load(segs_ptr + b)
    j = k - (tl.load(seg_end_ptr + b) - segs)
    if j == 0:
        return
    row = (tl.load(scratch_end_ptr + b) - segs + j).to(tl.int64)
    g = h // heads_per_group
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < P
    n = tl.arange(0, BLOCK_N)
    n_ok = n < N
    state_in = tl.load(scratch_ptr + ((row * H + h) * P + p[:, None]) * BLOCK_N + n[None, :],
                       mask=p_ok[:, None] & n_ok[None, :], other=0.0)  # fmt: skip
    start = tl.load(qsl_ptr + b) + j * SEGMENT
    end = tl.minimum(start + SEGMENT, tl.load(qsl_ptr + b + 1))
    l = tl.arange(0, BLOCK_L)
    for c0 in range(start, end, BLOCK_L):
        t64 = (c0 + l).to(tl.int64)
        t_ok = c0 + l < end
        Cm = tl.load(C_ptr + t64[:, None] * stride_ct + g * stride_cg + n[None, :],
                     mask=t_ok[:, None] & n_ok[None, :], other=0.0)  # fmt: skip
        a = tl.load(acum_ptr + t64 * H + h, mask=t_ok, other=0.0)
        extra = (
            tl.dot(Cm.to(tl.float32), tl.trans(state_in), input_precision=STATE_PRECISION)
            * tl.exp(a)[:, None]
        )
        ptrs = out_ptr + t64[:, None] * stride_ot + h * stride_oh + p[None, :]
        mask = t_ok[:, None] & p_ok[None, :]
        y = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32) + extra
        tl.store(ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)
