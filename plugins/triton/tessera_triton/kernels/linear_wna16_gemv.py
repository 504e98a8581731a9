"""Triton linear_wna16 for a few rows of x: a GEMV over the 4-bit weight, no ``tl.dot``.

At decode sizes the dot path of :mod:`tessera_triton.kernels.linear_wna16` pads M to a 16-row tile and
sends every dequantized [BLOCK_K, BLOCK_N] weight tile through shared memory to feed the tensor cores,
so it runs at the bf16 GEMM's speed while reading a quarter of the bytes. Here each program takes one row
of x, one [GV_K, GV_N] tile column of words at a time (read once along N), unpacks it in registers to
[GV_K / 8, 8, GV_N] and reduces ``x * (q - z)`` over K with FMAs; the scale comes out of the sum (within
one group ``sum_k x_k (q_kn - z_n) s_n = s_n sum_k x_k (q_kn - z_n)``). A nibble becomes a float without a
conversion instruction (:func:`nibbles_f32`), so a weight costs a shift, a logic op, a subtraction and an
FMA, all at the full ALU rate. A tile never straddles two groups (the launcher sizes GV_K to the group). K is split over ``split`` programs
(float32 partial sums added by the dot path's second kernel) so that small N still fills the device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera_triton.common import next_pow2

TARGET_PROGRAMS = 512
MAGIC = tl.constexpr(8388608.0)  # 2**23: the float32 whose mantissa bits are an integer below 2**23


@triton.jit
def nibbles_f32(shifted):
    """The low four bits of int32 ``shifted`` as float32, by bits: ``0x4B000000 | q`` is the float
    ``2**23 + q`` exactly, so subtracting ``2**23`` (by the caller, folded with the zero point) gives ``q``.
    This replaces the int-to-float conversion, which runs at a quarter of the ALU rate or less."""
    return ((shifted & 0xF) | 0x4B000000).to(tl.float32, bitcast=True)


@triton.jit
def _wna16_gemv_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, bias_ptr, out_ptr, N, K, K_SPLIT, GROUP, stride_xm,
                       stride_om, stride_os, HAS_BIAS: tl.constexpr, PARTIAL: tl.constexpr,
                       GV_N: tl.constexpr, GV_K: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    row = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * GV_N + tl.arange(0, GV_N)
    mask_n = offs_n < N
    offs_r = tl.arange(0, GV_K // 8)
    offs_j = tl.arange(0, 8)
    shifts = (offs_j * 4)[None, :, None]
    acc = tl.zeros((GV_N,), dtype=tl.float32)
    k_start = pid_k * K_SPLIT
    for k0 in range(k_start, tl.minimum(k_start + K_SPLIT, K), GV_K):
        words_r = k0 // 8 + offs_r
        words = tl.load(qw_ptr + words_r[:, None].to(tl.int64) * N + offs_n[None, :],
                        mask=(words_r[:, None] < K // 8) & mask_n[None, :], other=0)  # fmt: skip
        g = k0 // GROUP
        s = tl.load(s_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        # 2**23 + q - (2**23 + z) = q - z, exact: both operands are integers below 2**24
        w = nibbles_f32(words[:, None, :] >> shifts) - (z + MAGIC)[None, None, :]  # [GV_K/8, 8, GV_N]
        kk = k0 + offs_r[:, None] * 8 + offs_j[None, :]  # [GV_K/8, 8]
        xv = tl.load(x_ptr + row.to(tl.int64) * stride_xm + kk, mask=kk < K, other=0.0).to(tl.float32)
        acc += s * tl.sum(tl.sum(w * xv[:, :, None], axis=1), axis=0)
    if PARTIAL:
        tl.store(
            out_ptr + pid_k.to(tl.int64) * stride_os + row.to(tl.int64) * stride_om + offs_n, acc, mask=mask_n
        )
    else:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        tl.store(
            out_ptr + row.to(tl.int64) * stride_om + offs_n, acc.to(out_ptr.dtype.element_ty), mask=mask_n
        )


def gemv_tile_k(config: dict, k: int, group: int, groups: int) -> int | None:
    """The K tile for this weight: the config's GV_K, shrunk to a power of two dividing the group so no tile
    straddles two groups (any tile will do with one group); None where the group is not a multiple of 8."""
    tile = config["GV_K"]
    if groups == 1 or group % tile == 0:
        return tile
    if group % 8:
        return None
    return min(tile, group & -group)


def gemv_split(m: int, n: int, k: int, tile_n: int, tile_k: int) -> int:
    """About TARGET_PROGRAMS programs in all, each at least two K tiles long."""
    programs = m * triton.cdiv(n, tile_n)
    most = max(1, k // (2 * tile_k))
    return max(1, min(next_pow2(triton.cdiv(TARGET_PROGRAMS, programs)), most, 32))


def launch_gemv(x, qweight, scales, qzeros, bias, out, group: int, tile_k: int, config: dict, launch: dict):
    """Run the GEMV into ``out`` (float32 partials summed by ``sum_partials`` when K is split)."""
    from tessera_triton.kernels.linear_wna16 import sum_partials

    m, k = x.shape
    n = out.shape[1]
    tile_n = config["GV_N"]
    split = gemv_split(m, n, k, tile_n, tile_k)
    k_split = triton.cdiv(triton.cdiv(k, split), tile_k) * tile_k
    split = triton.cdiv(k, k_split)
    part = torch.empty((split, m, n), dtype=torch.float32, device=x.device) if split > 1 else out
    _wna16_gemv_kernel[(triton.cdiv(n, tile_n), m, split)](
        x, qweight, scales, qzeros, bias if bias is not None else scales, part, n, k, k_split, group, x.stride(0),
        part.stride(-2), part.stride(0) if split > 1 else 0, HAS_BIAS=bias is not None, PARTIAL=split > 1,
        GV_N=tile_n, GV_K=tile_k, **launch,
    )  # fmt: skip
    if split > 1:
        sum_partials(part, bias, out, split)
    return out
