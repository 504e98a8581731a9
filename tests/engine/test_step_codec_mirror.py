"""The tensor-parallel step messages are deltas: a hypothesis state machine drives the real Scheduler and
KV-cache manager (add / step / abort; preemptions and finishes come from the pool running out and from
max_tokens, with the engine's async pending tokens or without), sends every step through the real
encoder, msgpack bytes and the worker's decoder, and checks after each step that the worker's mirror holds
exactly the driver's requests and state and rebuilds the same batch (the model runner's host inputs). A
planted encoder fault is caught; a delta for a request the worker does not mirror is an error naming it;
a long decode step's message does not grow with the context."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from tessera.engine import step_codec
from tessera.engine.inputs import build_host_batch
from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.request import Request, Status
from tessera.engine.scheduler import ScheduledRequest, Scheduler, SchedulerOutput
from tessera.errors import StepMessageError
from tessera.sampling_params import SamplingParams

BLOCK, NUM_BLOCKS, MAX_SEQS, MAX_TOKENS_PER_STEP = 4, 12, 4, 12
STEMS = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 9, 9, 9, 9], [7] * 12]


def state(req: Request) -> tuple:
    return (req.request_id, req.prompt_token_ids, sorted(req.eos_token_ids), req.params, req.output_token_ids,
            req.num_pending, req.num_computed, req.block_ids, req.state_slot, req.status, req.num_preemptions)  # fmt: skip


def host_inputs(out) -> tuple:
    batch = build_host_batch(out, BLOCK, {s.request.request_id: 0 for s in out.scheduled})
    return (batch.input_ids, batch.positions, batch.slot_mapping, batch.block_tables, batch.state_indices,
            batch.seq_lens, batch.sample_token_index, [s.request.request_id for s in batch.sample_requests])  # fmt: skip


class MirrorMachine(RuleBasedStateMachine):
    prefix_caching, num_state_slots, async_scheduling = False, MAX_SEQS - 1, False

    def __init__(self) -> None:
        super().__init__()
        self.kv = KVCacheManager(NUM_BLOCKS, BLOCK, self.prefix_caching, num_state_slots=self.num_state_slots)
        self.scheduler = Scheduler(self.kv, MAX_SEQS, MAX_TOKENS_PER_STEP)
        self.encoder, self.decoder = step_codec.StepEncoder(), step_codec.StepDecoder()
        self.requests: dict[str, Request] = {}
        self.seen: set[str] = set()
        self.in_flight: list = []  # the rows of the step whose tokens are still on the device

    @rule(stem=st.sampled_from(STEMS), extra=st.lists(st.integers(0, 3), max_size=6),
          max_tokens=st.integers(1, 16), eos=st.sampled_from([(), (2,), (3, 11)]), seed=st.none() | st.integers(0, 9))  # fmt: skip
    def add(self, stem, extra, max_tokens, eos, seed):
        params = SamplingParams(max_tokens=max_tokens, temperature=0.7, seed=seed)
        request = Request(f"r{len(self.requests)}", stem + extra, params, eos_token_ids=eos)
        if -(-(request.num_tokens + max_tokens) // BLOCK) <= NUM_BLOCKS:  # the engine refuses the others
            self.scheduler.add(request)
            self.requests[request.request_id] = request

    def _collect(self, rows) -> None:
        """The engine's _process: each sampled token lands (or is discarded after a preemption)."""
        for s in rows:
            req = s.request
            if req.discard_pending > 0:
                req.discard_pending -= 1
                continue
            if req.finished:
                continue
            req.num_pending -= 1
            req.output_token_ids.append(len(req.output_token_ids) % 5)
            if len(req.output_token_ids) >= req.params.max_tokens:
                self.scheduler.finish(req)

    @rule(n=st.integers(1, 8))
    def steps(self, n):
        for _ in range(n):
            self._step()

    def _step(self) -> None:
        out = self.scheduler.schedule()
        if out.empty:
            return
        message = self.encoder.message(out, use_prev=self.async_scheduling)
        rebuilt = self.decoder.apply(step_codec.decode(step_codec.encode(message)))
        self.seen |= {s.request.request_id for s in out.scheduled}
        self.mirror_equals_driver(out, rebuilt)
        rows = [s for s in out.scheduled if s.samples]
        for s in rows:
            s.request.num_pending += 1
        if self.async_scheduling:
            rows, self.in_flight = self.in_flight, rows
        self._collect(rows)

    @precondition(lambda self: self.scheduler.has_work())
    @rule(data=st.data())
    def abort(self, data):
        live = list(self.scheduler.running) + list(self.scheduler.waiting)
        self.scheduler.abort(data.draw(st.sampled_from(live)))

    def mirror_equals_driver(self, out, rebuilt) -> None:
        scheduled = {s.request.request_id for s in out.scheduled}
        expected = {rid for rid in self.seen if not self.requests[rid].finished or rid in scheduled}
        assert set(self.decoder.requests) == expected
        for rid, mirrored in self.decoder.requests.items():
            assert state(mirrored) == state(self.requests[rid]), rid
        assert [(s.request.request_id, s.start, s.num_tokens) for s in rebuilt.scheduled] == [
            (s.request.request_id, s.start, s.num_tokens) for s in out.scheduled
        ]
        assert [(s.samples, s.is_decode) for s in rebuilt.scheduled] == [
            (s.samples, s.is_decode) for s in out.scheduled
        ]
        assert host_inputs(rebuilt) == host_inputs(out)


