"""Hypothesis state machines over the KV-cache manager alone (allocate / append / prefix-hit / preempt /
free) and over the scheduler with the KV manager and Mamba state slots (add / step / failed step /
abort / drain): no block or state slot leaks, is freed twice, or is shared without its count saying so.
A meta-test plants each known fault (a leaked block, a leaked state slot, a finish that frees nothing)
and shows the machines catch it within their budget, failing rather than hanging."""

from __future__ import annotations

from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.request import Request, Status
from tessera.engine.scheduler import Scheduler
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


# -- the scheduler with the KV manager and Mamba state slots ------------------------------------------

MAX_SEQS, MAX_TOKENS_PER_STEP, NUM_BLOCKS = 4, 12, 16
DRAIN_STEPS = 400  # far more than a drain of this pool needs: a stuck scheduler fails instead of hanging


class SchedulerMachine(RuleBasedStateMachine):
    """Requests are added, stepped (tokens sampled, stops at max_tokens), aborted and failed mid-step
    through the real Scheduler and KVCacheManager; every block and state slot must be held by exactly
    the running requests, and draining must free everything within a bounded number of steps."""

    prefix_caching = False
    num_state_slots = MAX_SEQS - 1  # fewer than max_num_seqs: admission also waits for a slot

    def __init__(self) -> None:
        super().__init__()
        self.kv = KVCacheManager(NUM_BLOCKS, BLOCK, self.prefix_caching, num_state_slots=self.num_state_slots)
        self.scheduler = Scheduler(self.kv, MAX_SEQS, MAX_TOKENS_PER_STEP)
        self.requests: list[Request] = []

    @rule(
        stem=st.sampled_from(STEMS),
        extra=st.lists(st.integers(0, 3), max_size=6),
        max_tokens=st.integers(1, 10),
    )
    def add(self, stem, extra, max_tokens):
        request = Request(f"r{len(self.requests)}", stem + extra, SamplingParams(max_tokens=max_tokens))
        if -(-(request.num_tokens + max_tokens) // BLOCK) <= NUM_BLOCKS:  # the engine refuses the others
            self.scheduler.add(request)
            self.requests.append(request)

    def _step(self) -> None:
        for s in self.scheduler.schedule().scheduled:
            if s.samples:
                s.request.output_token_ids.append(7)
                if len(s.request.output_token_ids) >= s.request.params.max_tokens:
                    self.scheduler.finish(s.request)

    @rule()
    def step(self):
        self._step()

    @rule()
    def failed_step(self):
        out = self.scheduler.schedule()
        ended = self.scheduler.fail(out.scheduled)
        assert {r.request_id for r in ended} == {s.request.request_id for s in out.scheduled}

    @precondition(lambda self: self.scheduler.has_work())
    @rule(data=st.data())
    def abort(self, data):
        live = list(self.scheduler.running) + list(self.scheduler.waiting)
        self.scheduler.abort(data.draw(st.sampled_from(live)))

    @rule()
    def drain(self):
        for _ in range(DRAIN_STEPS):
            if not self.scheduler.has_work():
                break
            self._step()
            self.blocks_and_slots_held_by_exactly_the_running()
        assert not self.scheduler.has_work(), f"the scheduler did not drain within {DRAIN_STEPS} steps"
        assert self.kv.pool.num_free == NUM_BLOCKS, "blocks leaked"
        assert len(self.kv.free_slots) == self.num_state_slots, "state slots leaked"

    @invariant()
    def blocks_and_slots_held_by_exactly_the_running(self):
        running, pool = self.scheduler.running, self.kv.pool
        assert len(running) <= MAX_SEQS
        held = Counter(b for r in running for b in r.block_ids)
        for block in range(NUM_BLOCKS):
            assert pool.ref_count[block] == held.get(block, 0), f"block {block}"
            assert (block in pool.free) == (held.get(block, 0) == 0)
        for r in self.requests:
            if r not in running:
                assert not r.block_ids and r.state_slot is None, (
                    f"{r} holds blocks or a slot while not running"
                )
            else:
                assert len(r.block_ids) * BLOCK >= r.num_computed
        if self.num_state_slots:
            slots = [r.state_slot for r in running]
            assert None not in slots and len(set(slots)) == len(slots), "state slots missing or shared"
            assert sorted(slots + self.kv.free_slots) == list(range(self.num_state_slots)), (
                "state slots leaked"
            )


class PrefixCachedSchedulerMachine(SchedulerMachine):
    prefix_caching = True
    num_state_slots = 0


SETTINGS = settings(max_examples=120, stateful_step_count=30, deadline=None)
TestSchedulerWithStateSlots = SchedulerMachine.TestCase
TestSchedulerWithStateSlots.settings = SETTINGS
TestSchedulerWithPrefixCache = PrefixCachedSchedulerMachine.TestCase
TestSchedulerWithPrefixCache.settings = SETTINGS


_real_free = KVCacheManager.free


def _free_keeps_the_last_block(self, request):
    request.block_ids = request.block_ids[:-1]  # the last block is never released
    _real_free(self, request)


def _free_keeps_the_state_slot(self, request):
    self.pool.release(request.block_ids)
    request.block_ids, request.num_registered, request.state_slot = [], 0, None


def _finish_without_free(self, request):
    if request in self.running:
        self.running.remove(request)
    request.status = Status.FINISHED


PLANTED = {"leaked_block": (KVCacheManager, "free", _free_keeps_the_last_block),
           "leaked_state_slot": (KVCacheManager, "free", _free_keeps_the_state_slot),
           "finish_without_free": (Scheduler, "finish", _finish_without_free)}  # fmt: skip


MACHINES = {"slots": SchedulerMachine, "prefix": PrefixCachedSchedulerMachine}
# a state-slot leak can only show in a machine that has state slots
FAULT_CASES = [(f, m) for f in sorted(PLANTED) for m in MACHINES
               if f != "leaked_state_slot" or MACHINES[m].num_state_slots]  # fmt: skip


@pytest.mark.parametrize(("fault", "machine_name"), FAULT_CASES)
def test_each_planted_fault_fails_the_machine_within_its_budget(fault, machine_name, monkeypatch):
    machine = MACHINES[machine_name]
    owner, name, planted = PLANTED[fault]
    monkeypatch.setattr(owner, name, planted)
    budget = settings(max_examples=120, stateful_step_count=30, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    with pytest.raises(
        AssertionError, match="leaked|holds blocks|block \\d+|did not drain|state slots"
    ) as info:
        run_state_machine_as_test(machine, settings=budget)
    print(fault, machine.__name__, str(info.value).splitlines()[0])
