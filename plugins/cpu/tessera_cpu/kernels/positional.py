"""rotary_embedding and kv_cache_write on the CPU: vectorized torch.

Same contracts as the references. Rotary turns q and k in one pass (their heads side
by side) with the cos/sin rows gathered once; the cache write is one index_copy_ per
cache instead of masked assignment. At decode sizes each torch call costs more than its
arithmetic, so both make as few as they can.
"""

from __future__ import annotations

import torch

from tessera.pluggable_layers.checks import acc_dtype, write
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, to_token_major
from tessera.pluggable_layers.reference.kv_cache_write import check_kv_write_args
from tessera.pluggable_layers.reference.rotary_embedding import check_rotary_args

#: the sign of the sine term for each half of a rotated pair: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
_SIGNS: dict[torch.dtype, torch.Tensor] = {}


def rotary_embedding(positions, q, k, cos_sin_cache, is_neox, q_out=None, k_out=None):
    """q and k turned in one pass over their heads side by side, in four elementwise torch calls.

    Each pair (x1, x2) becomes ``x * cos + swap(x) * (-sin, sin)``; neox pairs are the two halves of
    the rotated dims, gptj pairs adjacent dims. When k's heads follow q's in one buffer (views of a
    fused qkv projection) both are read through one view, without a copy.
    """
    rot = check_rotary_args("rotary_embedding", positions, q, k, cos_sin_cache, q_out, k_out)
    if rot == 0:  # nothing rotates
        return write(q_out, q), write(k_out, k)
    acc = acc_dtype(q)
    tokens, hq, dim = q.shape
    heads, half = hq + k.shape[1], rot // 2  # heads spelled out: a view of zero tokens cannot infer them
    cache = cos_sin_cache.index_select(0, positions)
    cache = cache if cache.dtype == acc else cache.to(acc)
    qk = _side_by_side(q, k)  # [T, Hq + Hk, D]
    qk = qk if qk.dtype == acc else qk.to(acc)
    x = qk if rot == dim else qk[..., :rot]
    if is_neox:  # pairs (i, i + R/2): [T, H, 2, R/2], the pair along dim 2
        pairs, pair_dim = x.view(tokens, heads, 2, half), 2
        cos, sin = cache.view(tokens, 1, 2, 1, half).unbind(2)
    else:  # pairs (2i, 2i + 1): [T, H, R/2, 2], the pair along dim 3
        pairs, pair_dim = x.view(tokens, heads, half, 2), 3
        cos, sin = cache.view(tokens, 1, 2, half, 1).unbind(2)
    turned = torch.addcmul(pairs * cos, pairs.flip(pair_dim), sin * _signs(acc, pair_dim))
    turned = turned.view(tokens, heads, rot)
    if rot < dim:
        turned = torch.cat([turned, qk[..., rot:]], -1)
    q_new, k_new = turned.narrow(1, 0, hq), turned.narrow(1, hq, k.shape[1])
    q_new = q_new if q_new.dtype == q.dtype else q_new.to(q.dtype)  # each back in its own dtype
    k_new = k_new if k_new.dtype == k.dtype else k_new.to(k.dtype)
    return write(q_out, q_new), write(k_out, k_new)


def _signs(dtype: torch.dtype, pair_dim: int) -> torch.Tensor:
    """(-1, +1) along the pair dimension (2 of 4 dims, or 3 of 4), made once per dtype."""
    key = (dtype, pair_dim)
    if key not in _SIGNS:
        _SIGNS[key] = torch.tensor([-1.0, 1.0], dtype=dtype).view(
            (1, 1, 2, 1) if pair_dim == 2 else (1, 1, 1, 2)
        )
    return _SIGNS[key]


def _side_by_side(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``cat([q, k], dim=1)``, as a view when k's heads directly follow q's in the same storage."""
    tokens, hq, dim = q.shape
    stride = q.stride()
    if (
        q.dtype == k.dtype
        and stride == k.stride()
        and stride[1:] == (dim, 1)
        and k.data_ptr() == q.data_ptr() + hq * dim * q.element_size()
        and q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()
    ):
        return q.as_strided((tokens, hq + k.shape[1], dim), stride)
    return torch.cat([q, k], dim=1)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, kv_layout=DEFAULT_KV_LAYOUT):
    """Token-major caches: one index_copy_ per cache; head-major: one indexed store per cache."""
    check_kv_write_args("kv_cache_write", key, value, key_cache, value_cache, slot_mapping, kv_layout)
    heads, dim = key.shape[1:]
    slots = slot_mapping if slot_mapping.dtype == torch.int64 else slot_mapping.long()
    if slots.numel() and int(slots.min()) < 0:
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
