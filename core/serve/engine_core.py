"""The engine core: an LLMEngine and the loop that feeds it from one socket and reports on another.

The server runs it in its own process (:func:`run_engine_core`, started with multiprocessing's
spawn context), so that HTTP, JSON and the frontend's asyncio never take the GIL from the step
loop; ``tessera serve --engine-in-thread`` runs the same loop in a thread instead (debugging).

The loop: apply every message waiting on the input socket (without blocking while there is work),
step, and send that step's outputs as one :class:`~tessera.serve.wire.OutputBatch` holding only
what is new per request (the engine builds those deltas itself, ``LLMEngine.step(delta=True)``, at
a cost per request that does not grow with the output already produced). With nothing to do it
blocks on the input socket, waking once a second to see whether the frontend process still lives
(an orphaned core exits). Requests arrive already validated and tokenized (the frontend runs the
admission checks); the core does the rest, including detokenization and the stop rules, as the
engine does offline.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import zmq

from tessera.engine.llm_engine import LLMEngine
from tessera.errors import TesseraError
from tessera.outputs import RequestOutput
from tessera.serve.wire import (
    AbortRequests,
    AddRequest,
    Codec,
    CompletionDelta,
    CoreFailed,
    CoreInput,
    EngineStats,
    OutputBatch,
    Ready,
    RequestDelta,
    Shutdown,
    StartupFailed,
    Stopped,
    Timing,
    from_wire_params,
)

log = logging.getLogger("tessera.serve.core")
IDLE_POLL_MS = 1000  # how often an idle core looks whether its frontend is still there
LINGER_MS = 5000  # how long closing waits for the last messages to leave


class _FrontendGone(Exception):
    pass


class EngineCore:
    """The loop over ``engine``; ``run()`` returns after a Shutdown was carried out (or raises)."""

    def __init__(self, engine: LLMEngine, context: zmq.Context, input_address: str, output: zmq.Socket,
                 parent_pid: int | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.inputs = context.socket(zmq.PULL)
        self.inputs.setsockopt(zmq.RCVHWM, 0)
        self.inputs.bind(input_address)
        self.output = output
        self.parent_pid = parent_pid
        self.codec = Codec(CoreInput)
        self.active: set[str] = set()  # requests added and not finished
        self.failed_adds: list[RequestDelta] = []
        self.num_added = 0
        self.stop_at: float | None = None
        self.last_stats: EngineStats | None = None

    def send(self, message) -> None:
        self.output.send(self.codec.encode(message), copy=False)

    def run(self) -> None:
        engine = self.engine
        while True:
            self._drain(block=not engine.has_unfinished() and self.stop_at is None)
            if self.stop_at is not None and (time.monotonic() >= self.stop_at or not engine.has_unfinished()):
                for request_id in list(self.active):
                    engine.abort(request_id)
                while engine.has_unfinished():
                    self._publish(self._step())
                break
            self._publish(self._step() if engine.has_unfinished() else [])
        self.send(Stopped())

    # -- input -------------------------------------------------------------------------
    def _drain(self, block: bool) -> None:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise _FrontendGone
        if block:
            while not self.inputs.poll(IDLE_POLL_MS):
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    raise _FrontendGone
        while True:
            try:
                data = self.inputs.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._apply(self.codec.decode(data.buffer))

    def _apply(self, message) -> None:
        if isinstance(message, AddRequest):
            self.num_added += 1
            try:
                self.engine.add_prepared(message.prompt, message.prompt_token_ids, from_wire_params(message.params),
                                         message.request_id, message.arrival_time)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - the frontend checked it; whatever is left fails it alone
                log.error("request %s refused by the engine: %s", message.request_id, exc)
                self.failed_adds.append(RequestDelta(message.request_id, [CompletionDelta(0, "", [], "error")], True,
                                                     f"{type(exc).__name__}: {exc}"))  # fmt: skip
                return
            self.active.add(message.request_id)
        elif isinstance(message, AbortRequests):
            for request_id in message.request_ids:
                self.engine.abort(request_id)
        elif isinstance(message, Shutdown) and self.stop_at is None:
            self.stop_at = time.monotonic() + message.drain_timeout

    # -- output ------------------------------------------------------------------------
    def _step(self) -> list[RequestDelta]:
        deltas = []
        for out in self.engine.step(delta=True):
            known = out.request_id in self.active
            if out.finished:
                self.engine.release(out.request_id)
                self.active.discard(out.request_id)
            if known:
                deltas.append(wire_delta(out))
        return deltas

    def _publish(self, deltas: list[RequestDelta]) -> None:
        if self.failed_adds:
            deltas, self.failed_adds = self.failed_adds + deltas, []
        stats = self.stats()
        if deltas or stats != self.last_stats:
            self.last_stats = stats
            self.send(OutputBatch(deltas, stats))

    def stats(self) -> EngineStats:
        engine, sched, kv = self.engine, self.engine.scheduler, self.engine.kv
        return EngineStats(len(sched.running), len(sched.waiting), kv.pool.num_blocks, kv.pool.num_free,
                           kv.prefix_queries, kv.prefix_hits, sched.num_preemptions, len(engine.requests),
                           self.num_added)  # fmt: skip

    def close(self) -> None:
        self.inputs.close(linger=0)


def wire_delta(out: RequestOutput) -> RequestDelta:
    """A delta RequestOutput of the engine (``step(delta=True)``) as its wire message; timing when finished."""
    completions = [CompletionDelta(c.index, c.text, c.token_ids, c.finish_reason, c.stop_reason, c.cumulative_logprob,
                                   c.logprobs) for c in out.outputs]  # fmt: skip
    m = out.metrics
    timing = Timing(m.arrival_time, m.first_scheduled_time, m.first_token_time, m.finished_time,
                    m.num_output_tokens) if out.finished else None  # fmt: skip
    return RequestDelta(out.request_id, completions, out.finished, out.error, out.num_cached_tokens, out.prompt_logprobs,
                        timing)  # fmt: skip


def ready(engine: LLMEngine) -> Ready:
    limits = engine.limits
    return Ready(str(limits.model_dir), engine.platform.name, str(engine.dtype).removeprefix("torch."),
                 limits.max_model_len, limits.vocab_size, limits.num_blocks, limits.block_size,
                 list(engine.eos_token_ids), dict(limits.generation_defaults), os.getpid())  # fmt: skip


def serve_engine(engine: LLMEngine, context: zmq.Context, input_address: str, output: zmq.Socket,
                 parent_pid: int | None = None) -> None:  # fmt: skip
    """Say ready, run the loop, and report how it ended on ``output`` (then close it)."""
    core = EngineCore(engine, context, input_address, output, parent_pid)
    linger = LINGER_MS
    try:
        core.send(ready(engine))
        core.run()
    except _FrontendGone:
        log.warning("the server's frontend process is gone; the engine core stops")
        linger = 0  # nobody reads what is left
    except BaseException as exc:  # noqa: BLE001 - the frontend fails every request with it
        log.exception("the engine core failed")
        core.send(CoreFailed(f"{type(exc).__name__}: {exc}"))
    finally:
        core.close()
        output.close(linger=linger)


def run_engine_core(
    config: dict, input_address: str, output_address: str, parent_pid: int, log_level: int
) -> None:
    """The engine-core process: build the engine from ``config`` (EngineConfig's fields), then serve it."""
    # Ctrl-C reaches the whole process group; the frontend decides how the core stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    context = zmq.Context()
    output = context.socket(zmq.PUSH)
    output.setsockopt(zmq.SNDHWM, 0)
    output.connect(output_address)
    try:
        from tessera.llm import make_config

        engine = LLMEngine(make_config(**config))
    except Exception as exc:  # noqa: BLE001 - told to the frontend, which shows it to the user
        if not isinstance(exc, TesseraError):
            log.exception("the engine failed to start")
        output.send(
            Codec().encode(StartupFailed(type(exc).__name__, str(exc), isinstance(exc, TesseraError)))
        )
        output.close(linger=LINGER_MS)
        context.term()
        return
    serve_engine(engine, context, input_address, output, parent_pid)
    context.term()
