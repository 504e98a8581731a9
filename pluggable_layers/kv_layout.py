"""KV-cache block layouts (plugin API 1.2): the paged_attention kernel declares the layout it reads,
the kv_cache_write kernel selected with it must write the same one, and the engine allocates the
cache in it.

A layout names the order of a cache block's axes; both caches (keys and values) use it:

- ``"nhd"`` (the default, and the only layout before 1.2): ``[num_blocks, block_size, Hk, D]``,
  token-major inside a block;
- ``"hnd"``: ``[num_blocks, Hk, block_size, D]``, head-major inside a block (each KV head's tokens
  of one block are contiguous).

A kernel of either op registers ``kv_layout="hnd"`` (or a tuple of the layouts it handles). A
kernel that declares one layout is always called in it; a kernel that declares several (the
references do) receives the one in use as the keyword argument ``kv_layout=``. A kernel that
declares none (every 1.0 / 1.1 kernel) reads or writes ``"nhd"``.

Selection pairs them: the attention layer selects ``paged_attention`` first, takes the layout of
the chosen kernel (its first declared one), and selects ``kv_cache_write`` with the fact
``kv_layout=<that layout>``, which refuses every writer of another layout, saying so.
"""

from __future__ import annotations

from typing import Any

import torch

from tessera.pluggable_layers.errors import KernelError

#: layout -> the axes of one cache tensor
KV_LAYOUTS: dict[str, str] = {
    "nhd": "[num_blocks, block_size, num_kv_heads, head_dim]",
    "hnd": "[num_blocks, num_kv_heads, block_size, head_dim]",
}
DEFAULT_KV_LAYOUT = "nhd"
#: the ops whose kernels read or write the paged KV cache
KV_OPS = ("kv_cache_write", "paged_attention")
#: the query fact that asks for a layout
FACT = "kv_layout"


def normalize_layouts(
    op: str, name: str, kv_layout: str | tuple[str, ...] | list[str] | None
) -> tuple[str, ...]:
    """The layouts a registration declares, checked: the default for KV ops that name none, () otherwise."""
    if kv_layout is None:
        return (DEFAULT_KV_LAYOUT,) if op in KV_OPS else ()
    if op not in KV_OPS:
        raise KernelError(
            f"kernel {name!r} for {op} declares kv_layout, but only {' and '.join(KV_OPS)} use the KV cache"
        )
    layouts = (kv_layout,) if isinstance(kv_layout, str) else tuple(kv_layout)
    unknown = [x for x in layouts if x not in KV_LAYOUTS]
    if unknown or not layouts:
        raise KernelError(f"kernel {name!r} for {op} declares KV layout(s) {unknown or 'none'}; "
                          f"the layouts are: {', '.join(KV_LAYOUTS)}")  # fmt: skip
    return tuple(dict.fromkeys(layouts))


def layouts_of(kernel: Any) -> tuple[str, ...]:
    """The layouts ``kernel`` handles (a kernel that declares none handles the default)."""
    return tuple(getattr(kernel, "kv_layouts", ()) or (DEFAULT_KV_LAYOUT,))


def layout_refusal(kernel: Any, query: Any) -> str | None:
    """Why ``kernel`` cannot serve ``query``'s ``kv_layout`` fact, or None."""
    wanted = query.get(FACT)
    if wanted is None or kernel.op not in KV_OPS:
        return None
    if wanted not in KV_LAYOUTS:
        return f"unknown KV layout {wanted!r} asked (layouts: {', '.join(KV_LAYOUTS)})"
    have = layouts_of(kernel)
    if wanted in have:
        return None
    verb = "writes" if kernel.op == "kv_cache_write" else "reads"
    by = query.get("kv_layout_from")
    source = f"the paged_attention kernel selected with it ({by}) reads" if by else "the call asks for"
    return f"{verb} the {'/'.join(have)} KV layout, but {source} {wanted} (KV layouts must match; plugin API 1.2)"


def selected_layout(kernel: Any, query: Any) -> str:
    """The layout a selected kernel runs in: the one the query asked for, else its first declared."""
    return query.get(FACT) or layouts_of(kernel)[0]


def call_kwargs(kernel: Any, query: Any | None) -> dict[str, str]:
    """Extra keyword arguments for a call: ``kv_layout=`` for kernels that declare several layouts."""
    layouts = layouts_of(kernel)
    if kernel.op not in KV_OPS or len(layouts) < 2:
        return {}
    asked = query.get(FACT) if query is not None else None
    return {FACT: asked or layouts[0]}


def cache_shape(
    layout: str, num_blocks: int, block_size: int, kv_heads: int, head_dim: int
) -> tuple[int, ...]:
    """The shape of one cache tensor (keys or values) in ``layout``."""
    if layout == "hnd":
        return (num_blocks, kv_heads, block_size, head_dim)
    if layout == "nhd":
        return (num_blocks, block_size, kv_heads, head_dim)
    raise KernelError(f"unknown KV layout {layout!r}; the layouts are: {', '.join(KV_LAYOUTS)}")


def to_token_major(cache: torch.Tensor, layout: str) -> torch.Tensor:
    """A view of ``cache`` as ``[num_blocks, block_size, Hk, D]`` (no copy)."""
    return cache.transpose(1, 2) if layout == "hnd" else cache


def from_token_major(cache: torch.Tensor, layout: str) -> torch.Tensor:
    """A contiguous copy of a ``[num_blocks, block_size, Hk, D]`` cache in ``layout``."""
    return (cache.transpose(1, 2) if layout == "hnd" else cache).contiguous()


def check_layout(op: str, kv_layout: str) -> None:
    if kv_layout not in KV_LAYOUTS:
        from tessera.pluggable_layers.checks import fail

        fail(op, f"unknown kv_layout {kv_layout!r}; the layouts are: {', '.join(KV_LAYOUTS)}")
