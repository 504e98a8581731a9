"""A tensor-parallel worker: one process per rank, one device each, a model runner over its shard.

The driver (the engine's process) starts the workers with :func:`worker_main` (spawned) or the
ranks of a torchrun launch run :func:`serve_steps` themselves. Each joins the process group on the
platform's backend, loads its slice of the model, agrees with the others on the number of KV blocks,
and then runs the steps the driver sends: the scheduled batch as a delta message, rebuilt into a
:class:`SchedulerOutput` by :class:`StepDecoder`. Every rank samples the same tokens (rank 0's are
broadcast so the ranks never drift apart); rank 0 sends them back. A rank that fails sends the cause
and exits, so the driver can name it.
"""

from __future__ import annotations

import os
import traceback

import torch

from tessera.engine.step_codec import StepDecoder, decode, encode


def agree_on_blocks(runner, config):
    """Every rank's cache plan with the smallest number of KV blocks any rank can hold."""
    import torch.distributed as dist

    from tessera.engine.cache_plan import plan_caches

    n = torch.tensor([runner.plan.num_blocks], dtype=torch.int64, device=runner.device)
    dist.all_reduce(n, op=dist.ReduceOp.MIN)
    if int(n) != runner.plan.num_blocks:
        runner.plan = plan_caches(runner.parts, config.model_copy(update={"num_kv_blocks": int(n)}))
    return runner.plan


def place_rank(config, world: int, where):
    """This rank's platform and config (its device: the shared one, or ``device_index + LOCAL_RANK``)."""
    from tessera.discovery import select_platform

    platform = select_platform(config.platform)
    shared = platform.capabilities(config.device_index).ranks_share_device
    if shared:  # ranks share the host's cores: each takes its part
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(world, 1)))
    device_index = config.device_index if shared else config.device_index + where.local_rank
    return platform, config.model_copy(update={"device_index": device_index})


def shard_runner(config, platform, rank: int, world: int, dtype, max_model_len: int):
    """The model runner over this rank's shard, its KV blocks agreed with the other ranks (all ranks call it)."""
    from tessera.engine.model_runner import ModelRunner
    from tessera.models.spec import ModelSpec
    from tessera.pluggable_layers.parallelism import Parallelism

    parallel = Parallelism(rank=rank, world_size=world, expert_parallel=config.enable_expert_parallel)
    runner = ModelRunner(
        config, ModelSpec.from_dir(config.model), platform, dtype, max_model_len, parallel=parallel
    )
    agree_on_blocks(runner, config)
    return runner


def build_runner(config_data: dict, rank: int, world: int, where, dtype_name: str, max_model_len: int):
    from tessera.config import EngineConfig
    from tessera.distributed import join_group
    from tessera.platform import dtype_from_name

    platform, config = place_rank(EngineConfig(**config_data), world, where)
    join_group(platform, where, config.device_index)
    return shard_runner(config, platform, rank, world, dtype_from_name(dtype_name), max_model_len)


def run_step(runner, decoder: StepDecoder, message: dict, prev):
    """One step on this rank: (its handle, the reply rank 0 sends)."""
    import torch.distributed as dist

    handle = runner.execute(decoder.apply(message), prev if message["use_prev"] else None)
    if handle.sampled is not None:
        dist.broadcast(handle.sampled, src=0)
    reply = {"op": "tokens", "step": message["step"], "tokens": handle.tokens(), "logprobs": None,
             "prompt_logprobs": handle.prompt_logprobs}  # fmt: skip
    lp = handle.logprob_rows()
    if lp is not None:
        reply["logprobs"] = list(lp)
    return handle, reply


def plan_message(rank: int, plan) -> dict:
    return {"op": "ready", "rank": rank, "plan": {"num_blocks": plan.num_blocks, "block_size": plan.block_size,
            "num_state_slots": plan.num_state_slots, "bytes_per_block": plan.bytes_per_block,
            "state_bytes": plan.state_bytes, "budget_bytes": plan.budget_bytes}}  # fmt: skip


def worker_main(
    rank: int, world: int, port: int, config_data: dict, dtype_name: str, max_model_len: int, conn
) -> None:
    """The spawned worker process of ``rank``: build, report ready, then serve steps until told to stop."""
    from tessera.distributed import Rendezvous

    try:
        runner = build_runner(config_data, rank, world, Rendezvous("127.0.0.1", port, rank, world, rank), dtype_name,
                              max_model_len)  # fmt: skip
        conn.send_bytes(encode(plan_message(rank, runner.plan)))
        decoder, prev = StepDecoder(), None
        while True:
            try:
                message = decode(conn.recv_bytes())
            except (EOFError, OSError):  # the driver is gone
                return
            if message["op"] == "stop":
                return
            prev, reply = run_step(runner, decoder, message, prev)
            if rank == 0:
                conn.send_bytes(encode(reply))
    except BaseException as exc:  # noqa: BLE001 - the cause goes to the driver, then the process ends
        cause = f"{type(exc).__name__}: {exc}"
        try:
            conn.send_bytes(
                encode({"op": "error", "rank": rank, "error": cause, "trace": traceback.format_exc()})
            )
        except Exception:  # noqa: BLE001, S110 - the driver may be gone already
            pass
        os._exit(1)
