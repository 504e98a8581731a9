"""AsyncLLM: an engine core (its own process, or a thread) streamed to asyncio callers.

Requests are validated and tokenized here, with the engine's own admission checks and the limits
the core reported when it was ready, then sent to the core; one asyncio task reads the core's
output socket (one message per engine step) and hands each request its delta. HTTP parsing, JSON
and the network run in this process; the engine's step loop in the core never waits for them.

``async for out in engine.generate(prompt, params, request_id)`` yields one RequestOutput per step
that moved the request, holding only what is new (text, token ids, logprobs: deltas, as vLLM's
``RequestOutputKind.DELTA``); the last one is finished. A caller that stops iterating (a client
that disconnects) aborts the request, and the engine frees its KV blocks at its next step. When
the core dies, every request in flight and every later one fails with :class:`EngineDeadError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from tessera.engine.admission import Limits, prepare
from tessera.errors import ConfigError, TesseraError
from tessera.outputs import RequestMetrics, RequestOutput
from tessera.serve.core_client import CoreClient
from tessera.serve.streams import OutputSlot, RequestStream
from tessera.serve.wire import (
    AbortRequests,
    AddRequest,
    CoreFailed,
    OutputBatch,
    Shutdown,
    Stopped,
    to_wire_params,
)

log = logging.getLogger("tessera.serve")


class EngineDeadError(TesseraError):
    """The engine core stopped (shut down, crashed or killed); no request can run."""


#: ``on_finished(prompt_tokens, output_tokens, finish_reasons, metrics)``, for each finished request
OnFinished = Callable[[int, int, list, RequestMetrics], None]


class AsyncLLM:
    """``AsyncLLM(core)`` inside the event loop it serves; ``core`` is a started CoreClient, or an LLMEngine
    (then its loop runs in a thread of this process). ``await shutdown()`` (or ``close()``) stops it."""

    def __init__(self, core, loop: asyncio.AbstractEventLoop | None = None, on_finished: OnFinished | None = None,
                 ) -> None:  # fmt: skip
        self.client = core if isinstance(core, CoreClient) else CoreClient.start_thread(core)
        info = self.client.info
        self.tokenizer = self.client.tokenizer
        self.model_dir, self.platform, self.max_model_len = info.model_dir, info.platform, info.max_model_len
        self.vocab_size = info.vocab_size
        self.limits = Limits(Path(info.model_dir), info.vocab_size, info.max_model_len, info.num_blocks, info.block_size,
                             info.generation_defaults)  # fmt: skip
        self.on_finished = on_finished
        self.loop = loop or asyncio.get_running_loop()
        self.stats: dict[str, Any] = {"num_blocks": info.num_blocks, "free_blocks": info.num_blocks}
        self.dead: str | None = None
        self._streams: dict[str, OutputSlot] = {}
        self._num_sent = 0
        self._counter = 0
        self._stopping = False
        self._shutdown_message = "the server shut down"
        self._socket = zmq.asyncio.Socket.from_socket(self.client.output)
        self._reader = self.loop.create_task(self._read())
        if self.client.sentinel is not None:
            self.loop.add_reader(self.client.sentinel, self._core_exited)

    # -- requests ---------------------------------------------------------------------
    @property
    def num_waiting(self) -> int:
        """Requests admitted that do not run yet (on their way to the core, or waiting in it)."""
        return self.stats.get("waiting", 0) + self._num_sent - self.stats.get("num_added", 0)

    def new_request_id(self, prefix: str = "req") -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}-{time.monotonic_ns() % 10**9}"

    async def add_request(
        self, prompt, params, request_id: str | None = None, strict_max_tokens: bool = False
    ) -> RequestStream:
        """Admit a request (validation errors raise here, a ConfigError); its outputs come from the stream.
        ``strict_max_tokens``: a ``max_tokens`` past the context is refused, not clamped."""
        if self.dead:
            raise EngineDeadError(f"the engine is not running: {self.dead}")
        if self._stopping:
            raise EngineDeadError("the server is shutting down and takes no new requests")
        request_id = request_id or self.new_request_id()
        if request_id in self._streams:
            raise ConfigError(f"request id {request_id!r} is already in use")
        # tokenizing a long prompt takes milliseconds: off the event loop, so running streams do not stall
        text, ids, params = await asyncio.to_thread(prepare, prompt, params, self.limits, self.tokenizer,
                                                    strict_max_tokens)  # fmt: skip
        if request_id in self._streams:  # taken while this one was tokenized
            raise ConfigError(f"request id {request_id!r} is already in use")
        now = time.monotonic()
        stream = OutputSlot(text, ids, now)
        self.client.send(AddRequest(request_id, text, ids, to_wire_params(params), now))
        self._streams[request_id] = stream
        self._num_sent += 1
        return RequestStream(self, request_id, stream)

    async def generate(self, prompt, params, request_id: str | None = None) -> AsyncIterator[RequestOutput]:
        stream = await self.add_request(prompt, params, request_id)
        try:
            async for out in stream:
                yield out
        finally:
            stream.abort()  # a no-op once finished; frees the request when the caller stopped early

    def abort(self, request_id: str) -> None:
        if not self.dead and request_id in self._streams:
            self.client.send(AbortRequests([request_id]))

    # -- outputs ------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while True:
                frame = await self._socket.recv(copy=False)
                message = self.client.codec.decode(frame.buffer)
                if isinstance(message, OutputBatch):
                    self._dispatch(message)
                elif isinstance(message, Stopped):
                    return self._fail_all("shut down", EngineDeadError(self._shutdown_message))
                elif isinstance(message, CoreFailed):
                    return self._fail_all(
                        message.message, EngineDeadError(f"the engine failed: {message.message}")
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing more can be read: every request learns of it
            log.exception("reading the engine core's outputs failed")
            self._fail_all(str(exc), EngineDeadError(f"the engine's outputs cannot be read: {exc}"))

    def _dispatch(self, batch: OutputBatch) -> None:
        self.stats = batch.stats.as_dict()
        for d in batch.outputs:
            stream = self._streams.get(d.request_id)
            if stream is None:
                continue
            out = stream.output(d)
            if d.finished:
                del self._streams[d.request_id]
                if self.on_finished is not None:
                    reasons = [c.finish_reason for c in d.outputs]
                    self.on_finished(len(stream.prompt_token_ids), stream.num_tokens, reasons, out.metrics)
            stream.put(out)

    def _core_exited(self) -> None:
        self.loop.remove_reader(self.client.sentinel)
        if not self._stopping and not self.dead:
            self._exit_task = self.loop.create_task(self._after_exit())

    async def _after_exit(self) -> None:
        # a core that failed sent its cause (and its last outputs) before exiting: the reader takes them first
        await asyncio.wait({self._reader}, timeout=0.5)
        if not self._stopping and not self.dead:
            why = await asyncio.to_thread(self.client.exit_description)
            log.error("%s; every request fails until the server is restarted", why)
            self._fail_all(why, EngineDeadError(f"the engine is not running: {why}"))
        self._reader.cancel()

    def _fail_all(self, why: str, exc: Exception) -> None:
        self.dead = self.dead or why
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.fail(exc)

    # -- shutdown -----------------------------------------------------------------------
    async def shutdown(self, drain_timeout: float = 0.0) -> None:
        """Let in-flight requests finish for up to ``drain_timeout`` seconds, abort the rest, stop the core."""
        if self._stopping:
            return
        self._stopping = True
        self._shutdown_message = (f"the server shut down before the request finished (in-flight requests had "
                                  f"{drain_timeout:g} s to finish: --drain-timeout)")  # fmt: skip
        if not self.dead:
            self.client.send(Shutdown(drain_timeout))
            await asyncio.wait({self._reader}, timeout=drain_timeout + 30)
        self._reader.cancel()
        self._fail_all("shut down", EngineDeadError(self._shutdown_message))
        if self.client.sentinel is not None:
            self.loop.remove_reader(self.client.sentinel)
        await asyncio.to_thread(self.client.close)

    def close(self) -> None:
        """Synchronous shutdown (aborting in-flight work), for callers outside the event loop."""
        self._stopping = True
        self.client.close()


__all__ = ["AsyncLLM", "EngineDeadError", "RequestStream"]
