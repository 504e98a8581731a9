"""The block pool: ref-counted KV blocks, a free list in LRU order, and the prefix-cache index.

A block is free when its reference count is 0; free blocks that hold a full,
hashed block of tokens stay in the prefix cache until allocation evicts them,
oldest first. A cache hit takes a free block back (or shares a used one) by
raising its count.
"""

from __future__ import annotations

from collections import OrderedDict


class BlockPool:
    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"a block pool needs at least one block, got {num_blocks}")
        self.num_blocks = num_blocks
        self.ref_count = [0] * num_blocks
        self.block_hash: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}
        self.free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))

    @property
    def num_free(self) -> int:
        return len(self.free)

    def allocate(self, n: int) -> list[int]:
        """Take ``n`` free blocks (evicting their cached content, least recently freed first)."""
        if n > len(self.free):
            raise RuntimeError(f"asked for {n} blocks with {len(self.free)} free; check can_allocate first")
        out = []
        for _ in range(n):
            block, _ = self.free.popitem(last=False)
            self._evict(block)
            self.ref_count[block] = 1
            out.append(block)
        return out

    def _evict(self, block: int) -> None:
        h = self.block_hash[block]
        if h is not None:
            if self.cached.get(h) == block:
                del self.cached[h]
            self.block_hash[block] = None

    def uncache(self, block: int) -> None:
        """Drop the block from the prefix cache (its content is not what its hash says)."""
        self._evict(block)

    def lookup(self, block_hash: bytes) -> int | None:
        return self.cached.get(block_hash)

    def touch(self, block: int) -> None:
        """Take a reference to a cached block (removing it from the free list if it was free)."""
        if self.ref_count[block] == 0:
            del self.free[block]
        self.ref_count[block] += 1

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block; tail blocks go to the free list first, so they are evicted first."""
        for block in reversed(blocks):
            if self.ref_count[block] <= 0:
                raise RuntimeError(f"block {block} released more often than taken")
            self.ref_count[block] -= 1
            if self.ref_count[block] == 0:
                self.free[block] = None

    def register(self, block: int, block_hash: bytes) -> None:
        """Record that ``block`` holds the tokens hashed to ``block_hash`` (first holder wins)."""
        if self.block_hash[block] is not None:
            return
        self.block_hash[block] = block_hash
        self.cached.setdefault(block_hash, block)
