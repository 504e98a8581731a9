"""Tensor parallelism across hosts: ranks started by torchrun (or by hand with its variables).

With ``WORLD_SIZE`` > 1 in the environment (and ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``LOCAL_RANK``),
every process is one rank of one engine: rank 0 is the driver (scheduler, KV manager, the engine's API) and
runs its own shard; ranks > 0 run :func:`serve_rank`, the step executor a spawned worker runs. Pipes cannot
cross hosts, so everything goes through torch.distributed itself:

- the rendezvous store (hosted by rank 0, or by torchrun's agent) carries the engine config once, each
  worker's heartbeat, and the cause a worker posts before it exits;
- each step rank 0 broadcasts the step message (:mod:`tessera.engine.step_codec`: msgpack bytes in a uint8
  tensor; no pickle, no tensors) over a gloo group of its own, then all ranks run the step; rank 0's
  sampled tokens are broadcast so the ranks never drift apart.

A worker that dies or fails makes the driver raise :class:`WorkerError` naming the rank: a collective with
a dead peer fails, and the driver reads which rank posted an error or stopped beating.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import threading
import time
import traceback

import torch

from tessera.distributed import Rendezvous, join_group, make_store
from tessera.engine.step_codec import StepDecoder, StepEncoder, decode, encode
from tessera.errors import ConfigError, WorkerError

log = logging.getLogger("tessera.engine")

HEARTBEAT_S = 0.5
#: a worker whose heartbeat has not moved for this long is taken for dead
STALE_S = 5.0
#: a serving worker may wait for the next request for a long time
CONTROL_TIMEOUT = datetime.timedelta(days=30)
ENGINE_KEY = "tessera/engine"


#: set by the ``tessera`` command when it starts under torchrun: its engine then drives the launched ranks
#: whatever ``tensor_parallel_size`` says; an engine made in a user's program drives them only when asked
#: for ``tensor_parallel_size`` > 1 (a data-parallel script under torchrun keeps one engine per rank)
CLI_LAUNCH = False


def launched_rank(env=None) -> Rendezvous | None:
    """This process's place in a torchrun launch of more than one rank, else None."""
    where = Rendezvous.from_env(env)
    return where if where is not None and where.world_size > 1 else None


class ControlChannel:
    """Messages from rank 0 to every rank: a length, then the bytes, broadcast over a gloo group."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)

    def send(self, message: dict) -> None:
        data = torch.frombuffer(bytearray(encode(message)), dtype=torch.uint8)
        self.dist.broadcast(torch.tensor([data.numel()], dtype=torch.int64), src=0, group=self.group)
        self.dist.broadcast(data, src=0, group=self.group)

    def receive(self) -> dict:
        n = torch.zeros(1, dtype=torch.int64)
        self.dist.broadcast(n, src=0, group=self.group)
        data = torch.empty(int(n), dtype=torch.uint8)
        self.dist.broadcast(data, src=0, group=self.group)
        return decode(data.numpy().tobytes())


def _beat_key(rank: int) -> str:
    return f"tessera/beat/{rank}"


def _error_key(rank: int) -> str:
    return f"tessera/error/{rank}"


def heartbeat(where: Rendezvous) -> threading.Thread:
    """A daemon thread that counts up this rank's heartbeat in the store (on a connection of its own)."""

    def beat() -> None:
        try:
            store, n = make_store(where, client=True), 0
            while True:
                store.set(_beat_key(where.rank), str(n))
                n += 1
                time.sleep(HEARTBEAT_S)
        except Exception:  # noqa: BLE001, S110 - the store is gone: the driver has ended
            return

    thread = threading.Thread(target=beat, name="tessera-heartbeat", daemon=True)
    thread.start()
    return thread


def failed_rank(store, world: int, wait_s: float = 2 * STALE_S) -> tuple[int, str] | None:
    """(rank, cause) of a worker that posted an error or whose heartbeat stopped within ``wait_s``, else None."""

    def beats() -> dict[int, bytes | None]:
        return {r: store.get(_beat_key(r)) if store.check([_beat_key(r)]) else None for r in range(1, world)}

    first, start = beats(), time.monotonic()
    while True:
        for rank in range(1, world):
            if store.check([_error_key(rank)]):
                return rank, store.get(_error_key(rank)).decode()
        elapsed = time.monotonic() - start
        if elapsed >= STALE_S:
            now = beats()
            stale = [r for r in range(1, world) if now[r] == first[r]]
            if stale:
                return stale[0], f"its heartbeat stopped for {STALE_S:.0f} s: the process died or hangs"
        if elapsed > wait_s:
            return None
        time.sleep(HEARTBEAT_S)


