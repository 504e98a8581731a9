"""linear_fp8 through torch._scaled_mm (cuBLASLt fp8 GEMM) with row-wise scales, sm_89 and later.

Layout: x [T, K] bf16/fp16/fp32, weight [N, K] float8_e4m3fn with weight_scale [N]
float32 (per output channel), bias [N] or None; out [T, N] in x's dtype. The
activation is quantized per token (scale = amax / 448) by one Triton kernel
(:mod:`tessera_cuda.kernels.quant_fp8`), then one fp8 GEMM.

Up to ``SMALL_M`` rows (decode) the GEMM is memory-bound, and cuBLASLt's
row-wise-scaled fp8 kernels read the weight much more slowly than its
tensor-wise ones. There the GEMM runs tensor-wise with unit scales into float32
and one small Triton epilogue applies both scales (and the bias); above it, the
row-wise GEMM applies them itself. On an H100 at 16 x 8192 x 8192 the whole op
takes 31 us this way against 43 us through the row-wise GEMM (bf16 torch.mm:
48 us); past 64 rows the row-wise GEMM wins (benchmarks/results/H100/fp8_small_m.json). K and N must be multiples of 16 (cuBLASLt fp8); the
kernel refuses other shapes.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, check_shape, fail, write
from tessera.pluggable_layers.reference.linear import check_linear_args

OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SMALL_M = 64  # rows up to which the tensor-wise GEMM plus epilogue path runs
_UNIT_SCALES: dict[torch.device, torch.Tensor] = {}


def unit_scale(device: torch.device) -> torch.Tensor:
    """A float32 1.0 on ``device``, made once (outside any graph capture after the first call)."""
    one = _UNIT_SCALES.get(device)
    if one is None:
        one = _UNIT_SCALES[device] = torch.ones((), dtype=torch.float32, device=device)
    return one


def supports(query) -> str | None:
    if query.platform.capabilities.fp8_dtype != "float8_e4m3fn":
        return "needs an e4m3fn fp8 device (sm_89 or later)"
    if query.get("fp8_dtype", "float8_e4m3fn") != "float8_e4m3fn":
        return f"weights in {query.get('fp8_dtype')} (this kernel takes float8_e4m3fn)"
    k, n = query.get("in_features"), query.get("out_features")
    if (k is not None and k % 16) or (n is not None and n % 16):
        return f"K ({k}) and N ({n}) must be multiples of 16 (cuBLASLt fp8)"
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
    if x.shape[0] <= SMALL_M:
        from tessera_cuda.kernels.quant_fp8 import scale_epilogue

        one = unit_scale(x.device)
        acc = torch._scaled_mm(xq, weight.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
        target = out if out is not None and out.stride(-1) == 1 else torch.empty_like(acc, dtype=x.dtype)
        y = scale_epilogue(acc, x_scale, weight_scale.float(), bias, target)
        return y if target is out else write(out, y)
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