class PrefixMirrorMachine(MirrorMachine):
    prefix_caching, num_state_slots = True, 0


class AsyncMirrorMachine(MirrorMachine):
    async_scheduling = True


class AsyncPrefixMirrorMachine(MirrorMachine):
    prefix_caching, num_state_slots, async_scheduling = True, 0, True


SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestMirrorWithStateSlots = MirrorMachine.TestCase
TestMirrorWithPrefixCache = PrefixMirrorMachine.TestCase
TestMirrorAsync = AsyncMirrorMachine.TestCase
TestMirrorAsyncWithPrefixCache = AsyncPrefixMirrorMachine.TestCase
for _case in (
    TestMirrorWithStateSlots,
    TestMirrorWithPrefixCache,
    TestMirrorAsync,
    TestMirrorAsyncWithPrefixCache,
):
    _case.settings = SETTINGS


def _diff_without_blocks_freed(rid, was, changes, scheduled):
    kept = was.blocks, was.num_blocks
    alive = _real_diff(rid, was, changes, scheduled)
    if was.request.block_ids == [] and "blocks" in changes and rid in changes["blocks"]:
        del changes["blocks"][rid]  # a preemption's freed blocks are never told
        was.blocks, was.num_blocks = kept
    return alive


_real_diff = step_codec.StepEncoder._diff


def test_an_encoder_that_forgets_freed_blocks_fails_the_machine(monkeypatch):
    monkeypatch.setattr(step_codec.StepEncoder, "_diff", staticmethod(_diff_without_blocks_freed))
    budget = settings(max_examples=150, stateful_step_count=40, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    with pytest.raises(AssertionError):
        run_state_machine_as_test(MirrorMachine, settings=budget)


def test_a_delta_for_a_request_the_worker_does_not_mirror_names_it():
    decoder = step_codec.StepDecoder()
    known = Request("known", [1, 2, 3], SamplingParams(max_tokens=4))
    message = step_codec.StepEncoder().message(
        SchedulerOutput([ScheduledRequest(known, 0, 3)]), use_prev=False
    )
    decoder.apply(message)
    stray = {"op": "step", "step": 2, "use_prev": False, "new": [], "sched": [["known", 3, 1]],
             "out": {"cmpl-lost-7": [5]}}  # fmt: skip
    with pytest.raises(StepMessageError, match="step 2: .*'out' for request 'cmpl-lost-7'.*does not mirror"):
        decoder.apply(stray)
    with pytest.raises(StepMessageError, match="'sched' for request 'gone'"):
        decoder.apply({"op": "step", "step": 3, "use_prev": False, "new": [], "sched": [["gone", 0, 1]]})
    with pytest.raises(StepMessageError, match="request 'known' as new, but this worker already mirrors it"):
        decoder.apply({**message, "step": 4})


def test_a_decode_step_message_does_not_grow_with_the_context():
    sizes = {}
    for context in (64, 2048):
        kv = KVCacheManager(8 * (context // 16 + 4), 16, enable_prefix_caching=False, num_state_slots=0)
        scheduler = Scheduler(kv, max_num_seqs=8, max_num_batched_tokens=8 * context)
        for i in range(8):
            scheduler.add(Request(f"r{i}", [i] * context, SamplingParams(max_tokens=40)))
        encoder, step = step_codec.StepEncoder(), []
        for _ in range(20):
            out = scheduler.schedule()
            step.append(len(step_codec.encode(encoder.message(out, use_prev=False))))
            for s in out.scheduled:
                s.request.output_token_ids.append(1)
        assert step[0] > 8 * context  # the prompts go once
        sizes[context] = max(step[1:])
    assert sizes[2048] <= sizes[64] + 8 * 8, sizes  # a few more bytes per integer at most


def test_a_finished_request_id_taken_by_a_new_request_is_a_new_request_on_the_worker():
    encoder, decoder = step_codec.StepEncoder(), step_codec.StepDecoder()
    old = Request("same", [1, 2, 3], SamplingParams(max_tokens=4))
    old.block_ids = [7]
    decoder.apply(encoder.message(SchedulerOutput([ScheduledRequest(old, 0, 3)]), use_prev=False))
    old.status = Status.FINISHED
    fresh = Request("same", [9, 9], SamplingParams(max_tokens=2, temperature=0.5))
    fresh.block_ids = [3]
    message = encoder.message(SchedulerOutput([ScheduledRequest(fresh, 0, 2)]), use_prev=False)
    rebuilt = decoder.apply(step_codec.decode(step_codec.encode(message)))
    assert message["drop"] == ["same"] and [n[0] for n in message["new"]] == ["same"]
    assert state(decoder.requests["same"]) == state(fresh)
    assert rebuilt.scheduled[0].request is decoder.requests["same"]
