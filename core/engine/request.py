"""A request's life in the engine: tokens, progress, blocks, state slot, status."""

from __future__ import annotations

import enum
import time

from tessera.outputs import RequestMetrics
from tessera.sampling_params import SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Request:
    """One sequence. ``num_computed`` tokens have KV in the cache; ``num_pending`` sampled tokens
    are still on the device (async scheduling) and count as known for scheduling."""

    def __init__(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, prompt: str | None = None,
                 eos_token_ids: tuple[int, ...] = (), index: int = 0, parent_id: str | None = None) -> None:  # fmt: skip
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = list(prompt_token_ids)
        self.output_token_ids: list[int] = []
        self.params = params
        self.eos_token_ids = frozenset(eos_token_ids)
        self.index = index  # which of the parent's n completions this is
        self.parent_id = parent_id or request_id  # the id the caller knows (n > 1: shared by n siblings)
        self.stop_reason: str | int | None = None  # the stop string or stop token id that ended it
        self.logprobs: list[dict] | None = [] if params.logprobs is not None else None
        self.cumulative_logprob = 0.0
        self.prompt_logprobs: list[dict | None] | None = (
            [None] * len(self.prompt_token_ids) if params.prompt_logprobs is not None else None
        )
        self.status = Status.WAITING
        self.num_computed = 0
        self.num_pending = 0
        self.discard_pending = 0
        self.block_ids: list[int] = []
        self.block_hashes: list[bytes] = []
        self.num_registered = 0  # leading blocks entered in the prefix cache
        self.num_cached_prefix = 0
        self.state_slot: int | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None  # the cause, when finish_reason is "error"
        self.num_preemptions = 0
        self.metrics = RequestMetrics(arrival_time=time.monotonic())
        self.text = ""  # the output text cut at the stop string that ended it
        # what LLMEngine.step(delta=True) returned of this completion so far: text characters, token ids, logprobs
        self.sent_text = self.sent_tokens = self.sent_logprobs = 0
        self.sent_prompt_logprobs = False
        self.final_text: str | None = None  # the finished output's text, decoded once

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        """Tokens known to the scheduler: prompt, outputs on the host, outputs still on the device."""
        return len(self.prompt_token_ids) + len(self.output_token_ids) + self.num_pending

    @property
    def num_to_compute(self) -> int:
        return self.num_tokens - self.num_computed

    @property
    def num_generated(self) -> int:
        return len(self.output_token_ids) + self.num_pending

    @property
    def wants_more(self) -> bool:
        return self.status != Status.FINISHED and self.num_generated < self.params.max_tokens

    @property
    def finished(self) -> bool:
        return self.status == Status.FINISHED

    def __repr__(self) -> str:
        return (
            f"<Request {self.request_id} {self.status.value} computed={self.num_computed}/{self.num_tokens}>"
        )
