"""The flat batch of one step, built on the host from the scheduler's output.

Sequences are ordered decode-first (the Mamba kernels serve the leading one-token
sequences with their decode path). Tokens whose id is still on the device (async
scheduling: last step's sampled token) are marked for a gather from that step's
output instead of a host value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.engine.scheduler import ScheduledRequest, SchedulerOutput
from tessera.pluggable_layers.batch import AttentionMetadata, BatchMetadata, MambaMetadata


@dataclass
class HostBatch:
    order: list[ScheduledRequest]
    input_ids: list[int]
    pending_positions: list[int]  # flat token indices whose id comes from the previous step's samples
    pending_rows: list[int]  # row of that token in the previous step's sampled tensor
    positions: list[int]
    slot_mapping: list[int]
    query_start_loc: list[int]
    seq_lens: list[int]
    block_tables: list[list[int]]
    state_indices: list[int]
    has_initial_state: list[bool]
    num_decodes: int
    sample_token_index: list[int]  # flat index of the last token of each sampling request
    sample_requests: list[ScheduledRequest]


def build_host_batch(out: SchedulerOutput, block_size: int, prev_rows: dict[str, int]) -> HostBatch:
    order = sorted(out.scheduled, key=lambda s: not s.is_decode)
    b = HostBatch(order, [], [], [], [], [], [0], [], [], [], [], 0, [], [])
    for sched in order:
        req = sched.request
        known = req.all_token_ids
        for p in range(sched.start, sched.start + sched.num_tokens):
            if p < len(known):
                b.input_ids.append(known[p])
            else:
                b.pending_positions.append(len(b.input_ids))
                b.pending_rows.append(prev_rows[req.request_id])
                b.input_ids.append(0)
            b.positions.append(p)
            b.slot_mapping.append(req.block_ids[p // block_size] * block_size + p % block_size)
        b.query_start_loc.append(len(b.input_ids))
        b.seq_lens.append(sched.start + sched.num_tokens)
        b.block_tables.append(req.block_ids)
        b.state_indices.append(req.state_slot if req.state_slot is not None else 0)
        b.has_initial_state.append(sched.start > 0)
        if sched.samples:
            b.sample_token_index.append(len(b.input_ids) - 1)
            b.sample_requests.append(sched)
    b.num_decodes = next((i for i, s in enumerate(order) if not s.is_decode), len(order))
    return b


def batch_to_device(
    b: HostBatch, device: torch.device, prev_sampled: torch.Tensor | None, pin: bool
) -> tuple:
    """The host batch as device tensors: (input_ids, positions, BatchMetadata, sample_index).

    Pending tokens are gathered from ``prev_sampled`` (the previous step's sampled ids) on the device.
    """

    def t(values, dtype):
        host = torch.tensor(values, dtype=dtype)
        if pin:
            host = host.pin_memory()
        return host.to(device, non_blocking=True)

    width = max((len(r) for r in b.block_tables), default=1) or 1
    tables = [r + [0] * (width - len(r)) for r in b.block_tables]
    input_ids = t(b.input_ids, torch.int64)
    if b.pending_positions:
        if prev_sampled is None:
            raise RuntimeError("a pending token has no previous step to come from")
        input_ids[t(b.pending_positions, torch.int64)] = prev_sampled[t(b.pending_rows, torch.int64)]
    qsl = t(b.query_start_loc, torch.int32)
    attention = AttentionMetadata(
        t(b.slot_mapping, torch.int64), qsl, t(b.seq_lens, torch.int32), t(tables, torch.int32)
    )
    mamba = MambaMetadata(
        qsl, t(b.state_indices, torch.int32), t(b.has_initial_state, torch.bool), b.num_decodes
    )
    meta = BatchMetadata(num_tokens=len(b.input_ids), attention=attention, mamba=mamba)
    return input_ids, t(b.positions, torch.int64), meta, t(b.sample_token_index, torch.int64)
