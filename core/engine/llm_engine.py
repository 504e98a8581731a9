"""LLMEngine: requests in, one scheduled step at a time, RequestOutputs out.

With async scheduling (the default) step N+1 is scheduled and launched before
step N's sampled tokens are read back; those tokens feed step N+1 on the device,
and outputs are processed one step behind. Results equal synchronous mode: a
request's tokens depend only on its own prompt and sampling params (seeded noise
per token index), and tokens sampled for a request already finished or preempted
are discarded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from tessera.config import EngineConfig
from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.model_runner import ModelRunner, StepHandle
from tessera.engine.request import Request
from tessera.engine.scheduler import Scheduler
from tessera.engine.stopping import limit_params, stop_reason
from tessera.errors import ConfigError, PlatformError
from tessera.models.spec import ModelSpec
from tessera.outputs import CompletionOutput, RequestOutput
from tessera.platform import dtype_from_name
from tessera.plugins import select_platform
from tessera.sampling_params import SamplingParams
from tessera.tokenizer import IncrementalDetokenizer, load_tokenizer, require_tokenizer

log = logging.getLogger("tessera.engine")
PREFERRED = ("bfloat16", "float16", "float32")


def resolve_dtype(config: EngineConfig, spec: ModelSpec, supported: Sequence[str]) -> torch.dtype:
    if config.dtype != "auto":
        if config.dtype not in supported:
            raise PlatformError(f"dtype {config.dtype} is not supported on this platform (supported: {', '.join(supported)}); "
                                "pick one of those or dtype='auto'")  # fmt: skip
        return dtype_from_name(config.dtype)
    wanted = spec.torch_dtype
    if wanted in supported:
        return dtype_from_name(wanted)
    return dtype_from_name(next(d for d in PREFERRED if d in supported))


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.spec = ModelSpec.from_dir(config.model)
        from tessera.models.registry import model_class

        model_class(self.spec)  # unsupported architectures fail before any device work
        self.platform = select_platform(config.platform)
        caps = self.platform.capabilities(config.device_index)
        self.dtype = resolve_dtype(config, self.spec, caps.dtypes)
        self.max_model_len = self._max_model_len()
        eos = self.spec.eos_token_ids
        self.eos_token_id = eos[0] if eos else None
        self.tokenizer = load_tokenizer(self.spec.path, self.eos_token_id)
        self.runner = ModelRunner(config, self.spec, self.platform, self.dtype, self.max_model_len)
        plan = self.runner.plan
        hybrid = plan.num_state_slots > 0
        if hybrid and config.enable_prefix_caching:
            log.info("prefix caching is off for this hybrid model: Mamba states are not cached per block")
        self.kv = KVCacheManager(plan.num_blocks, plan.block_size, config.enable_prefix_caching and not hybrid,
                                 config.prefix_hash, plan.num_state_slots - 1 if hybrid else 0)  # fmt: skip
        self.scheduler = Scheduler(self.kv, config.max_num_seqs, config.max_num_batched_tokens)
        self.requests: dict[str, Request] = {}
        self.detok: dict[str, IncrementalDetokenizer] = {}
        self._prev: StepHandle | None = None
        self._aborted: list[Request] = []
        self._counter = 0

    def _max_model_len(self) -> int:
        limit = self.spec.max_position
        if self.config.max_model_len == "auto":
            return limit
        if self.config.max_model_len > limit:
            raise ConfigError(
                f"max_model_len {self.config.max_model_len} exceeds the model's max_position_embeddings ({limit})"
            )
        return int(self.config.max_model_len)

    # -- requests ---------------------------------------------------------------------
    def add_request(
        self,
        prompt: str | dict | list[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
    ) -> str:
        """Validate and queue a request; invalid input raises here and leaves the engine untouched."""
        params = params or SamplingParams()
        text, ids = self._prompt_ids(prompt)
        if not ids:
            raise ConfigError("the prompt is empty; give at least one token")
        if any(not 0 <= t < self.spec.vocab_size for t in ids):
            raise ConfigError(
                f"prompt token ids must lie in [0, {self.spec.vocab_size}); got {min(ids)}..{max(ids)}"
            )
        if len(ids) >= self.max_model_len:
            raise ConfigError(f"the prompt has {len(ids)} tokens, max_model_len is {self.max_model_len}: "
                              "shorten it or raise max_model_len")  # fmt: skip
        total = min(len(ids) + params.max_tokens, self.max_model_len)
        if -(-total // self.kv.block_size) > self.kv.pool.num_blocks:
            raise ConfigError(f"a request of {total} tokens needs more KV blocks than the cache has "
                              f"({self.kv.pool.num_blocks} of {self.kv.block_size}); lower max_tokens or give the cache more memory")  # fmt: skip
        request_id = request_id or f"req-{self._counter}"
        self._counter += 1
        if request_id in self.requests:
            raise ConfigError(f"request id {request_id!r} is already in use")
        params = limit_params(params, len(ids), self.max_model_len)
        request = Request(request_id, ids, params, text, None if params.ignore_eos else self.eos_token_id)
        self.requests[request_id] = request
        self.detok[request_id] = IncrementalDetokenizer(self.tokenizer)
        self.scheduler.add(request)
        return request_id

    def _prompt_ids(self, prompt) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            return prompt, require_tokenizer(self.tokenizer, self.spec.path).encode(prompt)
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            return prompt.get("prompt"), [int(t) for t in prompt["prompt_token_ids"]]
        if isinstance(prompt, list | tuple) and all(isinstance(t, int) for t in prompt):
            return None, list(prompt)
        raise ConfigError('a prompt is a string or {"prompt_token_ids": [...]}, got ' + type(prompt).__name__)

    def abort(self, request_id: str) -> None:
        request = self.requests.get(request_id)
        if request is None or request.finished:
            return
        self.scheduler.abort(request)
        request.finish_reason = "abort"
        request.metrics.finished_time = time.monotonic()
        self._aborted.append(request)

    def discard(self, request_id: str) -> None:
        """Abort a request and forget it without reporting an output (used to roll back a batch of additions)."""
        request = self.requests.pop(request_id, None)
        if request is not None:
            self.scheduler.abort(request)
            self.detok.pop(request_id, None)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work() or self._prev is not None or bool(self._aborted)

    # -- stepping -----------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule and launch one step; return outputs of requests that progressed (one step behind when async)."""
        sched = self.scheduler.schedule()
        handle = None
        if not sched.empty:
            now = time.monotonic()
            for s in sched.scheduled:
                s.request.metrics.first_scheduled_time = s.request.metrics.first_scheduled_time or now
            handle = self.runner.execute(sched, self._prev if self.config.async_scheduling else None)
            for s in handle.rows:
                s.request.num_pending += 1
        touched: list[Request] = []
        if self.config.async_scheduling:
            if self._prev is not None:
                touched = self._process(self._prev)
            self._prev = handle
        elif handle is not None:
            touched = self._process(handle)
        aborted, self._aborted = self._aborted, []
        return [self._output(r) for r in touched + aborted]

    def _process(self, handle: StepHandle) -> list[Request]:
        touched = []
        now = time.monotonic()
        for sched, token in zip(handle.rows, handle.tokens(), strict=True):
            req = sched.request
            if req.discard_pending > 0:
                req.discard_pending -= 1
                continue
            if req.finished:
                continue
            req.num_pending -= 1
            req.output_token_ids.append(token)
            req.metrics.first_token_time = req.metrics.first_token_time or now
            req.metrics.num_output_tokens = len(req.output_token_ids)
            reason = stop_reason(req, token)
            if reason:
                req.finish_reason = reason
                req.metrics.finished_time = now
                self.scheduler.finish(req)
            touched.append(req)
        return touched

    def _output(self, req: Request) -> RequestOutput:
        detok = self.detok[req.request_id]
        if req.finished:
            text = detok.finish(req.output_token_ids)
        else:
            detok.update(req.output_token_ids)  # the stable text so far; a trailing partial character waits
            text = detok.text
        completion = CompletionOutput(0, text or "", list(req.output_token_ids), req.finish_reason)
        return RequestOutput(
            req.request_id, req.prompt, req.prompt_token_ids, [completion], req.finished, req.metrics
        )

    def release(self, request_id: str) -> None:
        """Forget a finished request (its output was delivered)."""
        req = self.requests.get(request_id)
        if req is not None and req.finished:
            del self.requests[request_id]
            del self.detok[request_id]

    @property
    def stats(self) -> dict:
        return {"prefix_queries": self.kv.prefix_queries, "prefix_hits": self.kv.prefix_hits,
                "preemptions": self.scheduler.num_preemptions, "num_blocks": self.kv.pool.num_blocks,
                "free_blocks": self.kv.pool.num_free}  # fmt: skip
