"""The flat batch of one step, built on the host from the scheduler's output.

Sequences are ordered decode-first (the Mamba kernels serve the leading one-token
sequences with their decode path). Tokens whose id is still on the device (async
scheduling: last step's sampled token) are marked for a gather from that step's
output instead of a host value.
"""

from __future__ import annotations

import struct
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
        start, end = sched.start, sched.start + sched.num_tokens
        prompt, outputs, blocks = req.prompt_token_ids, req.output_token_ids, req.block_ids
        if end - start == 1:  # one token (a decode, mostly): the general path below, unrolled
            _one_token(b, start, prompt, outputs, blocks, block_size, prev_rows, req.request_id)
        else:
            known = len(prompt) + len(outputs)  # tokens past these are still on the device (pending)
            b.input_ids += prompt[start:end]
            b.input_ids += outputs[max(start - len(prompt), 0) : max(min(end, known) - len(prompt), 0)]
            for _ in range(max(start, known), end):
                b.pending_positions.append(len(b.input_ids))
                b.pending_rows.append(prev_rows[req.request_id])
                b.input_ids.append(0)
            b.positions += range(start, end)
            b.slot_mapping += [
                blocks[p // block_size] * block_size + p % block_size for p in range(start, end)
            ]
        b.query_start_loc.append(len(b.input_ids))
        b.seq_lens.append(end)
        b.block_tables.append(req.block_ids)
        b.state_indices.append(req.state_slot if req.state_slot is not None else 0)
        b.has_initial_state.append(sched.start > 0)
        if sched.samples:
            b.sample_token_index.append(len(b.input_ids) - 1)
            b.sample_requests.append(sched)
    b.num_decodes = next((i for i, s in enumerate(order) if not s.is_decode), len(order))
    return b


def _one_token(
    b: HostBatch, at: int, prompt, outputs, blocks, block_size: int, prev_rows, request_id
) -> None:
    """Add the token at position ``at``: its id (or a pending mark), position and cache slot."""
    if at < len(prompt):
        b.input_ids.append(prompt[at])
    elif at < len(prompt) + len(outputs):
        b.input_ids.append(outputs[at - len(prompt)])
    else:  # still on the device
        b.pending_positions.append(len(b.input_ids))
        b.pending_rows.append(prev_rows[request_id])
        b.input_ids.append(0)
    b.positions.append(at)
    b.slot_mapping.append(blocks[at // block_size] * block_size + at % block_size)


#: struct codes of the packed integer dtypes
_CODES = {torch.int64: "q", torch.int32: "i"}


def _pack(parts: list[list[int]], dtype: torch.dtype, device: torch.device, pin: bool) -> list[torch.Tensor]:
    """Several int lists as views of one device tensor: one host buffer and one copy instead of one each.

    The lists are joined with list extends and packed by ``struct`` (a step's block tables are
    B x blocks ints: ``torch.tensor`` on such a list costs milliseconds at batch 256 and long
    contexts, several times more). Each part starts on a 16-element boundary, so every view is as
    aligned as a tensor of its own (kernels specialized on pointer alignment see the same pointers
    as at warm-up)."""
    flat: list[int] = []
    spans = []
    for part in parts:
        spans.append((len(flat), len(part)))
        flat += part
        flat += _ZEROS[: -len(part) % 16]
    code = _CODES[dtype]
    buffer = bytearray(struct.calcsize(code) * len(flat))
    struct.pack_into(f"{len(flat)}{code}", buffer, 0, *flat)
    host = torch.frombuffer(buffer, dtype=dtype) if flat else torch.empty(0, dtype=dtype)
    if pin:
        host = host.pin_memory()
    packed = host.to(device, non_blocking=True)
    return [packed[at : at + n] for at, n in spans]


_ZEROS = [0] * 16


def _tables(block_tables: list[list[int]], width: int) -> list[int]:
    """The block tables as one row-major list, each row padded with block 0 to ``width``."""
    flat: list[int] = []
    for row in block_tables:
        flat += row
        flat += [0] * (width - len(row))
    return flat


def batch_to_device(
    b: HostBatch, device: torch.device, prev_sampled: torch.Tensor | None, pin: bool
) -> tuple:
    """The host batch as device tensors: (input_ids, positions, BatchMetadata, sample_index).

    Pending tokens are gathered from ``prev_sampled`` (the previous step's sampled ids) on the device.
    The int64 fields travel as one tensor, the int32 ones as another.
    """
    width = max((len(r) for r in b.block_tables), default=1) or 1
    tables = _tables(b.block_tables, width)
    input_ids, positions, slots, sample_index, pending, pending_rows = _pack(
        [b.input_ids, b.positions, b.slot_mapping, b.sample_token_index, b.pending_positions, b.pending_rows],
        torch.int64, device, pin,
    )  # fmt: skip
    if b.pending_positions:
        if prev_sampled is None:
            raise RuntimeError("a pending token has no previous step to come from")
        input_ids[pending] = prev_sampled[pending_rows]
    qsl, seq_lens, flat_tables, state_indices, initial = _pack(
        [b.query_start_loc, b.seq_lens, tables, b.state_indices, [int(v) for v in b.has_initial_state]],
        torch.int32, device, pin,
    )  # fmt: skip
    attention = AttentionMetadata(slots, qsl, seq_lens, flat_tables.view(len(b.block_tables), width))
    mamba = MambaMetadata(qsl, state_indices, initial != 0, b.num_decodes)
    meta = BatchMetadata(num_tokens=len(b.input_ids), attention=attention, mamba=mamba)
    return input_ids, positions, meta, sample_index
