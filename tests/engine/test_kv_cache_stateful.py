"""A hypothesis state machine drives the KV-cache manager through allocate / append / prefix-hit /
preempt / free sequences and checks that no block leaks, is freed twice, or is shared without
its reference count saying so."""

from __future__ import annotations

from collections import Counter

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.request import Request
from tessera.sampling_params import SamplingParams

BLOCK = 4
# prompts drawn from a few shared stems so that prefix hits happen often
STEMS = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 9, 9, 9, 9], [7] * 12]


class KVCacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kv = KVCacheManager(
            num_blocks=24, block_size=BLOCK, enable_prefix_caching=True, num_state_slots=0
        )
        self.live: list[Request] = []
        self.count = 0

    @rule(
        stem=st.sampled_from(STEMS), extra=st.lists(st.integers(0, 3), max_size=6), chunk=st.integers(1, 12)
    )
    def admit(self, stem, extra, chunk):
        request = Request(f"r{self.count}", stem + extra, SamplingParams(max_tokens=8))
        self.count += 1
        prefix = self.kv.cached_prefix(request)
        n = min(chunk, request.num_tokens - len(prefix) * BLOCK)
        if self.kv.can_allocate(request, n, prefix):
            self.kv.allocate(request, n, prefix)
            request.num_computed += n
            self.kv.commit(request, request.num_computed)
            self.live.append(request)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), n=st.integers(1, 6))
    def append(self, data, n):
        request = data.draw(st.sampled_from(self.live))
        if request.num_computed == request.num_tokens:
            request.output_token_ids += [5] * n  # sampled tokens arrive
        n = min(n, request.num_tokens - request.num_computed)
        if self.kv.can_allocate(request, n):
            self.kv.allocate(request, n)
            request.num_computed += n
            self.kv.commit(request, request.num_computed)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def preempt(self, data):
        request = data.draw(st.sampled_from(self.live))
        self.kv.free(request)
        request.num_computed = 0
        self.live.remove(request)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def finish(self, data):
        request = data.draw(st.sampled_from(self.live))
        self.kv.free(request)
        self.live.remove(request)

    @invariant()
    def reference_counts_match_holders(self):
        held = Counter(b for r in self.live for b in r.block_ids)
        pool = self.kv.pool
        for block in range(pool.num_blocks):
            assert pool.ref_count[block] == held.get(block, 0), f"block {block}"
            assert (block in pool.free) == (held.get(block, 0) == 0)

    @invariant()
    def every_block_accounted_for(self):
        pool = self.kv.pool
        used = {b for r in self.live for b in r.block_ids}
        assert len(pool.free) + len(used) == pool.num_blocks
        for r in self.live:
            assert len(r.block_ids) == len(set(r.block_ids)), "a request holds one block twice"
            assert len(r.block_ids) * BLOCK >= r.num_computed

    @invariant()
    def cache_index_points_at_hashed_blocks(self):
        pool = self.kv.pool
        for h, block in pool.cached.items():
            assert pool.block_hash[block] == h


TestKVCacheMachine = KVCacheMachine.TestCase
TestKVCacheMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
