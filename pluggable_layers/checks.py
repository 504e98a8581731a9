"""Argument checks shared by the reference kernels and every plugin's launchers.

Each raises :class:`KernelInputError` with a message naming the op, the argument,
what was expected and what was given, so a wrong call never reads out of bounds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

import torch

from tessera.pluggable_layers.errors import KernelInputError

_trusted_depth = 0


@contextmanager
def trusted_indices() -> Iterator[None]:
    """Skip value checks of index tensors inside this block.

    The engine builds slot mappings, block tables and sequence lengths itself and
    vouches for them; checking their values would cost a device-to-host sync per
    kernel and break graph capture. Shapes and dtypes are still checked.
    """
    global _trusted_depth
    _trusted_depth += 1
    try:
        yield
    finally:
        _trusted_depth -= 1


def checking_values() -> bool:
    """Whether launchers should check the values of index tensors (outside ``trusted_indices``)."""
    return _trusted_depth == 0


def fail(op: str, message: str) -> None:
    raise KernelInputError(f"{op}: {message}")


def check_rank(op: str, name: str, t: torch.Tensor, rank: int) -> None:
    if t.dim() != rank:
        fail(op, f"{name} must have {rank} dimensions, got shape {tuple(t.shape)}")


def check_dtype(op: str, name: str, t: torch.Tensor, allowed: Collection[torch.dtype]) -> None:
    """``allowed`` is a tuple or set of dtypes (checked by membership: these checks run on every call)."""
    if t.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        fail(op, f"{name} has dtype {str(t.dtype).removeprefix('torch.')}; supported: {names}")


def check_same_dtype(op: str, **tensors: torch.Tensor | None) -> None:
    present = {k: v for k, v in tensors.items() if v is not None}
    dtypes = {v.dtype for v in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{k}={str(v.dtype).removeprefix('torch.')}" for k, v in present.items())
        fail(op, f"arguments must share one dtype, got {listing}")


def check_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    if not t.is_contiguous():
        fail(
            op,
            f"{name} must be contiguous (call .contiguous() first); strides {t.stride()} for shape {tuple(t.shape)}",
        )


def check_last_dim_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    if t.stride(-1) != 1:
        fail(op, f"{name} must have a unit stride in its last dimension, got strides {t.stride()}")


def check_shape(op: str, name: str, t: torch.Tensor, expected: tuple) -> None:
    """``expected`` may hold None for dimensions that are not checked."""
    shape = t.shape
    if len(shape) == len(expected):
        for e, s in zip(expected, shape, strict=True):  # a plain loop: these checks run on every kernel call
            if e is not None and e != s:
                break
        else:
            return
    want = tuple("*" if e is None else e for e in expected)
    fail(op, f"{name} must have shape {want}, got {tuple(shape)}")


def check_index_range(op: str, name: str, index: torch.Tensor, upper: int, what: str) -> None:
    """Every entry of ``index`` must lie in [0, upper)."""
    if index.numel() == 0 or not checking_values():
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= upper:
        fail(op, f"{name} holds {lo if lo < 0 else hi}, outside [0, {upper}) {what}")


def check_out(op: str, out: torch.Tensor | None, shape: tuple, dtype: torch.dtype) -> None:
    if out is None:
        return
    if out.shape != tuple(shape) or out.dtype != dtype:
        fail(op, f"out must have shape {tuple(shape)} and dtype {dtype}, got {tuple(out.shape)} {out.dtype}")


def acc_dtype(t: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float64 stays float64 (the conformance oracle), all else float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def write(out: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` in ``out`` when given (cast to its dtype), else ``value`` itself."""
    if out is None:
        return value
    out.copy_(value)
    return out


FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INDEX = (torch.int32, torch.int64)
