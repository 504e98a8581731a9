"""Reference linear_wna16: 4-bit weights (GPTQ or AWQ checkpoint layout), 16-bit (or 32-bit) activations.

``out[T,N] = x[T,K] @ W.T + bias`` with ``W[n, k] = (q[k, n] - z[g, n]) * scales[g, n]``, ``g = k // (K / G)``:
``G`` groups of consecutive input channels (``G = K / 128`` for group size 128, ``G = 1`` per channel).
The 4-bit values ``q`` and zero points ``z`` (0..15) come packed eight to an int32, lowest nibble first,
in the layout ``weight_format`` names:

- ``"gptq"`` (AutoGPTQ, checkpoint_format gptq): ``qweight[K/8, N]`` packed along K (word ``r`` holds rows
  ``8r..8r+7``), ``qzeros[G, N/8]`` packed along N, each zero stored minus one (``z = (stored + 1) & 15``);
  a symmetric checkpoint stores 7 for the zero point 8;
- ``"gptq_v2"`` (GPTQModel's v2): as ``"gptq"`` with the zero points stored as they are;
- ``"awq"`` (AutoAWQ, GEMM version): ``qweight[K, N/8]`` and ``qzeros[G, N/8]`` both packed along N, nibble
  ``i`` of word ``j`` holding column ``8j + AWQ_ORDER[i]``, zero points stored as they are.

``scales[G, N]`` are in the activation dtype. Act-order checkpoints (a permuted ``g_idx``) are not
this op's: the loader refuses them.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import FLOATS, acc_dtype, check_dtype, check_out, check_rank, fail, write

WEIGHT_FORMATS = ("gptq", "gptq_v2", "awq")
#: AutoAWQ's packing order: nibble i of a word holds column AWQ_ORDER[i] of its eight
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
#: the nibble that holds column c of its eight
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
OP = "linear_wna16"


def unpack_rows(packed: torch.Tensor) -> torch.Tensor:
    """int32 [R/8, C] packed along rows, lowest nibble first -> int32 [R, C] of 0..15."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=packed.device)
    return ((packed[:, None, :] >> shifts[None, :, None]) & 15).reshape(-1, packed.shape[1])


def unpack_cols(packed: torch.Tensor, awq_order: bool = False) -> torch.Tensor:
    """int32 [R, C/8] packed along columns -> int32 [R, C] of 0..15 in natural column order."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=packed.device)
    values = (packed[:, :, None] >> shifts[None, None, :]) & 15
    if awq_order:
        values = values[:, :, list(AWQ_REVERSE_ORDER)]
    return values.reshape(packed.shape[0], -1)


def checkpoint_shape(weight_format: str, k: int, n: int, groups: int) -> dict[str, tuple[int, int]]:
    """The shapes of qweight, qzeros and scales a checkpoint in ``weight_format`` stores for [N, K]."""
    if weight_format not in WEIGHT_FORMATS:
        fail(OP, f"weight_format must be one of {WEIGHT_FORMATS}, got {weight_format!r}")
    qweight = (k, n // 8) if weight_format == "awq" else (k // 8, n)
    return {"qweight": qweight, "qzeros": (groups, n // 8), "scales": (groups, n)}


def unpacked(
    qweight: torch.Tensor, qzeros: torch.Tensor, weight_format: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(q[K, N], z[G, N]) as int32 0..15, the real zero points (the v1 offset undone)."""
    awq = weight_format == "awq"
    q = unpack_cols(qweight, awq_order=True) if awq else unpack_rows(qweight)
    z = unpack_cols(qzeros, awq_order=awq)
    if weight_format == "gptq":
        z = (z + 1) & 15
    return q, z


def check_wna16_args(x, qweight, scales, qzeros, bias, weight_format) -> tuple[int, int, int]:
    """(K, N, G) after checking every shape against ``weight_format``'s layout."""
    check_rank(OP, "x", x, 2)
    for name, t in (("qweight", qweight), ("scales", scales), ("qzeros", qzeros)):
        check_rank(OP, name, t, 2)
    for name, t in (("qweight", qweight), ("qzeros", qzeros)):
        if t.dtype != torch.int32:
            fail(OP, f"{name} must be int32 (eight 4-bit values a word), got {t.dtype}")
    k, (groups, n) = x.shape[1], scales.shape
    if k % 8 or n % 8 or groups < 1 or k % groups:
        fail(OP, f"K={k} must be a multiple of 8 and of the {groups} groups, N={n} a multiple of 8")
    for name, shape in checkpoint_shape(weight_format, k, n, groups).items():
        got = {"qweight": qweight, "qzeros": qzeros, "scales": scales}[name]
        if tuple(got.shape) != shape:
            fail(OP, f"{name} must be {list(shape)} for x[T, {k}] in the {weight_format} layout, got "
                     f"{list(got.shape)}")  # fmt: skip
    if bias is not None and tuple(bias.shape) != (n,):
        fail(OP, f"bias must have shape ({n},), got {tuple(bias.shape)}")
    return k, n, groups


def dequantize(qweight, scales, qzeros, weight_format: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The real weight ``W[N, K]`` in ``dtype`` (default: the scales' dtype), computed in that dtype."""
    dtype = dtype or scales.dtype
    q, z = unpacked(qweight, qzeros, weight_format)
    group = q.shape[0] // scales.shape[0]
    s = scales.to(dtype).repeat_interleave(group, dim=0)
    w = (q.to(dtype) - z.to(dtype).repeat_interleave(group, dim=0)) * s
    return w.T


def linear_wna16(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    qzeros: torch.Tensor,
    bias: torch.Tensor | None = None,
    weight_format: str = "gptq",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    check_dtype(OP, "x", x, FLOATS)
    k, n, _ = check_wna16_args(x, qweight, scales, qzeros, bias, weight_format)
    check_out(OP, out, (x.shape[0], n), x.dtype)
    acc = acc_dtype(x)
    y = x.to(acc) @ dequantize(qweight, scales, qzeros, weight_format, acc).T
    if bias is not None:
        y = y + bias.to(acc)
    return write(out, y.to(x.dtype))
