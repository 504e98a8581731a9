"""AsyncLLM: an LLMEngine driven by its own thread, streamed to asyncio callers.

The engine is not thread-safe, so only the engine thread touches it: callers put
commands (add, abort, stop) on a queue, the thread applies them between steps and
hands each step's outputs back to the event loop in one ``call_soon_threadsafe``.
HTTP parsing, JSON and the network never run on the engine thread, and the device
never waits for them.

``async for out in engine.generate(prompt, params, request_id)`` yields one
RequestOutput per step that moved the request, holding only what is new (text,
token ids, logprobs: deltas, as vLLM's ``RequestOutputKind.DELTA``); the last one is
finished. A caller that stops iterating (a client that disconnects) aborts the
request, and the engine frees its KV blocks at its next step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from tessera.engine.llm_engine import LLMEngine
from tessera.errors import TesseraError
from tessera.outputs import RequestOutput

log = logging.getLogger("tessera.serve")


class EngineDeadError(TesseraError):
    """The engine thread stopped (shut down or crashed); no request can run."""


@dataclasses.dataclass
class _Stream:
    queue: asyncio.Queue
    sent: dict[int, tuple[int, int, int]] = dataclasses.field(default_factory=dict)  # index -> text, ids, lps


class RequestStream:
    """The outputs of one admitted request, as deltas; iterate it once. Closing it early aborts the request."""

    def __init__(self, engine: AsyncLLM, request_id: str, stream: _Stream) -> None:
        self.engine, self.request_id, self._stream = engine, request_id, stream
        self.finished = False

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if self.finished:
            raise StopAsyncIteration
        item = await self._stream.queue.get()
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        self.finished = item.finished
        return item

    def abort(self) -> None:
        if not self.finished:
            self.finished = True
            self.engine.abort(self.request_id)


class AsyncLLM:
    """``AsyncLLM(engine)`` (inside the event loop it serves): start the engine thread; ``await shutdown()``
    (or ``close()``) stops it."""

    def __init__(self, engine: LLMEngine, loop: asyncio.AbstractEventLoop | None = None,
                 on_finished: Callable[[RequestOutput], None] | None = None) -> None:  # fmt: skip
        """``on_finished`` sees every finished request's whole output, on the engine thread (metrics)."""
        self.engine = engine
        self.on_finished = on_finished
        self.loop = loop or asyncio.get_running_loop()
        self.stats: dict[str, Any] = {}
        self.dead: str | None = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, _Stream] = {}
        self._pending_adds = 0
        self._counter = 0
        self._thread = threading.Thread(target=self._run, name="tessera-engine", daemon=True)
        self._snapshot()
        self._thread.start()

    # -- the caller's side (event loop) -----------------------------------------------------
    @property
    def num_waiting(self) -> int:
        """Requests admitted or being admitted that do not run yet."""
        return self.stats.get("waiting", 0) + self._pending_adds

    def new_request_id(self, prefix: str = "req") -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}-{time.monotonic_ns() % 10**9}"

    async def add_request(self, prompt, params, request_id: str | None = None) -> RequestStream:
        """Admit a request (validation errors raise here, a ConfigError); its outputs come from the stream."""
        if self.dead:
            raise EngineDeadError(f"the engine is not running: {self.dead}")
        request_id = request_id or self.new_request_id()
        future = self.loop.create_future()
        stream = _Stream(asyncio.Queue())
        self._pending_adds += 1
        try:
            self._commands.put(("add", (prompt, params, request_id, stream, future)))
            await future
        finally:
            self._pending_adds -= 1
        return RequestStream(self, request_id, stream)

    async def generate(self, prompt, params, request_id: str | None = None) -> AsyncIterator[RequestOutput]:
        stream = await self.add_request(prompt, params, request_id)
        try:
            async for out in stream:
                yield out
        finally:
            stream.abort()  # a no-op once finished; frees the request when the caller stopped early

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id))

    async def shutdown(self, drain_timeout: float = 0.0) -> None:
        """Let in-flight requests finish for up to ``drain_timeout`` seconds, abort the rest, stop the thread."""
        if self._thread.is_alive():
            self._commands.put(("stop", drain_timeout))
            await asyncio.to_thread(self._thread.join)

    def close(self) -> None:
        """Synchronous shutdown (aborting in-flight work), for callers outside the event loop."""
        if self._thread.is_alive():
            self._commands.put(("stop", 0.0))
            self._thread.join()

    # -- the engine thread ------------------------------------------------------------------
    def _run(self) -> None:
        stop_at: float | None = None
        try:
            while True:
                busy = self.engine.has_unfinished()
                stop_at = self._apply_commands(block=not busy and stop_at is None, stop_at=stop_at)
                if stop_at is not None and (time.monotonic() >= stop_at or not self.engine.has_unfinished()):
                    self._abort_all("the server is shutting down")
                    while self.engine.has_unfinished():
                        self._deliver(self.engine.step())
                    break
                if self.engine.has_unfinished():
                    self._deliver(self.engine.step())
                self._snapshot()
        except BaseException as exc:  # noqa: BLE001 - every stream learns of it, the server reports it
            log.exception("the engine thread failed")
            self.dead = f"{type(exc).__name__}: {exc}"
            self.loop.call_soon_threadsafe(self._fail_all, EngineDeadError(f"the engine failed: {self.dead}"))
            return
        self.dead = "shut down"
        self.loop.call_soon_threadsafe(self._fail_all, EngineDeadError("the server shut down"))

    def _apply_commands(self, block: bool, stop_at: float | None) -> float | None:
        try:
            command = self._commands.get(timeout=0.5) if block else self._commands.get_nowait()
        except queue.Empty:
            return stop_at
        while True:
            kind, arg = command
            if kind == "add":
                self._add(*arg)
            elif kind == "abort":
                self.engine.abort(arg)
            elif kind == "stop" and stop_at is None:
                stop_at = time.monotonic() + arg
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return stop_at

    def _add(self, prompt, params, request_id, stream: _Stream, future: asyncio.Future) -> None:
        try:
            self.engine.add_request(prompt, params, request_id)
        except Exception as exc:  # noqa: BLE001 - handed to the caller: a bad request, a 400
            self.loop.call_soon_threadsafe(_resolve, future, exc)
            return
        self._streams[request_id] = stream
        self._snapshot()
        self.loop.call_soon_threadsafe(_resolve, future, None)

    def _abort_all(self, why: str) -> None:
        log.info("%s: aborting %d requests", why, len(self._streams))
        for request_id in list(self._streams):
            self.engine.abort(request_id)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        batch = []
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if out.finished:
                self.engine.release(out.request_id)
                if self.on_finished is not None:
                    self.on_finished(out)
                self._streams.pop(out.request_id, None)
            if stream is not None:
                batch.append((stream, _delta(out, stream)))
        if batch:
            self.loop.call_soon_threadsafe(_put_all, batch)

    def _snapshot(self) -> None:
        sched, stats = self.engine.scheduler, self.engine.stats
        self.stats = {**stats, "running": len(sched.running), "waiting": len(sched.waiting),
                      "blocks_in_use": stats["num_blocks"] - stats["free_blocks"]}  # fmt: skip

    def _fail_all(self, exc: Exception) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.queue.put_nowait(exc)


def _resolve(future: asyncio.Future, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _put_all(batch) -> None:
    for stream, out in batch:
        stream.queue.put_nowait(out)


def _delta(out: RequestOutput, stream: _Stream) -> RequestOutput:
    """``out`` with each completion holding only what the stream has not been sent yet."""
    completions = []
    for c in out.outputs:
        text_n, ids_n, lps_n = stream.sent.get(c.index, (0, 0, 0))
        lps = getattr(c, "logprobs", None)
        text = c.text[text_n:]
        stream.sent[c.index] = (len(c.text), len(c.token_ids), len(lps) if lps else 0)
        changes: dict[str, Any] = {"text": text, "token_ids": list(c.token_ids[ids_n:])}
        if lps:
            changes["logprobs"] = lps[lps_n:]
        completions.append(dataclasses.replace(c, **changes))
    return dataclasses.replace(out, outputs=completions)


__all__ = ["AsyncLLM", "EngineDeadError", "RequestStream"]
