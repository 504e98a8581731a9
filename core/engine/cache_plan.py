"""Sizing and allocating the KV cache and Mamba state pools from one memory budget.

On devices with memory queries the budget is measured: after the weights are
loaded a profiling forward over ``max_num_batched_tokens`` tokens records the
activation peak; the cache gets ``total * gpu_memory_utilization`` minus what is
in use and the activation headroom. With ``kv_cache_bytes``, or where the platform
gives a default budget (``Platform.default_cache_bytes``: the CPU), the budget is
given. Mamba layers take one state slot per schedulable sequence (plus one spare);
attention layers share the rest as KV blocks, no more than ``max_num_seqs``
full-length sequences need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from tessera.config import EngineConfig
from tessera.engine.runner_parts import RunnerParts
from tessera.errors import ConfigError
from tessera.pluggable_layers.batch import AttentionMetadata, BatchMetadata, MambaMetadata

log = logging.getLogger("tessera.engine")


@dataclass
class CachePlan:
    num_blocks: int
    block_size: int
    num_state_slots: int
    bytes_per_block: int
    state_bytes: int
    budget_bytes: int


def bytes_per_block(runner: RunnerParts, block_size: int) -> int:
    itemsize = torch.tensor([], dtype=runner.dtype).element_size()
    return sum(
        2 * block_size * a.num_kv_heads * a.head_dim * itemsize for a in runner.model.attention_layers()
    )


def state_bytes_per_slot(runner: RunnerParts) -> int:
    """Bytes of one Mamba state slot over every Mamba layer (reads ``runner.model`` and ``runner.dtype``)."""
    itemsize = torch.tensor([], dtype=runner.dtype).element_size()
    total = 0
    for m in runner.model.mamba_layers():
        s = m.shape
        total += s.conv_dim * (s.conv_kernel - 1) * itemsize + s.num_heads * s.head_dim * s.state_size * 4
    return total


def profile_budget(runner: RunnerParts, config: EngineConfig) -> int:
    """Bytes available for caches, measured around a profiling forward (devices with memory queries)."""
    platform, index = runner.platform, config.device_index
    tokens = min(config.max_num_batched_tokens, 8192)
    runner.platform.synchronize(index)
    platform.reset_peak_memory(index)
    before = platform.peak_memory(index)
    dummy_forward(runner, tokens, config.max_num_seqs)
    platform.synchronize(index)
    activation_peak = max(platform.peak_memory(index) - before, 0)
    platform.empty_cache()
    free, total = platform.mem_get_info(index)
    reserve = total * (1.0 - config.gpu_memory_utilization)
    return int(free - reserve - activation_peak)


def dummy_forward(runner: RunnerParts, tokens: int, logit_rows: int) -> None:
    """One prefill of ``tokens`` tokens against throwaway caches, logits for ``logit_rows`` rows. The tokens are
    split into sequences of at most ``max_model_len``: no position past the model's (a rotary table or a
    kernel indexing by position would read out of bounds)."""
    device, bs = runner.device, 16
    longest = max(1, min(tokens, runner.max_model_len))
    lengths = [longest] * (tokens // longest) + ([tokens % longest] if tokens % longest else [])
    per_seq = -(-longest // bs)
    blocks = per_seq * len(lengths) + 1
    saved = [(a, a.kv_cache) for a in runner.model.attention_layers()] + [
        (m, m.state) for m in runner.model.mamba_layers()
    ]
    for a in runner.model.attention_layers():
        shape = a.cache_shape(blocks, bs)
        a.kv_cache = (
            torch.zeros(shape, dtype=runner.dtype, device=device),
            torch.zeros(shape, dtype=runner.dtype, device=device),
        )
    for m in runner.model.mamba_layers():
        m.state = allocate_state(m, len(lengths), runner.dtype, device)
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    qsl = torch.tensor(starts, dtype=torch.int32, device=device)
    positions = torch.cat([torch.arange(n) for n in lengths])
    # sequence i holds blocks [i * per_seq, (i + 1) * per_seq): token j of it is slot i * per_seq * bs + j
    offsets = torch.repeat_interleave(torch.arange(len(lengths)) * per_seq * bs, torch.tensor(lengths))
    meta = BatchMetadata(
        tokens,
        AttentionMetadata(
            (offsets + positions).to(device),
            qsl,
            torch.tensor(lengths, dtype=torch.int32, device=device),
            torch.arange(per_seq * len(lengths), dtype=torch.int32, device=device).view(
                len(lengths), per_seq
            ),
        ),  # fmt: skip
        MambaMetadata(
            qsl,
            torch.arange(len(lengths), dtype=torch.int32, device=device),
            torch.zeros(len(lengths), dtype=torch.bool, device=device),
            0,
        ),
    )
    ids = torch.zeros(tokens, dtype=torch.int64, device=device)
    hidden = runner.forward(ids, positions.to(device), meta)
    runner.model.compute_logits(hidden[-min(tokens, logit_rows) :])
    for module, value in saved:
        if hasattr(module, "kv_cache"):
            module.kv_cache = value
        else:
            module.state = value


def allocate_state(mixer, slots: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    s = mixer.shape
    conv = torch.zeros(slots, s.conv_dim, s.conv_kernel - 1, dtype=dtype, device=device)
    ssm = torch.zeros(slots, s.num_heads, s.head_dim, s.state_size, dtype=torch.float32, device=device)
    return conv, ssm


def plan_caches(runner: RunnerParts, config: EngineConfig) -> CachePlan:
    """Size the KV blocks and Mamba state slots from one budget and bind the caches to the model's layers."""
    bs = config.block_size
    per_block = bytes_per_block(runner, bs)
    mambas = runner.model.mamba_layers()
    slots = config.max_num_seqs + 1 if mambas else 0
    state = slots * state_bytes_per_slot(runner)
    if config.kv_cache_bytes is not None:
        budget = config.kv_cache_bytes
    elif (default := runner.platform.default_cache_bytes(config.device_index)) is not None:
        budget = default
    else:
        budget = profile_budget(runner, config)
    max_len = runner.max_model_len
    wanted = config.max_num_seqs * -(-max_len // bs) + 1
    if config.num_kv_blocks is not None:
        num_blocks = config.num_kv_blocks
    elif per_block == 0:
        num_blocks = 1
    else:
        num_blocks = min(wanted, (budget - state) // per_block)
    if num_blocks < 1 or budget < state:
        raise ConfigError(
            f"the cache budget ({budget / 2**20:.0f} MiB) cannot hold the Mamba states ({state / 2**20:.0f} MiB) and one "
            "KV block; lower max_num_seqs, or raise gpu_memory_utilization / kv_cache_bytes"
        )
    for a in runner.model.attention_layers():
        shape = a.cache_shape(num_blocks, bs)
        a.kv_cache = (torch.zeros(shape, dtype=runner.dtype, device=runner.device),
                      torch.zeros(shape, dtype=runner.dtype, device=runner.device))  # fmt: skip
    for m in mambas:
        m.state = allocate_state(m, slots, runner.dtype, runner.device)
    log.info("cache: %d blocks of %d tokens (%.1f MiB), %d state slots (%.1f MiB)", num_blocks, bs,
             num_blocks * per_block / 2**20, slots, state / 2**20)  # fmt: skip
    return CachePlan(num_blocks, bs, slots, per_block, state, budget)
