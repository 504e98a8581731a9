"""``tessera bench throughput --profile-host``: host microseconds per engine step, by phase.

While a :class:`HostProfile` is active the engine's step functions are wrapped with timers
(restored on exit, so an engine outside the profile pays nothing):

- ``schedule``: the scheduler picking the step's requests and tokens;
- ``inputs``: the flat host batch and its copy to the device;
- ``forward``: launching the model forward (eager or a graph replay; on a device that computes
  synchronously, such as the CPU, the compute too);
- ``sampling``: lm_head, sampling inputs and the sample op, the host copy of the tokens launched;
- ``wait``: waiting for a step's tokens to reach the host (device time the host did not hide);
- ``outputs``: recording the tokens, stop checks, finishing requests;
- ``detokenize``: building each step's RequestOutputs, the incremental detokenization in them;
- ``other``: the rest of ``LLMEngine.step`` and the ``generate`` loop around it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager

PHASES = ("schedule", "inputs", "forward", "sampling", "wait", "outputs", "detokenize")
#: (module, function name, phase) of module-level functions the model runner calls
RUNNER_FUNCTIONS = (
    ("tessera.engine.model_runner", "build_host_batch", "inputs"),
    ("tessera.engine.model_runner", "batch_to_device", "inputs"),
    ("tessera.engine.model_runner", "prompt_logprobs", "sampling"),
    ("tessera.engine.model_runner", "feature_tensors", "sampling"),
    ("tessera.engine.model_runner", "mask_stops", "sampling"),
    ("tessera.engine.model_runner", "sampling_tensors", "sampling"),
)


class HostProfile:
    """``with HostProfile(engine) as prof: ...`` then ``prof.report()``."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seconds: dict[str, float] = defaultdict(float)
        self.steps = 0
        self._depth = 0
        self._stack = ExitStack()

    def _timed(self, fn, phase: str):
        def wrapper(*args, **kwargs):
            if self._depth:  # nested inside another timed phase: counted there
                return fn(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start
                self._depth -= 1

        return wrapper

    def _step(self, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds["step"] += time.perf_counter() - start
                self.steps += 1

        return wrapper

    @contextmanager
    def _patched(self, owner, name: str, make):
        original = getattr(owner, name)
        setattr(owner, name, make(original))
        try:
            yield
        finally:
            if isinstance(owner, type) or not hasattr(type(owner), name):
                setattr(owner, name, original)
            else:  # an instance attribute over a method: removing it brings the method back
                delattr(owner, name)

    def __enter__(self) -> HostProfile:
        import importlib

        from tessera.engine.model_runner import StepHandle

        engine, runner = self.engine, self.engine.runner
        enter = self._stack.enter_context
        for module, name, phase in RUNNER_FUNCTIONS:
            enter(self._patched(importlib.import_module(module), name, lambda f, p=phase: self._timed(f, p)))
        enter(self._patched(engine.scheduler, "schedule", lambda f: self._timed(f, "schedule")))
        enter(self._patched(runner, "forward", lambda f: self._timed(f, "forward")))
        if runner.graphs is not None:
            enter(self._patched(runner.graphs, "run", lambda f: self._timed(f, "forward")))
        enter(self._patched(runner.model, "compute_logits", lambda f: self._timed(f, "sampling")))
        enter(self._patched(runner, "sampler", lambda f: self._timed(f, "sampling")))
        enter(self._patched(StepHandle, "tokens", lambda f: self._timed(f, "wait")))
        enter(self._patched(engine, "_process", lambda f: self._timed(f, "outputs")))
        enter(self._patched(engine, "_output", lambda f: self._timed(f, "detokenize")))
        enter(self._patched(engine, "step", self._step))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def report(self, wall_seconds: float) -> dict:
        """Per-step microseconds of each phase, ``other`` (the rest of the wall time) and the step count."""
        steps = max(self.steps, 1)
        per_step = {p: 1e6 * self.seconds[p] / steps for p in PHASES}
        per_step["other"] = 1e6 * max(wall_seconds - sum(self.seconds[p] for p in PHASES), 0.0) / steps
        host = sum(v for k, v in per_step.items() if k not in ("wait", "forward"))
        return {"steps": self.steps, "us_per_step": per_step, "host_us_per_step": host,
                "step_us": 1e6 * wall_seconds / steps}  # fmt: skip
