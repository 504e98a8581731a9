"""The KV-cache manager: which blocks and state slot each request holds.

Attention layers share one block table per request (every layer's cache has the
same ``[num_blocks, block_size, Hk, D]`` geometry). Mamba layers need one state
slot per running request. Prefix caching hashes each full block of tokens,
chained (``h_i = H(h_{i-1} || tokens_i)``), so a request whose prompt starts
with blocks already in the pool reuses them. Hybrid models (any Mamba layer)
run with prefix caching off: a cached attention prefix is useless without the
Mamba state at that point, which is not kept.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable

from tessera.engine.block_pool import BlockPool
from tessera.engine.request import Request


def hasher(name: str) -> Callable[[bytes], bytes]:
    if name == "sha256":
        return lambda data: hashlib.sha256(data).digest()
    if name == "xxhash":
        import xxhash

        return lambda data: xxhash.xxh3_128_digest(data)
    raise ValueError(f"unknown prefix hash {name!r}; use sha256 or xxhash")


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool, prefix_hash: str = "sha256",
                 num_state_slots: int = 0) -> None:  # fmt: skip
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._hash = hasher(prefix_hash)
        self.free_slots = list(range(num_state_slots - 1, -1, -1))
        self.uses_state = num_state_slots > 0
        self.prefix_queries = 0  # blocks looked up
        self.prefix_hits = 0  # blocks found

    # -- hashing ----------------------------------------------------------------
    def block_hashes(self, tokens: list[int], have: list[bytes]) -> list[bytes]:
        """Chained hashes of every full block of ``tokens`` (extending ``have``)."""
        out = list(have)
        bs = self.block_size
        for i in range(len(out), len(tokens) // bs):
            prev = out[-1] if out else b""
            out.append(self._hash(prev + array("q", tokens[i * bs : (i + 1) * bs]).tobytes()))
        return out

    # -- prefix cache -------------------------------------------------------------
    def cached_prefix(self, request: Request) -> list[int]:
        """Blocks holding the longest cached prefix of the request's known tokens (at least one token left to compute)."""
        if not self.enable_prefix_caching:
            return []
        tokens = request.all_token_ids
        request.block_hashes = self.block_hashes(tokens, request.block_hashes)
        usable = (len(tokens) - 1) // self.block_size
        hits = []
        for h in request.block_hashes[:usable]:
            block = self.pool.lookup(h)
            if block is None:
                break
            hits.append(block)
        return hits

    # -- allocation ---------------------------------------------------------------
    def blocks_needed(self, request: Request, num_new_tokens: int, prefix_blocks: int = 0) -> int:
        held = max(len(request.block_ids), prefix_blocks)
        computed = max(request.num_computed, prefix_blocks * self.block_size)
        total = -(-(computed + num_new_tokens) // self.block_size)
        return max(0, total - held)

    def fits(self, request: Request, num_new_tokens: int) -> bool:
        """Whether the request's blocks (and state slot) already hold ``num_new_tokens`` more tokens: most decode
        steps, which then need no allocation."""
        return request.num_computed + num_new_tokens <= len(request.block_ids) * self.block_size and (
            request.state_slot is not None or not self.uses_state
        )

    def can_allocate(self, request: Request, num_new_tokens: int, prefix: list[int] | None = None) -> bool:
        if not prefix and self.fits(request, num_new_tokens):
            return True
        if self.uses_state and request.state_slot is None and not self.free_slots:
            return False
        prefix = prefix or []
        free_hits = sum(1 for b in prefix if self.pool.ref_count[b] == 0)
        return self.blocks_needed(request, num_new_tokens, len(prefix)) <= self.pool.num_free - free_hits

    def allocate(self, request: Request, num_new_tokens: int, prefix: list[int] | None = None) -> None:
        """Give the request the prefix blocks (if any) and the blocks for ``num_new_tokens`` more tokens."""
        if not prefix and self.fits(request, num_new_tokens):
            return
        first_admission = request.num_computed == 0 and not request.block_ids
        if prefix:
            self.prefix_queries += len(request.block_hashes[: (request.num_tokens - 1) // self.block_size])
            self.prefix_hits += len(prefix)
            for block in prefix:
                self.pool.touch(block)
            request.block_ids = list(prefix)
            request.num_computed = len(prefix) * self.block_size
            request.num_cached_prefix = request.num_computed
            request.num_registered = len(prefix)
        elif self.enable_prefix_caching and first_admission:
            self.prefix_queries += len(request.block_hashes[: (request.num_tokens - 1) // self.block_size])
        request.block_ids += self.pool.allocate(self.blocks_needed(request, num_new_tokens))
        if self.uses_state and request.state_slot is None:
            request.state_slot = self.free_slots.pop()

    def commit(self, request: Request, computed_after: int) -> None:
        """Register the full blocks whose tokens are known and will be in the cache after this step."""
        if not self.enable_prefix_caching or computed_after < (request.num_registered + 1) * self.block_size:
            return  # no block fills up by this step
        full = min(computed_after, request.num_tokens - request.num_pending) // self.block_size
        if full <= request.num_registered:
            return
        tokens = request.all_token_ids
        request.block_hashes = self.block_hashes(
            tokens[: full * self.block_size], request.block_hashes[:full]
        )
        for i in range(request.num_registered, full):
            self.pool.register(request.block_ids[i], request.block_hashes[i])
        request.num_registered = full

    def forget_from(self, request: Request, first_block: int) -> None:
        """Take the request's blocks from ``first_block`` on out of the prefix cache.

        Used when a step fails: blocks registered for that step never received their KV.
        """
        for block in request.block_ids[first_block:]:
            self.pool.uncache(block)
        request.num_registered = min(request.num_registered, first_block)

    def free(self, request: Request) -> None:
        """Return the request's blocks and state slot."""
        self.pool.release(request.block_ids)
        request.block_ids = []
        request.num_registered = 0
        if request.state_slot is not None:
            self.free_slots.append(request.state_slot)
            request.state_slot = None

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0
