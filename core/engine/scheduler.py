"""The scheduler: which requests run this step, and how many tokens each computes.

FCFS with a token budget (``max_num_batched_tokens``) and a cap on running
requests (``max_num_seqs``). Running requests go first, decodes before prefill
chunks; then waiting requests are admitted, their prompts chunked to fit the
budget. When blocks run out, the most recently admitted running request is
preempted by recompute: its blocks are freed and it waits at the head of the
queue to prefill its prompt and outputs again. A request that cannot fit even
alone is preempted too, never crashing the engine; one that could never fit is
rejected when it is added.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.request import Request, Status


@dataclass
class ScheduledRequest:
    request: Request
    start: int  # first position computed this step
    num_tokens: int  # tokens computed this step

    @property
    def samples(self) -> bool:
        """Whether this step produces the request's next token (it reaches the end of the known tokens)."""
        return self.start + self.num_tokens == self.request.num_tokens

    @property
    def is_decode(self) -> bool:
        return self.num_tokens == 1 and self.start > 0


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledRequest] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)

    @property
    def empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    def __init__(self, kv: KVCacheManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def abort(self, request: Request) -> None:
        if request in self.running:
            self.running.remove(request)
            self.kv.free(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        request.status = Status.FINISHED

    def finish(self, request: Request) -> None:
        if request in self.running:
            self.running.remove(request)
            self.kv.free(request)
        request.status = Status.FINISHED

    def fail(self, rows: list[ScheduledRequest]) -> list[Request]:
        """End the requests of a step that failed: out of the prefix cache what the step registered
        (its KV was never written), blocks and state slots freed. Returns the requests ended."""
        first: dict[str, ScheduledRequest] = {}
        for s in rows:
            seen = first.get(s.request.request_id)
            if not s.request.finished and (seen is None or s.start < seen.start):
                first[s.request.request_id] = s
        for s in first.values():
            self.kv.forget_from(s.request, s.start // self.kv.block_size)
            self.abort(s.request)
        return [s.request for s in first.values()]

    def _preempt(self, request: Request, out: SchedulerOutput) -> None:
        self.running.remove(request)
        self.kv.free(request)
        request.status = Status.WAITING
        request.num_computed = 0
        request.discard_pending += request.num_pending
        request.num_pending = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)
        out.preempted.append(request)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        scheduled_ids: set[str] = set()
        to_compute = [r.num_to_compute for r in self.running]
        # decodes first, stable (FCFS)
        order = sorted(zip(self.running, to_compute, strict=True), key=lambda pair: pair[1] > 1)
        for request, todo in order:
            if request.status is not Status.RUNNING or budget == 0:  # preempted by an earlier one
                continue
            n = min(todo, budget)
            if n <= 0 or not request.wants_more:
                continue
            while not self.kv.can_allocate(request, n):
                victims = [r for r in self.running if r.request_id not in scheduled_ids]
                victim = victims[-1]
                self._preempt(victim, out)
                if victim is request:
                    break
            else:
                self._take(request, n, out, scheduled_ids)
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not out.preempted:
            request = self.waiting[0]
            fresh = request.num_computed == 0 and not request.block_ids
            # prompt logprobs need every prompt position computed: no prefix-cache hits for them
            prefix = (
                self.kv.cached_prefix(request) if fresh and request.params.prompt_logprobs is None else []
            )
            remaining = request.num_tokens - max(request.num_computed, len(prefix) * self.kv.block_size)
            n = min(remaining, budget)
            if not self.kv.can_allocate(request, n, prefix):
                break
            self.waiting.popleft()
            request.status = Status.RUNNING
            self.running.append(request)
            self._take(request, n, out, scheduled_ids, prefix)
            budget -= n
        return out

    def _take(
        self, request: Request, n: int, out: SchedulerOutput, scheduled_ids: set[str], prefix=None
    ) -> None:
        self.kv.allocate(request, n, prefix)
        out.scheduled.append(ScheduledRequest(request, request.num_computed, n))
        request.num_computed += n
        self.kv.commit(request, request.num_computed)
        scheduled_ids.add(request.request_id)
