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

from tessera.config import EngineConfig, run_dtype
from tessera.discovery import select_platform
from tessera.engine import request_outputs as ro
from tessera.engine.admission import Limits, prepare
from tessera.engine.generation_config import default_values, eos_token_ids, read_generation_config
from tessera.engine.heap import freeze_heap, release_heap
from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.model_runner import StepHandle
from tessera.engine.request import Request
from tessera.engine.sampling_inputs import token_seed
from tessera.engine.scheduler import ScheduledRequest, Scheduler, SchedulerOutput
from tessera.engine.stopping import stop_reason
from tessera.engine.tp_runner import make_runner
from tessera.errors import ConfigError, WorkerError, step_error
from tessera.models.spec import ModelSpec
from tessera.outputs import CompletionOutput, RequestMetrics, RequestOutput
from tessera.platform import dtype_from_name
from tessera.sampling_params import SamplingParams
from tessera.tokenizer import IncrementalDetokenizer, load_tokenizer

log = logging.getLogger("tessera.engine")


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        release_heap()  # an earlier engine's frozen heap, collectable before this one takes memory
        self.config = config
        self.spec = ModelSpec.from_dir(config.model)
        from tessera.models.architectures import model_class

        model_class(self.spec)  # unsupported architectures fail before any device work
        self.platform = select_platform(config.platform)
        caps = self.platform.capabilities(config.device_index)
        self.dtype = dtype_from_name(run_dtype(config.dtype, self.spec.torch_dtype, caps.dtypes))
        self.max_model_len = self._max_model_len()
        generation = read_generation_config(self.spec.path)
        self.eos_token_ids = eos_token_ids(self.spec.eos_token_ids, generation)
        self.eos_token_id = self.eos_token_ids[0] if self.eos_token_ids else None
        self.generation_defaults = default_values(generation)
        self.tokenizer = load_tokenizer(self.spec.path, self.eos_token_id)
        self.runner = make_runner(config, self.spec, self.platform, self.dtype, self.max_model_len)
        plan = self.runner.plan
        hybrid = plan.num_state_slots > 0
        if hybrid and config.enable_prefix_caching:
            log.info("prefix caching is off for this hybrid model: Mamba states are not cached per block")
        self.kv = KVCacheManager(plan.num_blocks, plan.block_size, config.enable_prefix_caching and not hybrid,
                                 config.prefix_hash, plan.num_state_slots - 1 if hybrid else 0)  # fmt: skip
        self.scheduler = Scheduler(self.kv, config.max_num_seqs, config.max_num_batched_tokens)
        self.limits = Limits(self.spec.path, self.spec.vocab_size, self.max_model_len, self.kv.pool.num_blocks,
                             self.kv.block_size, self.generation_defaults)  # fmt: skip
        self.requests: dict[str, Request] = {}
        self.families: dict[str, list[str]] = {}  # id the caller knows -> its n sibling requests' ids
        self.detok: dict[str, IncrementalDetokenizer] = {}
        self._prev: StepHandle | None = None
        self._aborted: list[Request] = []
        self._counter = 0
        freeze_heap()  # startup is done: full collections while serving walk only what serving creates

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
        """Validate and queue a request (``params.n`` sibling sequences); invalid input raises ConfigError here
        and leaves the engine untouched. Fields of ``params`` left unset take generation_config.json's values."""
        text, ids, params = prepare(prompt, params, self.limits, self.tokenizer)
        return self.add_prepared(text, ids, params, request_id)

    def add_prepared(self, text: str | None, ids: list[int], params: SamplingParams, request_id: str | None = None,
                     arrival_time: float | None = None) -> str:  # fmt: skip
        """Queue a request that :func:`~tessera.engine.admission.prepare` accepted (with these limits)."""
        request_id = request_id or self.new_request_id()
        if request_id in self.families:
            raise ConfigError(f"request id {request_id!r} is already in use")
        children = [self._child(request_id, i, ids, params, text) for i in range(params.n)]
        self.families[request_id] = [c.request_id for c in children]
        for child in children:
            if arrival_time is not None:
                child.metrics.arrival_time = arrival_time
            self.requests[child.request_id] = child
            self.detok[child.request_id] = IncrementalDetokenizer(self.tokenizer, params.skip_special_tokens)
            self.scheduler.add(child)
        return request_id

    def _child(self, parent_id: str, index: int, ids: list[int], params: SamplingParams, text) -> Request:
        """Completion ``index`` of a prompt; a seeded one gets its own seed per index (index 0 keeps it)."""
        update = {"n": 1}
        if params.seed is not None and index > 0:
            update["seed"] = token_seed(params.seed, -index) % (1 << 62)
        child = params.model_copy(update=update)
        rid = ro.child_id(parent_id, index, params.n)
        return Request(rid, ids, child, text, self.eos_token_ids, index=index, parent_id=parent_id)

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
        """Stop a request (all its n sequences) now; its blocks are freed and its output says "abort"."""
        for rid in self.families.get(request_id, []):
            request = self.requests.get(rid)
            if request is None or request.finished:
                continue
            self.scheduler.abort(request)
            request.finish_reason = "abort"
            request.metrics.finished_time = time.monotonic()
            self._aborted.append(request)

    def discard(self, request_id: str) -> None:
        """Abort a request and forget it without reporting an output (used to roll back a batch of additions)."""
        for rid in self.families.pop(request_id, []):
            request = self.requests.pop(rid, None)
            if request is not None:
                self.scheduler.abort(request)
                self.detok.pop(rid, None)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work() or self._prev is not None or bool(self._aborted)

    # -- stepping -----------------------------------------------------------------------
    def step(self, finished_only: bool = False, delta: bool = False) -> list[RequestOutput]:
        """Schedule and launch one step; return outputs of requests that progressed (one step behind when async).

        ``finished_only``: outputs only for prompts whose completions all finished (a caller that does
        not stream, such as ``LLM.generate``, then does not pay for building the others every step).
        ``delta``: outputs hold only what is new since the prompt's last one (text, token ids, logprobs;
        prompt logprobs once), at a cost independent of the output so far (what the engine core streams).

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
        rows = [r for r in failed + touched + aborted if r.finished or not finished_only]
        parents = list(dict.fromkeys(r.parent_id for r in rows))
        if finished_only:  # prompts whose every completion finished (so one of them finished in this step)
            parents = [p for p in parents if all(self.requests[r].finished for r in self.families.get(p, ()))]
        return [self._output(p, delta) for p in parents if p in self.families]

    def _launch(self, sched: SchedulerOutput) -> tuple[StepHandle | None, list[Request]]:
        """Run one scheduled step: (its handle, []) or, when it raises, (None, the requests failed)."""
        now = time.monotonic()
        for s in sched.scheduled:
            s.request.metrics.first_scheduled_time = s.request.metrics.first_scheduled_time or now
        try:
            handle = self.runner.execute(sched, self._prev if self.config.async_scheduling else None)
        except WorkerError:
            raise  # a dead worker ends the engine, not one step
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failed step fails its requests, not the engine
            return None, self._fail(sched.scheduled, step_error(exc))
        for s in handle.rows:
            s.request.num_pending += 1
        return handle, []

    def _collect(self, handle: StepHandle, in_flight: StepHandle | None) -> list[Request]:
        """Read a step's tokens and process them; a read that raises fails the step (and its consumers)."""
        try:
            tokens = handle.tokens()
        except WorkerError:
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            exc = step_error(exc)
            rows = list(handle.rows)
            if in_flight is not None:
                ids = {s.request.request_id for s in rows}
                rows += [s for s in in_flight.rows if s.request.request_id in ids]
            return self._fail(rows, exc)
        for rid, entries in (handle.prompt_logprobs or {}).items():
            req = self.requests.get(rid)
            if req is not None and req.prompt_logprobs is not None:
                ro.record_prompt_logprobs(req, entries, self.tokenizer)
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
        lp = handle.logprob_rows()
        for row, (sched, token) in enumerate(zip(handle.rows, tokens, strict=True)):
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
            if lp and req.logprobs is not None:
                ro.record_logprobs(req, tuple(x[row] for x in lp), self.tokenizer)
            reason = stop_reason(req, token)
            if (
                reason != "stop"
                and req.params.stop
                and ro.stop_on_string(
                    req, self.detok[req.request_id], search=len(req.output_token_ids) >= req.params.min_tokens
                )
            ):
                reason = "stop"
            if reason:
                req.finish_reason = reason
                req.metrics.finished_time = now
                self.scheduler.finish(req)
            touched.append(req)
        return touched

    def _output(self, parent_id: str, delta: bool = False) -> RequestOutput:
        build = ro.request_delta if delta else ro.request_output
        return build([self.requests[rid] for rid in self.families[parent_id]], self.detok)

    def release(self, request_id: str) -> None:
        """Forget a finished request (its output was delivered)."""
        children = [self.requests.get(rid) for rid in self.families.get(request_id, [])]
        if children and all(c is not None and c.finished for c in children):
            del self.families[request_id]
            for c in children:
                del self.requests[c.request_id], self.detok[c.request_id]

    @property
    def stats(self) -> dict:
        return {"prefix_queries": self.kv.prefix_queries, "prefix_hits": self.kv.prefix_hits,
                "preemptions": self.scheduler.num_preemptions, "num_blocks": self.kv.pool.num_blocks,
                "free_blocks": self.kv.pool.num_free}  # fmt: skip
