"""Per-token fp8 quantization of activations in one Triton kernel (amax, scale, cast).

Layout: x [T, K] bf16/fp16/fp32 with a unit stride in K. Writes xq [T, K]
float8_e4m3fn and scale [T, 1] float32 with x ~= xq * scale, scale = amax / 448.
One program per row; rows up to 16384 wide are held in registers (one read of x),
wider rows take two passes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

FP8_MAX = 448.0


@triton.jit
def _quant_fp8_kernel(x_ptr, q_ptr, s_ptr, K, stride_x, stride_q, BLOCK: tl.constexpr, SINGLE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    if SINGLE:
        cols = tl.arange(0, BLOCK)
        ok = cols < K
        x = tl.load(x_ptr + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
        scale = tl.maximum(tl.max(tl.abs(x), axis=0) / 448.0, 1e-12)
        q = tl.minimum(tl.maximum(x / scale, -448.0), 448.0)
        tl.store(q_ptr + row * stride_q + cols, q.to(tl.float8e4nv), mask=ok)
    else:
        amax = tl.zeros([BLOCK], tl.float32)
        for start in range(0, K, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride_x + cols, mask=cols < K, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(x))
        scale = tl.maximum(tl.max(amax, axis=0) / 448.0, 1e-12)
        for start in range(0, K, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride_x + cols, mask=cols < K, other=0.0).to(tl.float32)
            q = tl.minimum(tl.maximum(x / scale, -448.0), 448.0)
            tl.store(q_ptr + row * stride_q + cols, q.to(tl.float8e4nv), mask=cols < K)
    tl.store(s_ptr + row, scale)


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, k = x.shape
    xq = torch.empty(rows, k, dtype=torch.float8_e4m3fn, device=x.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=x.device)
    if rows:
        single = k <= 16384
        block = triton.next_power_of_2(k) if single else 4096
        _quant_fp8_kernel[(rows,)](x, xq, scale, k, x.stride(0), xq.stride(0), BLOCK=block, SINGLE=single,
                                   num_warps=8 if block >= 4096 else 4)  # fmt: skip
    return xq, scale


@triton.jit
def _scale_epilogue_kernel(acc_ptr, xs_ptr, ws_ptr, bias_ptr, out_ptr, N, stride_acc, stride_out,
                           HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < N
    y = tl.load(acc_ptr + row * stride_acc + cols, mask=ok, other=0.0) * tl.load(xs_ptr + row)
    y = y * tl.load(ws_ptr + cols, mask=ok, other=0.0)
    if HAS_BIAS:
        y += tl.load(bias_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_out + cols, y.to(out_ptr.dtype.element_ty), mask=ok)


def scale_epilogue(acc, x_scale, weight_scale, bias, out) -> torch.Tensor:
    """out[m, n] = acc[m, n] * x_scale[m] * weight_scale[n] (+ bias[n]), in out's dtype; acc float32."""
    rows, n = acc.shape
    if rows:
        block = 1024
        _scale_epilogue_kernel[(rows, triton.cdiv(n, block))](
            acc, x_scale, weight_scale, bias if bias is not None else acc, out, n, acc.stride(0), out.stride(0),
            HAS_BIAS=bias is not None, BLOCK=block, num_warps=4,
        )  # fmt: skip
    return out
