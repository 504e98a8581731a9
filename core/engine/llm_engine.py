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

from tessera.config import EngineConfig, auto_dtype
from tessera.discovery import select_platform
from tessera.engine.admission import check_fits, check_prompt, parse_prompt
from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.model_runner import ModelRunner, StepHandle
from tessera.engine.request import Request
from tessera.engine.scheduler import ScheduledRequest, Scheduler, SchedulerOutput
from tessera.engine.stopping import limit_params, stop_reason
from tessera.errors import ConfigError, PlatformError
from tessera.models.spec import ModelSpec
from tessera.outputs import CompletionOutput, RequestMetrics, RequestOutput
from tessera.platform import dtype_from_name
from tessera.sampling_params import SamplingParams, to_sampling_params
from tessera.tokenizer import IncrementalDetokenizer, load_tokenizer

log = logging.getLogger("tessera.engine")


def resolve_dtype(config: EngineConfig, spec: ModelSpec, supported: Sequence[str]) -> torch.dtype:
    if config.dtype != "auto":
        if config.dtype not in supported:
            raise PlatformError(f"dtype {config.dtype} is not supported on this platform (supported: {', '.join(supported)}); "
                                "pick one of those or dtype='auto'")  # fmt: skip
        return dtype_from_name(config.dtype)
    return dtype_from_name(auto_dtype(spec.torch_dtype, supported))


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.spec = ModelSpec.from_dir(config.model)
        from tessera.models.architectures import model_class

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
        params: SamplingParams | dict | None = None,
        request_id: str | None = None,
    ) -> str:
        """Validate and queue a request; invalid input raises ConfigError here and leaves the engine untouched."""
        params = to_sampling_params(params)
        text, ids = parse_prompt(prompt, self.tokenizer, self.spec.path)
        check_prompt(ids, self.spec.vocab_size, self.max_model_len)
        check_fits(
            min(len(ids) + params.max_tokens, self.max_model_len), self.kv.pool.num_blocks, self.kv.block_size
        )
        request_id = request_id or self.new_request_id()
        if request_id in self.requests:
            raise ConfigError(f"request id {request_id!r} is already in use")
        params = limit_params(params, len(ids), self.max_model_len)
        request = Request(request_id, ids, params, text, None if params.ignore_eos else self.eos_token_id)
        self.requests[request_id] = request
        self.detok[request_id] = IncrementalDetokenizer(self.tokenizer)
        self.scheduler.add(request)
        return request_id

    def new_request_id(self) -> str:
        self._counter += 1
        return f"req-{self._counter - 1}"

    def rejected(self, prompt, error: Exception) -> RequestOutput:
        """The output of a request refused at admission: finished, finish_reason "error", the cause in ``error``."""
        text = (
            prompt if isinstance(prompt, str) else prompt.get("prompt") if isinstance(prompt, dict) else None
        )
        completion = CompletionOutput(0, "", [], "error")
        metrics = RequestMetrics(arrival_time=time.monotonic(), finished_time=time.monotonic())
        return RequestOutput(self.new_request_id(), text if isinstance(text, str) else None, [], [completion],
                             True, metrics, error=str(error))  # fmt: skip

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
        """Schedule and launch one step; return outputs of requests that progressed (one step behind when async).

        A step is all or nothing: when running it raises (a kernel fault, say), exactly
        the requests of that step finish with ``finish_reason="error"`` and the cause in
        ``RequestOutput.error``; their blocks and state slots are freed and the other
        requests go on. With async scheduling a step whose tokens cannot be read fails
        together with the requests of the step in flight that consumed them.
        """
        sched = self.scheduler.schedule()
        handle, failed = (None, []) if sched.empty else self._launch(sched)
        if sched.empty and not sched.preempted and self._prev is None and self.scheduler.has_work():
            failed = self._stalled()
        touched: list[Request] = []
        if self.config.async_scheduling:
            prev, self._prev = self._prev, handle
            if prev is not None:
                touched = self._collect(prev, handle)
        elif handle is not None:
            touched = self._collect(handle, None)
        aborted, self._aborted = self._aborted, []
        return [self._output(r) for r in failed + touched + aborted]

    def _launch(self, sched: SchedulerOutput) -> tuple[StepHandle | None, list[Request]]:
        """Run one scheduled step: (its handle, []) or, when it raises, (None, the requests failed)."""
        now = time.monotonic()
        for s in sched.scheduled:
            s.request.metrics.first_scheduled_time = s.request.metrics.first_scheduled_time or now
        try:
            handle = self.runner.execute(sched, self._prev if self.config.async_scheduling else None)
        except Exception as exc:  # noqa: BLE001 - a failed step fails its requests, not the engine
            return None, self._fail(sched.scheduled, exc)
        for s in handle.rows:
            s.request.num_pending += 1
        return handle, []

    def _collect(self, handle: StepHandle, in_flight: StepHandle | None) -> list[Request]:
        """Read a step's tokens and process them; a read that raises fails the step (and its consumers)."""
        try:
            tokens = handle.tokens()
        except Exception as exc:  # noqa: BLE001
            rows = list(handle.rows)
            if in_flight is not None:
                ids = {s.request.request_id for s in rows}
                rows += [s for s in in_flight.rows if s.request.request_id in ids]
            return self._fail(rows, exc)
        return self._process(handle, tokens)

    def _fail(self, rows: list[ScheduledRequest], exc: Exception) -> list[Request]:
        """Finish the requests of a failed step with an error, freeing their blocks and state slots."""
        message = f"{type(exc).__name__}: {exc}"
        failed = self.scheduler.fail(rows)
        log.error("a step failed; its %d requests end with an error: %s", len(failed), message, exc_info=exc)
        now = time.monotonic()
        for req in failed:
            req.finish_reason, req.error = "error", message
            req.metrics.finished_time = now
        return failed

    def _stalled(self) -> list[Request]:
        """Nothing runs, nothing is in flight, yet requests wait: no later step could differ, so rather than
        spin forever the engine ends them with an error (only a fault, such as leaked blocks, gets here)."""
        pending = list(self.scheduler.running) + list(self.scheduler.waiting)
        message = (f"the engine cannot schedule any of {len(pending)} requests with {self.kv.pool.num_free} of "
                   f"{self.kv.pool.num_blocks} KV blocks and {len(self.kv.free_slots)} state slots free: "
                   "blocks or state slots were leaked (an engine fault; please report it)")  # fmt: skip
        log.error(message)
        for req in pending:
            self.scheduler.abort(req)
            req.finish_reason, req.error = "error", message
            req.metrics.finished_time = time.monotonic()
        return pending

    def _process(self, handle: StepHandle, tokens: list[int]) -> list[Request]:
        touched = []
        now = time.monotonic()
        for sched, token in zip(handle.rows, tokens, strict=True):
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
        return RequestOutput(req.request_id, req.prompt, req.prompt_token_ids, [completion], req.finished,
                             req.metrics, error=req.error)  # fmt: skip

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
