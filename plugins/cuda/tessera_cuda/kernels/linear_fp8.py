"""linear_fp8 through torch._scaled_mm (cuBLASLt fp8 GEMM) with row-wise scales, sm_89 and later.

Layout: x [T, K] bf16/fp16/fp32, weight [N, K] float8_e4m3fn with weight_scale [N]
float32 (per output channel), bias [N] or None; out [T, N] in x's dtype. The
activation is quantized per token (scale = amax / 448) by one Triton kernel
(:mod:`tessera_cuda.kernels.quant_fp8`), then one fp8 GEMM applies both scales in
its epilogue. K and N must be
multiples of 16 (cuBLASLt fp8); the supports predicate refuses other shapes.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, check_shape, fail, write
from tessera.pluggable_layers.reference.linear import check_linear_args

OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def supports(query) -> str | None:
    caps = query.platform.capabilities
    if getattr(caps, "fp8_dtype", None) != "float8_e4m3fn":
        return "needs an e4m3fn fp8 device (sm_89 or later)"
    if query.get("fp8_dtype", "float8_e4m3fn") != "float8_e4m3fn":
        return f"weights in {query.get('fp8_dtype')} (this kernel takes float8_e4m3fn)"
    return None


def linear_fp8(x, weight, weight_scale, bias=None, out=None):
    op = "linear_fp8"
    check_dtype(op, "x", x, FLOATS)
    if weight.dtype != torch.float8_e4m3fn:
        fail(op, f"weight must be float8_e4m3fn, got {weight.dtype}")
    check_linear_args(op, x, weight, bias)
    check_shape(op, "weight_scale", weight_scale, (weight.shape[0],))
    check_out(op, out, (x.shape[0], weight.shape[0]), x.dtype)
    n, k = weight.shape
    if k % 16 or n % 16:
        fail(op, f"K ({k}) and N ({n}) must be multiples of 16 for the fp8 GEMM")
    out_dtype = x.dtype if x.dtype in OUT_DTYPES else torch.bfloat16
    from tessera_cuda.kernels.quant_fp8 import quantize_per_token

    xq, x_scale = quantize_per_token(x if x.stride(-1) == 1 else x.contiguous())
    y = torch._scaled_mm(
        xq,
        weight.t(),
        scale_a=x_scale,
        scale_b=weight_scale.float().view(1, -1),
        bias=None,
        out_dtype=out_dtype,
    )
    if bias is not None:
        y = y + bias.to(y.dtype)
    return write(out, y.to(x.dtype))
