"""linear_fp8 on a pre-shuffled fp8 weight (AITER's ``shuffle_weight`` layout), in Triton.

``prepare`` (plugin API 1.2, run once at load) reorders the checkpoint's ``weight`` [N, K] into the layout
AITER's bpreshuffle GEMMs read: tiles of 16 rows x 32 K elements, each tile stored as 32/KP runs of
[16 rows, KP elements] with KP = 16 / element bytes (16 for fp8), so one lane's 16-byte read along K is
contiguous and a tile's 512 bytes are one block. The tensor keeps its [N, K] shape; only the order of its
bytes changes. Element (n, k) lies at
``(n // 16) * 16 * K + (k // 32) * 512 + ((k % 32) // KP) * 16 * KP + (n % 16) * KP + k % KP``.
``weight_scale`` becomes float32 [N].

The activations are quantized per token to the weight's fp8 dtype (as the scaled_mm kernel does), the
GEMM accumulates ``tl.dot`` of the fp8 tiles in float32, and the epilogue applies both scales and the bias.
The layout needs N a multiple of 16 and K a multiple of 32 (as AITER's does): ``supports`` refuses
other shapes from the layer's ``in_features`` / ``out_features`` facts.

Checked only under the Triton interpreter on the CPU (tests/test_rocm_preshuffled.py); it has never
run on AMD hardware, so it is registered below the scaled_mm kernel and never chosen by default.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, check_shape, fail
from tessera.pluggable_layers.reference.linear import check_linear_args
from tessera_rocm.kernels.linear_fp8 import quantize_per_token
from tessera_rocm.kernels.linear_fp8 import supports as fp8_supports

OP = "linear_fp8"
TILE_N, TILE_K = 16, 32  # AITER's layout=(16, 16): 16 rows, BK = 2 * 16 elements
PREPARED_LAYOUT = "weight fp8 [N, K] shuffled in 16 x 32 tiles of [32/KP, 16, KP] (AITER shuffle_weight), weight_scale f32 [N]"
CONFIG = {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4}


def shuffle_weight(w: torch.Tensor) -> torch.Tensor:
    """AITER's ``shuffle_weight(w, layout=(16, 16))``: [N, K] -> [N/16, K/32, 32/KP, 16, KP], viewed as [N, K]."""
    n, k = w.shape
    kp = 16 // w.element_size()
    if n % TILE_N or k % TILE_K:
        fail(OP, f"the shuffled layout needs N a multiple of {TILE_N} and K of {TILE_K}, got [{n}, {k}]")
    tiles = w.reshape(n // TILE_N, TILE_N, k // TILE_K, TILE_K // kp, kp)
    return tiles.permute(0, 2, 3, 1, 4).contiguous().view(n, k)


def unshuffle_weight(w: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`shuffle_weight` (for tests and for reading a prepared weight back)."""
    n, k = w.shape
    kp = 16 // w.element_size()
    tiles = w.reshape(n // TILE_N, k // TILE_K, TILE_K // kp, TILE_N, kp)
    return tiles.permute(0, 3, 1, 2, 4).contiguous().view(n, k)


def supports(query) -> str | None:
    refusal = fp8_supports(query)
    if refusal:
        return refusal
    if not query.platform.capabilities.triton_backend:
        return f"platform {query.platform.name} has no Triton backend"
    n, k = query.get("out_features"), query.get("in_features")
    if n is None or k is None:
        return "needs the layer's in_features and out_features facts (the shuffled layout has shape limits)"
    if n % TILE_N or k % TILE_K:
        return f"the shuffled layout needs out_features % {TILE_N} == 0 and in_features % {TILE_K} == 0, got {n}, {k}"
    return None


def prepare(weights, **facts):
    """The checkpoint's fp8 ``weight`` [N, K] shuffled (see the module docstring), ``weight_scale`` float32 [N]."""
    return {
        "weight": shuffle_weight(weights["weight"]),
        "weight_scale": weights["weight_scale"].float().reshape(-1).contiguous(),
    }


@triton.jit
def _preshuffled_fp8_kernel(x_ptr, xs_ptr, w_ptr, ws_ptr, bias_ptr, out_ptr, M, N, K, stride_xm, stride_om,
                            HAS_BIAS: tl.constexpr, KP: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    # the n part of each element's address: its 16-row tile, then its row within a [16, KP] run
    n_addr = (offs_n // 16).to(tl.int64) * 16 * K + (offs_n % 16) * KP
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * stride_xm + offs_k[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)  # fmt: skip
        k_addr = (offs_k // 32) * 512 + ((offs_k % 32) // KP) * (16 * KP) + offs_k % KP
        b = tl.load(
            w_ptr + k_addr[:, None] + n_addr[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0
        )
        acc = tl.dot(a, b, acc, out_dtype=tl.float32)
    xs = tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)
    ws = tl.load(ws_ptr + offs_n, mask=mask_n, other=0.0)
    acc = acc * xs[:, None] * ws[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    ptrs = out_ptr + offs_m[:, None].to(tl.int64) * stride_om + offs_n[None, :]
    tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _check(x, weight, weight_scale, bias, out) -> tuple[int, int]:
    check_dtype(OP, "x", x, FLOATS)
    if weight.dtype not in (torch.float8_e4m3fnuz, torch.float8_e4m3fn):
        fail(OP, f"weight must be float8_e4m3fnuz or float8_e4m3fn, got {weight.dtype}")
    check_linear_args(OP, x, weight, bias)
    n, k = weight.shape
    if n % TILE_N or k % TILE_K or not weight.is_contiguous():
        fail(OP, f"weight must be the prepared (shuffled, contiguous) [N, K] with N % {TILE_N} == 0 and "
                 f"K % {TILE_K} == 0, got {list(weight.shape)}; run this kernel's prepare on the checkpoint weight")  # fmt: skip
    check_shape(OP, "weight_scale", weight_scale, (n,))
    if weight_scale.dtype != torch.float32 or not weight_scale.is_contiguous():
        fail(OP, "weight_scale must be the prepared contiguous float32 [N]; run this kernel's prepare")
    check_out(OP, out, (x.shape[0], n), x.dtype)
    return n, k


def linear_fp8(x, weight, weight_scale, bias=None, out=None, config=None):
    n, k = _check(x, weight, weight_scale, bias, out)
    m = x.shape[0]
    out = torch.empty((m, n), dtype=x.dtype, device=x.device) if out is None else out
    if m == 0:
        return out
    config = {**CONFIG, **(config or {})}
    xq, x_scale = quantize_per_token(x, weight.dtype)
    xq, x_scale = xq.contiguous(), x_scale.reshape(-1).contiguous()
    grid = (triton.cdiv(n, config["BLOCK_N"]), triton.cdiv(m, config["BLOCK_M"]))
    _preshuffled_fp8_kernel[grid](
        xq, x_scale, weight, weight_scale, bias if bias is not None else weight_scale, out, m, n, k,
        xq.stride(0), out.stride(0), HAS_BIAS=bias is not None, KP=16 // weight.element_size(),
        BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
        num_warps=config["num_warps"],
    )  # fmt: skip
    return out
