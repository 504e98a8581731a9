"""The driver's side of tensor parallelism: N worker processes, one per device, behind the model runner's API.

The engine keeps the scheduler and the KV manager; :class:`ParallelRunner` starts the workers
(spawned, see :mod:`tessera.engine.tp_worker`), sends each step's batch to every worker over its pipe
(msgpack bytes, no pickle) and reads rank 0's sampled tokens when the engine asks for them (one step
behind under async scheduling). It watches every worker's pipe and process: a worker that exits, is
killed, or reports an exception ends the engine with a :class:`WorkerError` naming the rank and the
cause within a poll interval, never a hang. The remaining workers are then stopped.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from multiprocessing.connection import wait

from tessera.config import EngineConfig
from tessera.engine.cache_plan import CachePlan
from tessera.engine.step_codec import StepEncoder, decode, encode
from tessera.errors import WorkerError
from tessera.platform import dtype_name

log = logging.getLogger("tessera.engine")

#: how long the workers may take to load the model and size their caches
STARTUP_TIMEOUT_S = 600.0
POLL_S = 0.5


def make_runner(config: EngineConfig, spec, platform, dtype, max_model_len: int):
    """The model runner in this process, or (``tensor_parallel_size > 1``) the workers: the size is checked
    against the model and the platform before any worker starts. Under torchrun (``WORLD_SIZE`` > 1), when
    ``tensor_parallel_size`` > 1 or the ``tessera`` command launched it, rank 0 drives the launched ranks and a
    rank > 0 serves the driver's steps here until it stops, then exits."""
    from tessera.engine import tp_launch
    from tessera.engine.model_runner import ModelRunner
    from tessera.engine.tp_launch import TorchrunDriver, launched_rank, serve_rank
    from tessera.models.sharding import check_tensor_parallel

    where = launched_rank()
    if where is not None and (config.tensor_parallel_size > 1 or tp_launch.CLI_LAUNCH):
        if where.rank > 0:
            serve_rank(where)
            raise SystemExit(0)
        return TorchrunDriver(config, spec, platform, dtype, max_model_len, where)
    if config.tensor_parallel_size == 1:
        return ModelRunner(config, spec, platform, dtype, max_model_len)
    check_tensor_parallel(spec, platform, config)
    return ParallelRunner(config, spec, platform, dtype, max_model_len)


class ParallelHandle:
    """One launched step: rows as the engine knows them; tokens read from rank 0 when asked."""

    def __init__(self, runner: ParallelRunner, step: int, rows: list) -> None:
        self.runner, self.step, self.rows = runner, step, rows
        self.sampled = None
        self._reply: dict | None = None

    def _read(self) -> dict:
        if self._reply is None:
            self._reply = self.runner.result(self.step)
        return self._reply

    def tokens(self) -> list[int]:
        return self._read()["tokens"]

    def logprob_rows(self):
        lp = self._read()["logprobs"]
        return None if lp is None else tuple(lp)

    @property
    def prompt_logprobs(self):
        return self._read()["prompt_logprobs"]

    def row_of(self) -> dict[str, int]:
        return {s.request.request_id: i for i, s in enumerate(self.rows)}


class ParallelRunner:
    def __init__(self, config: EngineConfig, spec, platform, dtype, max_model_len: int) -> None:
        from tessera.distributed import free_port
        from tessera.engine.tp_worker import worker_main

        self.config, self.spec, self.platform, self.dtype = config, spec, platform, dtype
        self.world = config.tensor_parallel_size
        self.device = platform.torch_device(config.device_index)
        self.model, self.graphs, self.ctx = None, None, None
        ctx = mp.get_context("spawn")
        port, self.conns, self.procs = free_port(), [], []
        for rank in range(self.world):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, name=f"tessera-tp-{rank}", daemon=True,
                               args=(rank, self.world, port, config.model_dump(), dtype_name(dtype), max_model_len, child))  # fmt: skip
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.encoder = StepEncoder()
        self.replies: dict[int, dict] = {}
        self.failure: WorkerError | None = None
        ready = self._wait_ready()
        self.plan = CachePlan(**ready[0]["plan"])
        log.info("tensor parallel: %d workers on %s ready", self.world, platform.name)

    # -- health --------------------------------------------------------------------------
    def _fail(self, rank: int, cause: str) -> WorkerError:
        if self.failure is None:
            self.failure = WorkerError(rank, cause)
            log.error("%s; stopping the other workers", self.failure)
            self.shutdown()
        return self.failure

    def _exit_cause(self, rank: int) -> str:
        code = self.procs[rank].exitcode
        if code is not None and code < 0:
            try:
                return f"the process was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"the process was killed by signal {-code}"
        return f"the process exited with code {code}"

    def _receive(self, timeout: float) -> list[tuple[int, dict]]:
        """Messages that arrived from any rank; raises WorkerError for a rank that failed or died."""
        if self.failure is not None:
            raise self.failure
        sentinels = {p.sentinel: r for r, p in enumerate(self.procs)}
        conns = {id(c): r for r, c in enumerate(self.conns)}
        got = []
        for ready in wait(list(self.conns) + list(sentinels), timeout=timeout):
            if ready in sentinels:
                continue
            rank = conns[id(ready)]
            try:
                message = decode(ready.recv_bytes())
            except (EOFError, OSError):
                self.procs[rank].join(timeout=2.0)
                raise self._fail(rank, self._exit_cause(rank)) from None
            if message["op"] == "error":
                raise self._fail(rank, message["error"])
            got.append((rank, message))
        for rank, proc in enumerate(self.procs):
            if proc.exitcode is not None and not got:
                raise self._fail(rank, self._exit_cause(rank))
        return got

    def _wait_ready(self) -> list[dict]:
        ready, deadline = {}, time.monotonic() + STARTUP_TIMEOUT_S
        while len(ready) < self.world:
            if time.monotonic() > deadline:
                raise self._fail(
                    min(set(range(self.world)) - set(ready)), f"not ready after {STARTUP_TIMEOUT_S:.0f} s"
                )
            for rank, message in self._receive(POLL_S):
                ready[rank] = message
        return [ready[r] for r in range(self.world)]

    # -- steps ---------------------------------------------------------------------------
    def execute(self, out, prev) -> ParallelHandle:
        if self.failure is not None:
            raise self.failure
        message = self.encoder.message(out, use_prev=prev is not None)
        data = encode(message)
        for rank, conn in enumerate(self.conns):
            try:
                conn.send_bytes(data)
            except (BrokenPipeError, OSError):
                self.procs[rank].join(timeout=2.0)
                raise self._fail(rank, self._exit_cause(rank)) from None
        rows = [s for s in sorted(out.scheduled, key=lambda s: not s.is_decode) if s.samples]
        return ParallelHandle(self, message["step"], rows)

    def result(self, step: int) -> dict:
        while step not in self.replies:
            for _rank, message in self._receive(POLL_S):
                self.replies[message["step"]] = message
        return self.replies.pop(step)

    def shutdown(self) -> None:
        for conn in self.conns:
            try:
                conn.send_bytes(encode({"op": "stop"}))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2.0)
        for conn in self.conns:
            conn.close()

    def __del__(self) -> None:
        procs = getattr(self, "procs", [])
        for proc in procs:
            if proc.is_alive():
                proc.kill()
