"""linear_fp8 for AMD Instinct: per-token activation quantization into the device's own fp8 flavour
(float8_e4m3fnuz, max 240, on gfx942; OCP float8_e4m3fn, max 448, on gfx950), then hipBLASLt's fp8
GEMM through torch._scaled_mm with row-wise scales.

Layout as the reference: x [T, K], weight [N, K] in the platform's fp8 dtype with weight_scale [N],
bias [N] or None. Never run on AMD hardware here: checked only for its quantization on the CPU.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, check_shape, fail, write
from tessera.pluggable_layers.reference.linear import check_linear_args


def supports(query) -> str | None:
    fp8 = query.platform.capabilities.fp8_dtype
    if fp8 is None:
        return f"{query.platform.arch or 'this device'} has no fp8 (gfx942 / gfx950 do)"
    if query.get("fp8_dtype", fp8) != fp8:
        return f"weights in {query.get('fp8_dtype')} but the device computes in {fp8}"
    return None


def quantize_per_token(x: torch.Tensor, fp8: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    fmax = torch.finfo(fp8).max
    scale = (x.abs().amax(dim=-1, keepdim=True).float() / fmax).clamp(min=1e-12)
    return (x.float() / scale).clamp(-fmax, fmax).to(fp8), scale


def linear_fp8(x, weight, weight_scale, bias=None, out=None):
    op = "linear_fp8"
    check_dtype(op, "x", x, FLOATS)
    if weight.dtype not in (torch.float8_e4m3fnuz, torch.float8_e4m3fn):
        fail(op, f"weight must be float8_e4m3fnuz or float8_e4m3fn, got {weight.dtype}")
    check_linear_args(op, x, weight, bias)
    check_shape(op, "weight_scale", weight_scale, (weight.shape[0],))
    check_out(op, out, (x.shape[0], weight.shape[0]), x.dtype)
    xq, x_scale = quantize_per_token(x, weight.dtype)
    out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    y = torch._scaled_mm(
        xq, weight.t(), scale_a=x_scale, scale_b=weight_scale.float().view(1, -1), out_dtype=out_dtype
    )
    if bias is not None:
        y = y + bias.to(y.dtype)
    return write(out, y.to(x.dtype))
