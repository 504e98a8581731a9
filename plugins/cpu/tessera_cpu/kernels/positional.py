"""rotary_embedding and kv_cache_write on the CPU: vectorized torch.

Same contracts as the references. The rotary reference is already vectorized
torch over tokens and heads, so it serves as the CPU kernel; the cache write is
one index_copy_ per cache instead of masked assignment.
"""

from __future__ import annotations

from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, to_token_major
from tessera.pluggable_layers.reference.kv_cache_write import check_kv_write_args
from tessera.pluggable_layers.reference.rotary_embedding import rotary_embedding as _reference_rotary


def rotary_embedding(positions, q, k, cos_sin_cache, is_neox, q_out=None, k_out=None):
    # The reference is already vectorized over tokens and heads; it is the torch-native form.
    return _reference_rotary(positions, q, k, cos_sin_cache, is_neox, q_out, k_out)


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
