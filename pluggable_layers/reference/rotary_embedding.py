"""Reference rotary_embedding.

``cos_sin_cache[P, R]`` holds, for every position, ``R/2`` cosines then ``R/2``
sines. The first ``R`` dims of each head are rotated (``R <= D``, the rest pass
through). neox style rotates the two halves ``(x[:R/2], x[R/2:R])``; gptj style
rotates interleaved pairs ``(x[0::2], x[1::2])``.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    FLOATS,
    INDEX,
    acc_dtype,
    check_dtype,
    check_index_range,
    check_out,
    check_rank,
    fail,
    write,
)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox: bool) -> torch.Tensor:
    """Rotate ``x[T, H, R]`` by per-token ``cos``/``sin`` of shape ``[T, R/2]``."""
    cos, sin = cos[:, None, :], sin[:, None, :]
    if is_neox:
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)


def check_rotary_args(op, positions, q, k, cos_sin_cache, q_out=None, k_out=None) -> int:
    """The contract's checks (dtypes, ranks, one row per token, positions in the cache); returns the rotary dim."""
    check_dtype(op, "positions", positions, INDEX)
    check_rank(op, "q", q, 3)
    check_rank(op, "k", k, 3)
    check_dtype(op, "q", q, FLOATS)
    rot = cos_sin_cache.shape[-1]
    if rot % 2 or rot > q.shape[-1] or q.shape[-1] != k.shape[-1]:
        fail(op, f"rotary dim {rot} must be even and at most the head size {q.shape[-1]} (q and k alike)")
    if positions.shape[0] != q.shape[0] or k.shape[0] != q.shape[0]:
        fail(
            op,
            f"positions, q and k must have one row per token, got {positions.shape[0]}, {q.shape[0]}, {k.shape[0]}",
        )
    check_index_range(op, "positions", positions, cos_sin_cache.shape[0], "of the cos/sin cache")
    check_out(op, q_out, tuple(q.shape), q.dtype)
    check_out(op, k_out, tuple(k.shape), k.dtype)
    return rot


def rotary_embedding(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool,
    q_out: torch.Tensor | None = None,
    k_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    rot = check_rotary_args("rotary_embedding", positions, q, k, cos_sin_cache, q_out, k_out)
    acc = acc_dtype(q)
    cache = cos_sin_cache.to(acc)[positions.long()]
    cos, sin = cache[:, : rot // 2], cache[:, rot // 2 :]
    results = []
    for t in (q, k):
        rotated = rotate(t[..., :rot].to(acc), cos, sin, is_neox)
        results.append(torch.cat([rotated, t[..., rot:].to(acc)], dim=-1).to(t.dtype))
    return write(q_out, results[0]), write(k_out, results[1])
