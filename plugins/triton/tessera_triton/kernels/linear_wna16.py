"""Triton linear_wna16: out[T, N] = x[T, K] @ dequantize(4-bit W)[K, N] + bias, dequantized in registers.

Prepared layout (``prepare``, run once at load): ``qweight`` int32 [K/8, N], word ``r`` holding rows
``8r..8r+7`` of column n, lowest nibble first (GPTQ's own layout: a GPTQ weight is kept as it is, an AWQ
one repacked from its column-packed, interleaved order); ``qzeros`` [G, N] and ``scales`` [G, N] in the
scales' dtype, the zero points real (GPTQ v1's minus-one undone). A [BLOCK_K, BLOCK_N] weight tile is
[BLOCK_K/8, BLOCK_N] words read along N, unpacked with shifts (to float32 by bits, no conversion instruction:
:func:`~tessera_triton.kernels.linear_wna16_gemv.nibbles_f32`), ``(q - z) * s`` in float32, cast to x's
dtype and fed to ``tl.dot`` with float32 accumulation.

Two unpackings (config ``UNPACK``): 0 reads each word once per row it holds (the repeats hit the L1)
and shifts per row; 1 reads [BLOCK_K/8, BLOCK_N] words once and reshapes the unpacked [BLOCK_K/8, 8, BLOCK_N].

Up to ``GEMV_ROWS`` rows of x (config; 0 = never) take the GEMV of
:mod:`tessera_triton.kernels.linear_wna16_gemv` instead, with its own tiles ``GV_N`` x ``GV_K`` and
formulation ``GV_MODE``.

Decode-sized M (1..64) has too few [BLOCK_M, BLOCK_N] tiles to fill the device: ``SPLIT_K`` > 1 splits
K across programs, each writing float32 partial sums that a second kernel adds (with the bias) into
``out``; ``SPLIT_K = 0`` picks the split from the tile count (about 256 programs in all).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_dtype, check_out, check_rank, fail
from tessera.pluggable_layers.reference.linear_wna16 import unpacked
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import (
    BACKEND_OPTIONS,
    constants,
    fast_fp32_dot_precision,
    launch_options,
    next_pow2,
)
from tessera_triton.kernels.linear_wna16_gemv import MAGIC, gemv_tile_k, launch_gemv, nibbles_f32

OP = "linear_wna16"
PREPARED_LAYOUT = ("qweight int32 [K/8, N] packed along K (GPTQ order), qzeros and scales [G, N] in the scales' "
                   "dtype (real zero points)")  # fmt: skip
TARGET_PROGRAMS = 512  # on the H200 (132 SMs) split K won up to 4-7 programs an SM at M <= 16

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_M": [16, 32, 64, 128], "BLOCK_N": [32, 64, 128, 256], "BLOCK_K": [32, 64, 128, 256],
            "SPLIT_K": [0, 1, 2, 4, 8, 16], "UNPACK": [0, 1], "DEQUANT": [0, 1], "num_warps": [2, 4, 8],
            "num_stages": [2, 3, 4, 5], "GEMV_ROWS": [0, 1, 2, 4, 8], "GV_N": [32, 64, 128, 256, 512],
            "GV_K": [32, 64, 128], "GV_MODE": [0, 1]},
    default={"BLOCK_M": 16, "BLOCK_N": 128, "BLOCK_K": 128, "SPLIT_K": 0, "UNPACK": 1, "DEQUANT": 0, "num_warps": 4,
             "num_stages": 4, "GEMV_ROWS": 4, "GV_N": 128, "GV_K": 64, "GV_MODE": 0},
    narrow=lambda key: narrow_for(key),
)  # fmt: skip
SHAPE_KEY = ShapeKey(
    {"tokens": "pow2", "k": "exact", "n": "exact"},
    lambda x, qweight, scales, *a, **k: {"tokens": x.shape[0], "k": x.shape[1], "n": scales.shape[1]},
)


def narrow_for(key) -> dict:
    """The candidates worth timing: split K and small tiles at decode, large tiles for prefill."""
    if key["tokens"] <= 8:
        return {
            "GEMV_ROWS": [8],
            "GV_N": [128, 256, 512],  # mode 1 wants 4+ columns a thread: GV_N >= 128 * num_warps
            "GV_K": [64, 128],
            "GV_MODE": [0, 1],
            "num_warps": [2, 4],
            "num_stages": [2],
        }
    if key["tokens"] <= 64:
        return {"BLOCK_M": [16] if key["tokens"] <= 16 else [32, 64], "BLOCK_N": [64, 128], "BLOCK_K": [128, 256],
                "SPLIT_K": [4, 8], "UNPACK": [1], "DEQUANT": [0, 1], "num_warps": [4], "num_stages": [3, 4],
                "GEMV_ROWS": [0]}  # fmt: skip
    return {"BLOCK_M": [64, 128], "BLOCK_N": [64, 128, 256], "BLOCK_K": [64, 128], "SPLIT_K": [1], "UNPACK": [1],
            "DEQUANT": [0, 1], "num_warps": [4, 8], "num_stages": [3]}  # fmt: skip


def prepare(weights, weight_format: str = "gptq", **facts):
    """The checkpoint's qweight/qzeros/scales (``weight_format``) in this kernel's layout (see the docstring)."""
    qweight, scales, qzeros = weights["qweight"], weights["scales"], weights["qzeros"]
    q, z = unpacked(qweight, qzeros, weight_format)  # [K, N], [G, N] int32
    if weight_format == "awq":
        shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=q.device)
        qweight = (q.view(-1, 8, q.shape[1]) << shifts[None, :, None]).sum(dim=1, dtype=torch.int32)
    return {"qweight": qweight.contiguous(), "scales": scales.contiguous(),
            "qzeros": z.to(scales.dtype).contiguous()}  # fmt: skip


@triton.jit
def _linear_wna16_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, bias_ptr, out_ptr, M, N, K, K_SPLIT, GROUP, stride_xm,
                         stride_om, stride_os, HAS_BIAS: tl.constexpr, PARTIAL: tl.constexpr,
                         ONE_GROUP: tl.constexpr, PRECISION: tl.constexpr, UNPACK: tl.constexpr, DEQUANT: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    shifts = (tl.arange(0, 8) * 4)[None, :, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = pid_k * K_SPLIT
    for k0 in range(k_start, tl.minimum(k_start + K_SPLIT, K), BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * stride_xm + offs_k[None, :],
                    mask=mask_m[:, None] & (offs_k[None, :] < K), other=0.0)  # fmt: skip
        if UNPACK == 1:  # [BLOCK_K/8, BLOCK_N] words, unpacked to [BLOCK_K/8, 8, BLOCK_N], reshaped
            offs_w = k0 // 8 + tl.arange(0, BLOCK_K // 8)
            words = tl.load(qw_ptr + offs_w[:, None].to(tl.int64) * N + offs_n[None, :],
                            mask=(offs_w[:, None] < K // 8) & mask_n[None, :], other=0)  # fmt: skip
            q = tl.reshape(nibbles_f32(words[:, None, :] >> shifts), (BLOCK_K, BLOCK_N)) - MAGIC
        else:  # each word read by its eight rows (the repeats hit the L1), shifted per row
            words = tl.load(qw_ptr + (offs_k[:, None] // 8).to(tl.int64) * N + offs_n[None, :],
                            mask=(offs_k[:, None] < K) & mask_n[None, :], other=0)  # fmt: skip
            q = nibbles_f32(words >> ((offs_k % 8) * 4)[:, None]) - MAGIC
        if ONE_GROUP:  # the whole tile lies in one group
            g = k0 // GROUP
            s = tl.load(s_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            z = tl.load(z_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        else:
            g = tl.minimum(offs_k // GROUP, K // GROUP - 1)
            gidx = g[:, None].to(tl.int64) * N + offs_n[None, :]
            s = tl.load(s_ptr + gidx, mask=mask_n[None, :], other=0.0).to(tl.float32)
            z = tl.load(z_ptr + gidx, mask=mask_n[None, :], other=0.0).to(tl.float32)
        if DEQUANT == 1:  # in x's dtype: q * s - z * s, one multiply-add per weight
            w = q.to(a.dtype) * s.to(a.dtype) + (-z * s).to(a.dtype)
        else:  # in float32: (q - z) * s
            w = ((q - z) * s).to(a.dtype)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
    out_mask = mask_m[:, None] & mask_n[None, :]
    if PARTIAL:
        ptrs = (
            out_ptr
            + pid_k.to(tl.int64) * stride_os
            + offs_m[:, None].to(tl.int64) * stride_om
            + offs_n[None, :]
        )
        tl.store(ptrs, acc, mask=out_mask)
    else:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        ptrs = out_ptr + offs_m[:, None].to(tl.int64) * stride_om + offs_n[None, :]
        tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _split_k_sum_kernel(part_ptr, bias_ptr, out_ptr, MN, N, stride_om, SPLIT_K: tl.constexpr,
                        HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < MN
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in range(SPLIT_K):
        acc += tl.load(part_ptr + s * MN + offs, mask=mask, other=0.0)
    n = offs % N
    if HAS_BIAS:
        acc += tl.load(bias_ptr + n, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + (offs // N).to(tl.int64) * stride_om + n, acc.to(out_ptr.dtype.element_ty), mask=mask)


def split_for(m: int, n: int, k: int, config: dict) -> int:
    """The config's SPLIT_K, or (0) the split giving about TARGET_PROGRAMS programs, at least 2 K tiles each."""
    tiles = triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"])
    most = max(1, k // (2 * config["BLOCK_K"]))
    split = config["SPLIT_K"] or min(8, next_pow2(triton.cdiv(TARGET_PROGRAMS, tiles)))
    return max(1, min(split, most, 16))


def fit_shared_memory(config: dict, dtype: torch.dtype, group: int) -> dict:
    """Smaller tiles where the config's would not fit: float32 tiles are twice the bytes, and a group smaller
    than the K tile gathers [BLOCK_K, BLOCK_N] scales and zeros (the tile shrinks to the group, else stages go)."""
    config = dict(config)
    if group % config["BLOCK_K"] and group % 32 == 0:
        config["BLOCK_K"] = min(config["BLOCK_K"], 1 << (group & -group).bit_length() - 1)
    elif group % config["BLOCK_K"]:
        config["num_stages"], config["BLOCK_K"] = 1, min(config["BLOCK_K"], 64)
    if dtype == torch.float32:
        config["num_stages"] = min(config.get("num_stages", 2), 2)
        config["BLOCK_K"] = min(config["BLOCK_K"], 64)
    return config


def _check(x, qweight, scales, qzeros, bias) -> tuple[int, int, int]:
    check_dtype(OP, "x", x, (torch.float32, torch.float16, torch.bfloat16))
    check_rank(OP, "x", x, 2)
    check_rank(OP, "scales", scales, 2)
    k, (groups, n) = x.shape[1], scales.shape
    if groups == 0:
        fail(OP, "scales must have at least one group row")
    if qweight.dtype != torch.int32 or tuple(qweight.shape) != (k // 8, n) or k % 8 or n % 8:
        fail(OP, f"qweight must be the prepared int32 [{k // 8}, {n}] (K={k}, N={n} multiples of 8), got "
                 f"{qweight.dtype} {list(qweight.shape)}; run this kernel's prepare on the checkpoint weights")  # fmt: skip
    if qzeros is None or tuple(qzeros.shape) != (groups, n) or not qzeros.is_floating_point() or k % groups:
        fail(OP, f"qzeros must be the prepared [{groups}, {n}] zero points in the scales' dtype; run this kernel's "
                 "prepare on the checkpoint weights")  # fmt: skip
    for name, t in (("x", x), ("qweight", qweight), ("scales", scales), ("qzeros", qzeros)):
        if t.stride(-1) != 1 or (name != "x" and not t.is_contiguous()):
            fail(OP, f"{name} must be contiguous (in its last dimension for x)")
    if bias is not None and tuple(bias.shape) != (n,):
        fail(OP, f"bias must have shape ({n},), got {tuple(bias.shape)}")
    return k, n, groups


def linear_wna16(x, qweight, scales, qzeros, bias=None, weight_format="gptq", out=None, config=None):
    k, n, groups = _check(x, qweight, scales, qzeros, bias)
    m = x.shape[0]
    check_out(OP, out, (m, n), x.dtype)
    out = torch.empty((m, n), dtype=x.dtype, device=x.device) if out is None else out
    if m == 0:
        return out
    config = {**CONFIG_SPACE.default, **(config or {})}
    if m <= config["GEMV_ROWS"]:
        tile_k = gemv_tile_k(config, k, k // groups, groups)
        if tile_k is not None:
            return launch_gemv(x, qweight, scales, qzeros, bias, out, k // groups, tile_k, config,
                               launch_options(config))  # fmt: skip
    config = fit_shared_memory(config, x.dtype, k // groups)
    split = split_for(m, n, k, config)
    bk = config["BLOCK_K"]
    k_split = triton.cdiv(triton.cdiv(k, split), bk) * bk
    split = triton.cdiv(k, k_split)
    group = k // groups
    part = torch.empty((split, m, n), dtype=torch.float32, device=x.device) if split > 1 else out
    grid = (triton.cdiv(n, config["BLOCK_N"]), triton.cdiv(m, config["BLOCK_M"]), split)
    precision = fast_fp32_dot_precision() if x.dtype == torch.float32 else "ieee"
    consts = {**constants(config, _linear_wna16_kernel), "SPLIT_K": split}
    _linear_wna16_kernel[grid](
        x, qweight, scales, qzeros, bias if bias is not None else scales, part, m, n, k, k_split, group,
        x.stride(0), part.stride(-2), part.stride(0) if split > 1 else 0, HAS_BIAS=bias is not None,
        PARTIAL=split > 1, ONE_GROUP=group % bk == 0, PRECISION=precision, **consts, **launch_options(config),
    )  # fmt: skip
    if split > 1:
        sum_partials(part, bias, out, split)
    return out


def sum_partials(part: torch.Tensor, bias, out: torch.Tensor, split: int, block: int = 1024) -> None:
    """out = sum of the float32 partials [split, M, N] (+ bias), in out's dtype."""
    m, n = out.shape
    _split_k_sum_kernel[(triton.cdiv(m * n, block),)](
        part, bias if bias is not None else part, out, m * n, n, out.stride(0), SPLIT_K=split,
        HAS_BIAS=bias is not None, BLOCK=block,
    )  # fmt: skip


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    k, n = shape["k"], shape["n"]
    groups = max(1, k // 128)
    qweight = torch.randint(-(2**31), 2**31 - 1, (k // 8, n), dtype=torch.int32, device=device)
    scales = torch.rand(groups, n, dtype=dtype, device=device) * 0.01
    qzeros = torch.full((groups, n), 8.0, dtype=dtype, device=device)
    x = torch.randn(shape["tokens"], k, dtype=dtype, device=device)
    return (x, qweight, scales, qzeros), {}
