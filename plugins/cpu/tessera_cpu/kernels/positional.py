"""rotary_embedding and kv_cache_write on the CPU: vectorized torch.

Same contracts as the references. Rotary turns q and k in one pass (their heads side
by side) with the cos/sin rows gathered once; the cache write is one index_copy_ per
cache instead of masked assignment.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import acc_dtype, write
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, to_token_major
from tessera.pluggable_layers.reference.kv_cache_write import check_kv_write_args
from tessera.pluggable_layers.reference.rotary_embedding import check_rotary_args


def rotary_embedding(positions, q, k, cos_sin_cache, is_neox, q_out=None, k_out=None):
    rot = check_rotary_args("rotary_embedding", positions, q, k, cos_sin_cache, q_out, k_out)
    acc = acc_dtype(q)
    half = rot // 2
    cache = cos_sin_cache.index_select(0, positions.long()).to(acc)[:, None, :]
    cos, sin = cache[..., :half], cache[..., half:]
    qk = torch.cat([q, k], dim=1).to(acc)  # [T, Hq + Hk, D]
    if is_neox:
        x1, x2 = qk[..., :half], qk[..., half:rot]
    else:
        x1, x2 = qk[..., 0:rot:2], qk[..., 1:rot:2]
    first = torch.addcmul(x1 * cos, x2, sin, value=-1)
    second = torch.addcmul(x2 * cos, x1, sin)
    turned = torch.cat([first, second], -1) if is_neox else torch.stack([first, second], -1).flatten(-2)
    if rot < q.shape[-1]:
        turned = torch.cat([turned, qk[..., rot:]], -1)
    q_new, k_new = turned.split([q.shape[1], k.shape[1]], dim=1)
    return write(q_out, q_new.to(q.dtype)), write(k_out, k_new.to(k.dtype))


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, kv_layout=DEFAULT_KV_LAYOUT):
    """Token-major caches: one index_copy_ per cache; head-major: one indexed store per cache."""
    check_kv_write_args("kv_cache_write", key, value, key_cache, value_cache, slot_mapping, kv_layout)
    heads, dim = key.shape[1:]
    slots = slot_mapping.long()
    if bool((slots < 0).any()):
        keep = slots >= 0
        key, value, slots = key[keep], value[keep], slots[keep]
    if kv_layout == DEFAULT_KV_LAYOUT:
        key_cache.view(-1, heads, dim).index_copy_(0, slots, key)
        value_cache.view(-1, heads, dim).index_copy_(0, slots, value)
        return
    block_size = key_cache.shape[2]
    blocks, rows = slots // block_size, slots % block_size
    to_token_major(key_cache, kv_layout)[blocks, rows] = key
    to_token_major(value_cache, kv_layout)[blocks, rows] = value
