"""One request's outputs on their way from the engine core's output reader to the request's handler.

A delta not yet taken when the next one comes is merged with it (vLLM's output collector does the
same): a reader that falls behind, under load, gets fewer and larger deltas and never a backlog, and
the HTTP side's cost per step stays one chunk per request whatever the engine's pace.
"""

from __future__ import annotations

import asyncio
import dataclasses

from tessera.outputs import CompletionOutput, RequestMetrics, RequestOutput
from tessera.serve.wire import RequestDelta


class OutputSlot:
    """The next delta of one request (``put`` merges into one not taken yet) and, once failed, its error."""

    __slots__ = ("pending", "error", "ready", "prompt", "prompt_token_ids", "arrival_time", "num_tokens")

    def __init__(self, prompt: str | None, prompt_token_ids: list[int], arrival_time: float) -> None:
        self.pending: RequestOutput | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.prompt, self.prompt_token_ids, self.arrival_time = prompt, prompt_token_ids, arrival_time
        self.num_tokens = 0  # output tokens so far, all completions

    def output(self, d: RequestDelta) -> RequestOutput:
        """A wire delta as the RequestOutput delta its reader gets."""
        completions = [CompletionOutput(c.index, c.text, c.token_ids, c.finish_reason, c.stop_reason,
                                        c.cumulative_logprob, c.logprobs) for c in d.outputs]  # fmt: skip
        self.num_tokens += sum(len(c.token_ids) for c in d.outputs)
        t = d.timing
        metrics = (RequestMetrics(t.arrival_time, t.first_scheduled_time, t.first_token_time, t.finished_time,
                                  t.num_output_tokens) if t is not None else RequestMetrics(self.arrival_time))  # fmt: skip
        return RequestOutput(d.request_id, self.prompt, self.prompt_token_ids, completions, d.finished, metrics,
                             d.error, d.prompt_logprobs, d.num_cached_tokens)  # fmt: skip

    def put(self, out: RequestOutput) -> None:
        self.pending = out if self.pending is None else merge(self.pending, out)
        self.ready.set()

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (after the delta not taken yet, if any)."""
        self.error = error
        self.ready.set()

    async def get(self) -> RequestOutput:
        while self.pending is None and self.error is None:
            self.ready.clear()
            await self.ready.wait()
        if self.pending is not None:
            out, self.pending = self.pending, None
            return out
        raise self.error


def merge(first: RequestOutput, then: RequestOutput) -> RequestOutput:
    """Two consecutive deltas of one request as one."""
    earlier = {c.index: c for c in first.outputs}
    completions = []
    for c in then.outputs:
        old = earlier.pop(c.index, None)
        if old is not None:
            logprobs = c.logprobs if old.logprobs is None else old.logprobs + (c.logprobs or [])
            c = CompletionOutput(c.index, old.text + c.text, old.token_ids + c.token_ids, c.finish_reason,
                                 c.stop_reason, c.cumulative_logprob, logprobs)  # fmt: skip
        completions.append(c)
    completions = sorted([*completions, *earlier.values()], key=lambda c: c.index)
    return dataclasses.replace(then, outputs=completions, prompt_logprobs=then.prompt_logprobs or first.prompt_logprobs,
                               error=then.error or first.error)  # fmt: skip


class RequestStream:
    """The outputs of one admitted request, as deltas; iterate it once. Closing it early aborts the request."""

    def __init__(self, engine, request_id: str, slot: OutputSlot) -> None:
        self.engine, self.request_id, self._slot = engine, request_id, slot
        self.finished = False

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if self.finished:
            raise StopAsyncIteration
        try:
            item = await self._slot.get()
        except Exception:  # the request's own end; a cancelled reader (a client gone) still aborts it
            self.finished = True
            raise
        self.finished = item.finished
        return item

    def abort(self) -> None:
        if not self.finished:
            self.finished = True
            self.engine.abort(self.request_id)
