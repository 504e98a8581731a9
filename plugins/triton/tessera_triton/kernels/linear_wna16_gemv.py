"""Triton linear_wna16 for a few rows of x: a GEMV over the 4-bit weight, no ``tl.dot``.

At decode sizes the dot path of :mod:`tessera_triton.kernels.linear_wna16` pads M to a 16-row tile and
sends every dequantized [BLOCK_K, BLOCK_N] weight tile through shared memory to feed the tensor cores,
so it runs at the bf16 GEMM's speed while reading a quarter of the bytes. Here each program takes one row
of x and GV_N columns, reads its share of K in tiles of GV_K rows (words read along N), and takes the scale
out of the sum (within one group ``sum_k x_k (q_kn - z_n) s_n = s_n sum_k x_k (q_kn - z_n)``); a tile never
straddles two groups (the launcher sizes GV_K to the group). A nibble becomes a float without a conversion
instruction: with the exponent bits of 2**23 OR-ed on (:func:`nibbles_f32`) it is the float ``2**23 + q``,
and one subtraction of ``2**23 + z`` leaves ``q - z`` exactly. Two formulations (config ``GV_MODE``):

* 0: the [GV_K/8, GV_N] words unpacked to [GV_K/8, 8, GV_N] and reduced over K with ``tl.sum`` as each
  tile is read. The compiler lays the tile's word rows over the warps, so every tile passes the words and
  the partial sums through shared memory (four barriers a tile on sm_90), about 8.5 instructions a weight.
* 1: 1-D [GV_N] tensors only: one row of words and eight scalars of x at a time, unrolled over the tile,
  so each thread keeps its columns' sums in registers and nothing crosses threads before the store. A
  nibble is masked where it lies, ``0x4B000000 | (word & 0xF << 4p)`` = ``2**23 + 16**p q`` (nibbles 0-4;
  5-7 after one shift of the word by 16), and ``2**23 + 16**p z`` subtracted leaves ``16**p (q - z)``,
  exact. Five float32 sums per column (p = 0..4) take a logic op, a subtraction and an FMA per weight, and
  the group's scale and 16**-p once per group. Each element of x costs a thread a load (and a conversion
  for 16-bit x) shared by its GV_N / (32 num_warps) columns: about 4.0 instructions a weight with four
  columns a thread, 4.9 with two, 6.1 with one (sm_90, bf16); a GV_N below 32 num_warps repeats the columns
  in several warps. Counted from the compiled code, not yet faster on the device: on the H200, with the
  default tile (GV_N 128, four warps: one column a thread) the Llama-3-8B-shaped int4 decode step took
  5.31 ms against mode 0's 4.27 ms, so mode 0 stays the default until a sweep finds mode 1's tiles.

K is split over ``split`` programs (float32 partial sums added by the dot path's second kernel) so that
small N still fills the device.
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
def _tile_sums(x_ptr, qw_ptr, s_ptr, z_ptr, row, offs_n, mask_n, N, K, k_start, k_end, GROUP, stride_xm,
               GV_N: tl.constexpr, GV_K: tl.constexpr):  # fmt: skip
    """GV_MODE 0: each [GV_K/8, 8, GV_N] tile reduced over K as it is read (see the module docstring)."""
    offs_r = tl.arange(0, GV_K // 8)
    offs_j = tl.arange(0, 8)
    shifts = (offs_j * 4)[None, :, None]
    acc = tl.zeros((GV_N,), dtype=tl.float32)
    for k0 in range(k_start, k_end, GV_K):
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
    return acc


@triton.jit
def _nibble(sum_p, word, mask: tl.constexpr, bits, zero_p, x):
    """``sum_p + 16**p (q - z) x`` for the nibble ``word & mask`` (mask = 0xF << 4p) left in place:
    ``bits | (word & mask)``, ``bits`` = 0x4B000000, is the float ``2**23 + 16**p q`` and ``zero_p`` is
    ``2**23 + 16**p z``; the difference is exact (integers below 2**24), a logic op, a subtraction, an FMA."""
    return sum_p + (((word & mask) | bits).to(tl.float32, bitcast=True) - zero_p) * x


@triton.jit
def _x_at(x_row, k, K, MASKED: tl.constexpr):
    """x[k] as a float32 scalar (0 past K where MASKED)."""
    if MASKED:
        return tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
    return tl.load(x_row + k).to(tl.float32)


@triton.jit
def _column_tile(p0, p1, p2, p3, p4, bits, z0, z1, z2, z3, z4, qw_ptr, x_row, k0, N, K, offs_n, mask_n,
                 GV_K: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """Rows k0..k0+GV_K of K into the per-column sums: a [GV_N] row of words and eight scalars of x at a time
    (MASKED: rows past K read nothing and add nothing). Nibbles 0-4 of a word are used where they are (bits
    0-19: 16**p q, p = 0..4), nibbles 5-7 after a shift by 16 (bits 4-15: p = 1..3), so sums p1-p3 take two
    nibbles of each word. Columns past N read nothing and are never stored: their words need no value."""
    words_at = qw_ptr + tl.cast(k0 // 8, tl.int64) * N + offs_n
    for r in tl.static_range(GV_K // 8):
        k = k0 + 8 * r
        if MASKED:
            word = tl.load(words_at + r * N, mask=offs_n < tl.where(k < K, N, 0))
        else:
            word = tl.load(words_at + r * N, mask=mask_n)
        p0 = _nibble(p0, word, 0xF, bits, z0, _x_at(x_row, k, K, MASKED))
        p1 = _nibble(p1, word, 0xF0, bits, z1, _x_at(x_row, k + 1, K, MASKED))
        p2 = _nibble(p2, word, 0xF00, bits, z2, _x_at(x_row, k + 2, K, MASKED))
        p3 = _nibble(p3, word, 0xF000, bits, z3, _x_at(x_row, k + 3, K, MASKED))
        p4 = _nibble(p4, word, 0xF0000, bits, z4, _x_at(x_row, k + 4, K, MASKED))
        high = word >> 16
        p1 = _nibble(p1, high, 0xF0, bits, z1, _x_at(x_row, k + 5, K, MASKED))
        p2 = _nibble(p2, high, 0xF00, bits, z2, _x_at(x_row, k + 6, K, MASKED))
        p3 = _nibble(p3, high, 0xF000, bits, z3, _x_at(x_row, k + 7, K, MASKED))
    return p0, p1, p2, p3, p4


@triton.jit
def _column_sums(x_ptr, qw_ptr, s_ptr, z_ptr, row, offs_n, mask_n, N, K, k_start, k_end, GROUP, stride_xm,
                 GV_N: tl.constexpr, GV_K: tl.constexpr):  # fmt: skip
    """GV_MODE 1: 1-D [GV_N] tensors only, so nothing crosses threads. Per column five float32 sums (nibble
    position p = 0..4) add up a group's rows, one FMA per weight; then the group's scale, and one sum."""
    x_row = x_ptr + row.to(tl.int64) * stride_xm
    # 0x4B000000 as a value the compiler cannot fold (N >= 0), kept in one register: a LOP3 takes a single
    # immediate (the nibble's mask), and a folded constant is rebuilt for every nibble
    bits = 0x4B000000 + (N >> 31)
    k_even = tl.cast(K // GV_K * GV_K, tl.int32)  # tiles below it lie within K
    acc = tl.zeros((GV_N,), dtype=tl.float32)
    for g in range(k_start // GROUP, tl.cdiv(k_end, GROUP)):
        s = tl.load(s_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        z0, z1, z2 = z + MAGIC, z * 16.0 + MAGIC, z * 256.0 + MAGIC  # 2**23 + 16**p z, exact
        z3, z4 = z * 4096.0 + MAGIC, z * 65536.0 + MAGIC
        p0 = tl.zeros((GV_N,), dtype=tl.float32)
        p1 = tl.zeros((GV_N,), dtype=tl.float32)
        p2 = tl.zeros((GV_N,), dtype=tl.float32)
        p3 = tl.zeros((GV_N,), dtype=tl.float32)
        p4 = tl.zeros((GV_N,), dtype=tl.float32)
        lo = tl.maximum(g * GROUP, k_start)
        hi = tl.minimum(g * GROUP + GROUP, k_end)
        for k0 in range(lo, tl.minimum(hi, k_even), GV_K):
            p0, p1, p2, p3, p4 = _column_tile(p0, p1, p2, p3, p4, bits, z0, z1, z2, z3, z4, qw_ptr, x_row, k0, N, K,
                                              offs_n, mask_n, GV_K, False)  # fmt: skip
        if tl.maximum(lo, k_even) < hi:  # the last tile of a K no tile divides (one group only)
            p0, p1, p2, p3, p4 = _column_tile(p0, p1, p2, p3, p4, bits, z0, z1, z2, z3, z4, qw_ptr, x_row, k_even, N,
                                              K, offs_n, mask_n, GV_K, True)  # fmt: skip
        # 16**-p, exact
        acc += (p0 + p1 * 0.0625 + p2 * 0.00390625 + p3 * 0.000244140625 + p4 * 0.0000152587890625) * s
    return acc


@triton.jit
def _wna16_gemv_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, bias_ptr, out_ptr, N, K, K_SPLIT, GROUP, stride_xm,
                       stride_om, stride_os, HAS_BIAS: tl.constexpr, PARTIAL: tl.constexpr,
                       GV_N: tl.constexpr, GV_K: tl.constexpr, GV_MODE: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    row = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * GV_N + tl.arange(0, GV_N)
    mask_n = offs_n < N
    k_start = pid_k * K_SPLIT
    k_end = tl.minimum(k_start + K_SPLIT, K)
    if GV_MODE == 1:
        acc = _column_sums(x_ptr, qw_ptr, s_ptr, z_ptr, row, offs_n, mask_n, N, K, k_start, k_end, GROUP,
                           stride_xm, GV_N, GV_K)  # fmt: skip
    else:
        acc = _tile_sums(x_ptr, qw_ptr, s_ptr, z_ptr, row, offs_n, mask_n, N, K, k_start, k_end, GROUP,
                         stride_xm, GV_N, GV_K)  # fmt: skip
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
        GV_N=tile_n, GV_K=tile_k, GV_MODE=config["GV_MODE"], **launch,
    )  # fmt: skip
    if split > 1:
        sum_partials(part, bias, out, split)
    return out
