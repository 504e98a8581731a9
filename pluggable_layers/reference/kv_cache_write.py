"""Reference kv_cache_write: scatter each token's key and value into its cache slot.

The caches are ``[num_blocks, block_size, Hk, D]`` (``kv_layout="nhd"``) or
``[num_blocks, Hk, block_size, D]`` (``"hnd"``, plugin API 1.2; see
:mod:`tessera.pluggable_layers.kv_layout`); slot ``s`` is token row
``s % block_size`` of block ``s // block_size``. Tokens whose slot is negative
(padding) are skipped. The caches are written in place; nothing is returned.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import (
    INDEX,
    check_contiguous,
    check_dtype,
    check_index_range,
    check_rank,
    check_shape,
    checking_values,
    fail,
)
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, check_layout, to_token_major


def check_kv_write_args(
    op, key, value, key_cache, value_cache, slot_mapping, kv_layout=DEFAULT_KV_LAYOUT
) -> None:
    check_layout(op, kv_layout)
    check_rank(op, "key", key, 3)
    check_shape(op, "value", value, key.shape)
    check_rank(op, "key_cache", key_cache, 4)
    check_shape(op, "value_cache", value_cache, key_cache.shape)
    check_contiguous(op, "key_cache", key_cache)
    check_contiguous(op, "value_cache", value_cache)
    token_major = to_token_major(key_cache, kv_layout).shape
    if token_major[2:] != key.shape[1:]:
        fail(op, f"cache heads/head size {tuple(token_major[2:])} ({kv_layout} layout) differ from key's "
                 f"{tuple(key.shape[1:])}")  # fmt: skip
    if key_cache.dtype != key.dtype or value_cache.dtype != value.dtype:
        fail(op, f"cache dtype {key_cache.dtype} differs from key/value dtype {key.dtype}")
    check_dtype(op, "slot_mapping", slot_mapping, INDEX)
    check_shape(op, "slot_mapping", slot_mapping, (key.shape[0],))
    if checking_values():
        num_slots = token_major[0] * token_major[1]
        valid = slot_mapping[slot_mapping >= 0]
        check_index_range(op, "slot_mapping", valid, num_slots, f"of the {num_slots} cache slots")


def kv_cache_write(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    kv_layout: str = DEFAULT_KV_LAYOUT,
) -> None:
    check_kv_write_args("kv_cache_write", key, value, key_cache, value_cache, slot_mapping, kv_layout)
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    block_size = to_token_major(key_cache, kv_layout).shape[1]
    blocks, rows = slots // block_size, slots % block_size
    for cache, new in ((key_cache, key), (value_cache, value)):
        to_token_major(cache, kv_layout)[blocks, rows] = new[keep]