def serve_rank(where: Rendezvous) -> None:
    """Rank ``where.rank`` > 0: take the engine config from the store, build the shard, run steps until told to stop."""
    import torch.distributed as dist

    from tessera.config import EngineConfig
    from tessera.engine.tp_worker import place_rank, run_step, shard_runner
    from tessera.platform import dtype_from_name

    store = make_store(where)
    try:
        heartbeat(where)
        engine = decode(store.get(ENGINE_KEY))
        platform, config = place_rank(EngineConfig.model_validate(engine["config"]), where.world_size, where)
        join_group(platform, where, config.device_index, store)
        control = ControlChannel()
        runner = shard_runner(config, platform, where.rank, where.world_size, dtype_from_name(engine["dtype"]),
                              engine["max_model_len"])  # fmt: skip
        decoder, prev = StepDecoder(), None
        while (message := control.receive())["op"] != "stop":
            prev, _ = run_step(runner, decoder, message, prev)
        dist.barrier(group=control.group)
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - the cause goes to the driver through the store, then the rank ends
        log.error("tensor-parallel rank %d failed:\n%s", where.rank, traceback.format_exc())
        try:
            store.set(_error_key(where.rank), f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001, S110 - the driver may be gone already
            pass
        os._exit(1)


class TorchrunDriver:
    """Rank 0 of a torchrun launch: the model runner of its own shard, telling the other ranks each step."""

    def __init__(self, config, spec, platform, dtype, max_model_len: int, where: Rendezvous) -> None:
        from tessera.engine.tp_worker import place_rank, shard_runner
        from tessera.models.sharding import check_tensor_parallel
        from tessera.platform import dtype_name

        world = where.world_size
        if config.tensor_parallel_size not in (1, world):
            raise ConfigError(f"tensor_parallel_size={config.tensor_parallel_size} but torchrun started {world} "
                              f"ranks (WORLD_SIZE); leave it out or make it {world}")  # fmt: skip
        config = config.model_copy(update={"tensor_parallel_size": world})
        check_tensor_parallel(
            spec, platform, config, local_ranks=int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        )
        self.world, self.failure, self.closed = world, None, False
        self.store = make_store(where)
        self.store.set(ENGINE_KEY, encode({"config": config.model_dump(mode="json"), "dtype": dtype_name(dtype),
                                           "max_model_len": max_model_len}))  # fmt: skip
        platform, config = place_rank(config, world, where)
        try:
            join_group(platform, where, config.device_index, self.store)
            self.control = ControlChannel()
            self.runner = shard_runner(config, platform, 0, world, dtype, max_model_len)
        except RuntimeError as exc:
            raise self._fail(exc) from None
        self.encoder = StepEncoder()
        atexit.register(self.shutdown)
        log.info("tensor parallel: rank 0 of %d (torchrun) on %s ready", world, platform.name)

    def __getattr__(self, name: str):  # plan, model, ctx, ...: the local shard's
        if name == "runner":
            raise AttributeError(name)
        return getattr(self.runner, name)

    def _fail(self, exc: BaseException) -> WorkerError:
        if self.failure is None:
            found = failed_rank(self.store, self.world)
            rank, cause = (
                found if found else (-1, f"a collective failed ({exc}) while every rank still beats")
            )
            self.failure = WorkerError(rank, cause)
            log.error("%s", self.failure)
        return self.failure

    def execute(self, out, prev):
        import torch.distributed as dist

        if self.failure is not None:
            raise self.failure
        message = self.encoder.message(out, use_prev=prev is not None)
        try:
            self.control.send(message)
            handle = self.runner.execute(out, prev)
            if handle.sampled is not None:
                dist.broadcast(handle.sampled, src=0)
        except RuntimeError as exc:  # a peer is gone (gloo: connection closed): find which
            raise self._fail(exc) from None
        return handle

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        import torch.distributed as dist

        if self.failure is None:
            try:
                self.control.send({"op": "stop"})
                dist.barrier(group=self.control.group)  # every rank got it before the store here goes away
            except RuntimeError:
                pass
        if dist.is_initialized():
            dist.destroy_process_group()
