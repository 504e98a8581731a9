"""The flat host batch and its device tensors, against a plain per-token construction."""

from __future__ import annotations

import random

import torch

from tessera import SamplingParams
from tessera.engine.inputs import batch_to_device, build_host_batch
from tessera.engine.request import Request
from tessera.engine.scheduler import ScheduledRequest, SchedulerOutput

BLOCK = 4


def request(i: int, prompt: int, outputs: int, pending: int, rng: random.Random) -> Request:
    r = Request(f"r{i}", [rng.randrange(1, 500) for _ in range(prompt)], SamplingParams(max_tokens=100))
    r.output_token_ids = [rng.randrange(1, 500) for _ in range(outputs)]
    r.num_pending = pending
    r.block_ids = rng.sample(range(1000), -(-(prompt + outputs + pending) // BLOCK))
    return r


def test_chunks_across_prompt_outputs_and_pending_tokens():
    rng = random.Random(0)
    cases = [  # (prompt, outputs, pending, start, num_tokens)
        (9, 0, 0, 0, 9),  # a whole prompt
        (9, 0, 0, 4, 3),  # a chunk inside the prompt
        (6, 5, 0, 3, 8),  # recomputed after preemption: the chunk runs from the prompt into the outputs
        (6, 5, 1, 11, 1),  # a decode whose token is still on the device
        (5, 2, 1, 0, 8),  # everything, ending on a pending token
    ]
    scheduled = [
        ScheduledRequest(request(i, p, o, k, rng), start, n) for i, (p, o, k, start, n) in enumerate(cases)
    ]
    out = SchedulerOutput()
    out.scheduled = scheduled
    prev_rows = {s.request.request_id: row for row, s in enumerate(scheduled)}
    b = build_host_batch(out, BLOCK, prev_rows)
    ids, positions, slots, pending = [], [], [], []
    for s in b.order:  # the plain construction, token by token
        r = s.request
        known = r.prompt_token_ids + r.output_token_ids
        for p in range(s.start, s.start + s.num_tokens):
            if p >= len(known):
                pending.append((len(ids), prev_rows[r.request_id]))
            ids.append(known[p] if p < len(known) else 0)
            positions.append(p)
            slots.append(r.block_ids[p // BLOCK] * BLOCK + p % BLOCK)
    assert (b.input_ids, b.positions, b.slot_mapping) == (ids, positions, slots)
    assert list(zip(b.pending_positions, b.pending_rows, strict=True)) == pending

    prev_sampled = torch.arange(len(scheduled), dtype=torch.int64) + 7000
    input_ids, dev_positions, meta, _ = batch_to_device(b, torch.device("cpu"), prev_sampled, pin=False)
    for at, row in pending:
        ids[at] = 7000 + row
    assert input_ids.tolist() == ids and dev_positions.tolist() == positions
    assert meta.attention.slot_mapping.tolist() == slots
    width = max(len(s.request.block_ids) for s in b.order)
    tables = [s.request.block_ids + [0] * (width - len(s.request.block_ids)) for s in b.order]
    assert meta.attention.block_tables.tolist() == tables
    assert meta.attention.block_tables.dtype == torch.int32 and meta.attention.seq_lens.tolist() == b.seq_lens
