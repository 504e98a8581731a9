"""paged_attention on the CPU: each group of sequences gathered once, then one torch SDPA call (GQA-aware).

Same contract as the reference (see tessera.pluggable_layers.reference.paged_attention). A step's
one-token queries (decodes) run as one batched call; its longer queries (prefill chunks) run as a
second batched call when padding them to the longest costs at most twice the work and its mask stays
under 16M entries, else one call per sequence. Keys are gathered through a slot map in which every position a query may not see
points at a position it may see (its sequence's last token), and the mask removes those positions:
stale cache contents, NaN included, are never read, so no copy has to be zeroed.

Every layer of a step gets the same offsets, lengths and block tables, so the plan built from them
(slot maps, masks, query rows) is kept and reused while they are equal in value (compared, not
trusted by identity).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from tessera.pluggable_layers.checks import check_out
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, to_token_major
from tessera.pluggable_layers.reference.paged_attention import check_paged_attention_args

#: a padded batch of prefill chunks runs as one call while it costs at most this many times the work
PAD_WASTE = 2.0
#: and while its mask (batch x queries x keys, turned into floats inside SDPA) has at most this many entries
MAX_MASK = 1 << 24


def paged_attention(
    q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, scale, sliding_window=None, out=None,
    kv_layout=DEFAULT_KV_LAYOUT,
):  # fmt: skip
    """Either KV layout: the caches are viewed token-major (no copy) and gathered by slot."""
    op = "paged_attention"
    check_paged_attention_args(
        op, q, key_cache, value_cache, query_start_loc, seq_lens, block_tables, kv_layout
    )
    check_out(op, out, q.shape, q.dtype)
    if q.shape[0] == 0:
        return torch.empty_like(q) if out is None else out
    caches = to_token_major(key_cache, kv_layout), to_token_major(value_cache, kv_layout)
    window = sliding_window if sliding_window is not None and sliding_window > 0 else None
    plan = _plans.get(query_start_loc, seq_lens, block_tables, caches[1].shape[1], window)
    if out is None and len(plan) == 1 and plan[0].rows is None:  # all decodes: SDPA's answer is the output
        return plan[0].attend(q, caches, scale).view(q.shape)
    out = torch.empty_like(q) if out is None else out
    for group in plan:
        group.run(q, out, caches, scale)
    return out


@dataclass
class Group:
    """Sequences attended in one SDPA call, queries and keys padded to the group's longest.

    ``rows`` [B, Q]: the q rows of each sequence (a padded row repeats the last real one), None when
    the group is the whole batch of one-token queries; ``real`` [B, Q]: the rows that are not padding;
    ``slots`` [B, L]: the flat cache slot (block * block_size + offset) each key position is read from;
    ``mask`` [B, 1, Q, L] or None (then ``causal`` says whether SDPA applies its own causal mask: fresh
    prompts, or none at all: one-token queries that see every key of equal-length contexts)."""

    rows: torch.Tensor | None
    real: torch.Tensor | None
    slots: torch.Tensor
    block_size: int
    mask: torch.Tensor | None
    causal: bool

    def __post_init__(self) -> None:
        self._flat = self.slots.reshape(-1)
        self._masks: dict[torch.dtype, torch.Tensor] = {}  # the mask as SDPA adds it, per query dtype

    def gather(self, cache: torch.Tensor) -> torch.Tensor:
        """cache (token-major [N, S, H, D], maybe a head-major cache's view) at the group's keys -> [B, H, L, D]."""
        if not cache.is_contiguous():
            return cache[self.slots // self.block_size, self.slots % self.block_size].transpose(1, 2)
        heads, dim = cache.shape[2:]
        # index_select: several times faster than advanced indexing on the CPU
        return (
            cache.view(-1, heads, dim)
            .index_select(0, self._flat)
            .view(*self.slots.shape, heads, dim)
            .transpose(1, 2)
        )

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The boolean mask as 0 / -inf in ``dtype``, made once (SDPA would convert it in every layer)."""
        if self.mask is None:
            return None
        mask = self._masks.get(dtype)
        if mask is None:
            mask = self._masks[dtype] = torch.full(self.mask.shape, float("-inf"), dtype=dtype).masked_fill_(
                self.mask, 0.0
            )
        return mask

    def attend(self, q, caches, scale) -> torch.Tensor:
        """The group's attention: [B, Hq, 1, D] for a whole batch of one-token queries, else [B, Q, Hq, D].

        One-token queries need no GQA expansion: the G query heads of a KV head attend as G query rows of
        one head (no causal mask among them; the decode mask is per sequence), which SDPA runs faster."""
        k, v = self.gather(caches[0]), self.gather(caches[1])
        if k.dtype != q.dtype:  # SDPA wants one dtype; the contract allows caches in another
            k, v = k.to(q.dtype), v.to(q.dtype)
        mask = self.additive_mask(q.dtype)
        if (
            self.rows is None
        ):  # one query token each: a KV head's query heads are its query rows [B, Hk, G, D]
            y = torch.nn.functional.scaled_dot_product_attention(
                q.view(q.shape[0], k.shape[1], -1, q.shape[2]), k, v, attn_mask=mask, scale=scale
            )
            return y.view(q.shape[0], q.shape[1], 1, q.shape[2])
        y = torch.nn.functional.scaled_dot_product_attention(
            q[self.rows].transpose(1, 2), k, v, attn_mask=mask, is_causal=self.causal, scale=scale,
            enable_gqa=q.shape[1] != k.shape[1],
        )  # fmt: skip
        return y.transpose(1, 2)

    def run(self, q, out, caches, scale) -> None:
        y = self.attend(q, caches, scale)
        if self.rows is None:
            out.copy_(y.view(out.shape))
        else:
            out[self.rows[self.real]] = y[self.real]


def plan_groups(starts: list[int], lengths: list[int], tables: torch.Tensor, block_size: int,
                window: int | None) -> list[Group]:  # fmt: skip
    q_lens = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
    decodes = [b for b, n in enumerate(q_lens) if n == 1]
    chunks = [b for b, n in enumerate(q_lens) if n > 1]
    parts = [decodes] if decodes else []
    if chunks:
        longest_q = max(q_lens[b] for b in chunks)
        longest_kv = max(lengths[b] for b in chunks)
        work = sum(q_lens[b] * lengths[b] for b in chunks)
        padded = len(chunks) * longest_q * longest_kv
        together = padded <= PAD_WASTE * work and padded <= MAX_MASK
        parts += [chunks] if together else [[b] for b in chunks]
    every = len(decodes) == len(q_lens)
    if every and window is None:
        return [_decode_group(lengths, tables, block_size)]
    return [_group(p, starts, q_lens, lengths, tables, block_size, window, whole=every and p is decodes)
            for p in parts]  # fmt: skip


def _decode_group(lengths: list[int], tables: torch.Tensor, block_size: int) -> Group:
    """The common decode step, in as few torch calls as it takes: one query token per sequence, no window.

    Key position p of a sequence reads its slot, or past the sequence's length its last token (masked)."""
    longest = max(lengths)
    last = torch.tensor(lengths).sub_(1).unsqueeze_(1)  # [B, 1]: each sequence's last position
    pos = torch.arange(longest)
    read = torch.minimum(pos, last)  # [B, L]
    nblocks = (longest + block_size - 1) // block_size
    if block_size & (block_size - 1) == 0:  # a power of two: shift and mask instead of integer division
        block, offset = read >> (block_size.bit_length() - 1), read & (block_size - 1)
    else:
        block, offset = read // block_size, read % block_size
    slots = tables.narrow(1, 0, nblocks).long().gather(1, block).mul_(block_size).add_(offset)
    if min(lengths) == longest:
        return Group(None, None, slots, block_size, None, causal=False)  # every key seen by every query
    return Group(None, None, slots, block_size, (pos <= last).view(len(lengths), 1, 1, longest), causal=False)


def _group(seqs, starts, q_lens, lengths, tables, block_size, window, whole: bool) -> Group:
    q_lens_here, lengths_here = [q_lens[b] for b in seqs], [lengths[b] for b in seqs]
    longest_q, longest_kv = max(q_lens_here), max(lengths_here)
    length = torch.tensor(lengths_here)[:, None]
    pos = torch.arange(longest_kv)
    nblocks = (longest_kv + block_size - 1) // block_size
    rows_tables = (tables if whole else tables[torch.tensor(seqs)])[:, :nblocks].long()
    rows = real = None
    if not whole:
        q_len = torch.tensor(q_lens_here)[:, None]
        row = torch.minimum(torch.arange(longest_q)[None, :], q_len - 1)  # [B, Q], padding repeats the last
        rows = torch.tensor([starts[b] for b in seqs])[:, None] + row
        real = torch.arange(longest_q)[None, :] < q_len
    if window is None:
        # each sequence's last query row sees every position before its length and no other: a position past
        # it reads the sequence's last token instead (masked, so unused), never stale cache contents
        read = torch.minimum(pos[None, :], length - 1)  # [B, L]
        slots = rows_tables.gather(1, read // block_size) * block_size + read % block_size
        if (
            all(n == m == longest_kv for n, m in zip(q_lens_here, lengths_here, strict=True))
            and longest_kv > 1
        ):
            return Group(rows, real, slots, block_size, None, causal=True)  # fresh prompts: plain causal
        if longest_q == 1 and all(m == longest_kv for m in lengths_here):
            return Group(rows, real, slots, block_size, None, causal=False)  # one query row seeing every key
        q_pos = length - q_len + row if rows is not None else length - 1  # [B, Q]: each query row's position
        visible = pos[None, None, :] <= q_pos[:, :, None]  # [B, Q, L]
        return Group(rows, real, slots, block_size, visible[:, None], causal=False)
    q_pos = length - q_len + row if rows is not None else length - 1
    visible = (pos[None, None, :] <= q_pos[:, :, None]) & ((q_pos[:, :, None] - pos[None, None, :]) < window)
    # a position no query row sees reads the sequence's last token instead (masked, so unused)
    read = torch.where(visible.any(dim=1), pos[None, :], length - 1)
    slots = rows_tables.gather(1, read // block_size) * block_size + read % block_size
    return Group(rows, real, slots, block_size, visible[:, None], causal=False)


class _PlanCache:
    """The last plan of each thread, reused while the step's offsets, lengths and tables are equal."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(
        self, query_start_loc, seq_lens, block_tables, block_size: int, window: int | None
    ) -> list[Group]:
        starts, lengths = query_start_loc.tolist(), seq_lens.tolist()
        key = (starts, lengths, block_size, window)
        last = getattr(self._local, "last", None)
        if last is not None and last[0] == key and _same(last[1], block_tables):
            return last[2]
        plan = plan_groups(starts, lengths, block_tables, block_size, window)
        self._local.last = (key, block_tables.clone(), plan)
        return plan


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


_plans = _PlanCache()
