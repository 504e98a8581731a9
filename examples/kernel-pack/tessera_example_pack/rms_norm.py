"""rms_norm in row chunks: float32 statistics per chunk of rows, written straight into ``out``.

The same contract as tessera's reference (``tessera.pluggable_layers.reference.rms_norm``):
``x * rsqrt(mean(x^2) + eps) * weight``, computed in float32 and cast to x's dtype. Working in
chunks of ``ROWS`` rows bounds the float32 temporaries to ``ROWS x H`` whatever the batch, which
is the one tunable parameter (``tessera tune example_rms_norm`` picks it per shape and device).
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, check_dtype, check_out, check_shape
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey

CONFIG_SPACE = ConfigSpace(params={"ROWS": [16, 64, 256, 1024, 4096]}, default={"ROWS": 256})
SHAPE_KEY = ShapeKey(
    {"hidden": "pow2", "tokens": "pow2"}, lambda x, *a, **k: {"hidden": x.shape[-1], "tokens": x.shape[0]}
)


def rms_norm(x, weight, eps, out=None, config=None):
    op = "rms_norm"
    check_dtype(op, "x", x, FLOATS)
    check_shape(op, "weight", weight, (x.shape[-1],))
    check_out(op, out, tuple(x.shape), x.dtype)
    rows = int((config or CONFIG_SPACE.default)["ROWS"])
    out = torch.empty_like(x) if out is None else out
    w = weight.float()
    for start in range(0, x.shape[0], rows):
        xf = x[start : start + rows].float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w
        out[start : start + rows].copy_(y)
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """Inputs for one shape key: ``tokens`` rows of ``hidden``."""
    x = torch.randn(shape["tokens"], shape["hidden"], dtype=dtype, device=device)
    return (x, torch.randn(shape["hidden"], dtype=dtype, device=device), 1e-6), {}
