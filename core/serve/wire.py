"""The messages between the HTTP frontend and the engine core, as msgspec Structs over msgpack (no pickle).

Frontend -> core (one socket): :class:`AddRequest`, :class:`AbortRequests`, :class:`Shutdown`.
Core -> frontend (one socket): :class:`Ready` or :class:`StartupFailed` first, then one
:class:`OutputBatch` per engine step (every request that moved, as deltas, and the engine's
gauges and counters), and at the end :class:`Stopped` (a clean shutdown) or :class:`CoreFailed`.

A request arrives validated and tokenized (the frontend runs the engine's admission checks with
the limits of :class:`Ready`); its sampling params travel as :data:`SamplingFields`, a Struct made
from SamplingParams' own fields, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tessera.outputs import Logprob
from tessera.sampling_params import SamplingParams

#: SamplingParams' fields, in order, as a positional msgpack array.
SamplingFields = msgspec.defstruct(
    "SamplingFields",
    [(name, field.annotation) for name, field in SamplingParams.model_fields.items()],
    array_like=True,
    module=__name__,
)
LogprobEntry = dict[int, Logprob]


def to_wire_params(params: SamplingParams) -> Any:
    return SamplingFields(**{name: getattr(params, name) for name in SamplingParams.model_fields})


def from_wire_params(fields) -> SamplingParams:
    """Validated on the frontend already: rebuilt without validating again."""
    return SamplingParams.model_construct(**msgspec.structs.asdict(fields))


# -- frontend -> core --------------------------------------------------------------------
class AddRequest(msgspec.Struct, tag="add", array_like=True):
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingFields  # type: ignore[valid-type]
    arrival_time: float


class AbortRequests(msgspec.Struct, tag="abort", array_like=True):
    request_ids: list[str]


class Shutdown(msgspec.Struct, tag="shutdown", array_like=True):
    drain_timeout: float = 0.0


CoreInput = AddRequest | AbortRequests | Shutdown


# -- core -> frontend --------------------------------------------------------------------
class Ready(msgspec.Struct, tag="ready", array_like=True):
    """What the frontend needs to admit requests and answer /v1/models without the engine."""

    model_dir: str
    platform: str
    dtype: str
    max_model_len: int
    vocab_size: int
    num_blocks: int
    block_size: int
    eos_token_ids: list[int]
    generation_defaults: dict[str, float | int]
    pid: int


class StartupFailed(msgspec.Struct, tag="startup_failed", array_like=True):
    error_type: str  # the exception's class name
    message: str
    user_error: bool  # a TesseraError (bad model dir, platform, config): its message alone says what to do


class CompletionDelta(msgspec.Struct, array_like=True):
    """What is new of one completion since the last delta."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    cumulative_logprob: float | None = None
    logprobs: list[LogprobEntry] | None = None


class Timing(msgspec.Struct, array_like=True):
    """RequestMetrics' fields (time.monotonic(), the same clock in every process of the host)."""

    arrival_time: float
    first_scheduled_time: float | None
    first_token_time: float | None
    finished_time: float | None
    num_output_tokens: int


class RequestDelta(msgspec.Struct, array_like=True):
    request_id: str
    outputs: list[CompletionDelta]
    finished: bool
    error: str | None = None
    num_cached_tokens: int = 0
    prompt_logprobs: list[LogprobEntry | None] | None = None  # once, with the first tokens
    timing: Timing | None = None  # with the last delta


class EngineStats(msgspec.Struct, array_like=True):
    running: int = 0
    waiting: int = 0
    num_blocks: int = 0
    free_blocks: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    requests: int = 0  # requests the engine holds (running, waiting, or finished and not yet released)
    num_added: int = 0  # AddRequests applied since start: the frontend's sent - added are in transit

    def as_dict(self) -> dict[str, int]:
        stats = msgspec.structs.asdict(self)
        stats["blocks_in_use"] = self.num_blocks - self.free_blocks
        return stats


class OutputBatch(msgspec.Struct, tag="outputs", array_like=True):
    outputs: list[RequestDelta]
    stats: EngineStats


class CoreFailed(msgspec.Struct, tag="failed", array_like=True):
    message: str


class Stopped(msgspec.Struct, tag="stopped", array_like=True):
    pass


CoreOutput = Ready | StartupFailed | OutputBatch | CoreFailed | Stopped


class Codec:
    """One encoder and the decoder of what the other side sends (reuse it: both keep buffers)."""

    def __init__(self, receives=Any) -> None:
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(receives)

    def encode(self, message) -> bytes:
        return self.encoder.encode(message)

    def decode(self, data):
        return self.decoder.decode(data)


__all__ = ["AbortRequests", "AddRequest", "Codec", "CompletionDelta", "CoreFailed", "CoreInput", "CoreOutput",
           "EngineStats", "OutputBatch", "Ready", "RequestDelta", "SamplingFields", "Shutdown", "StartupFailed",
           "Stopped", "Timing", "from_wire_params", "to_wire_params"]  # fmt: skip
