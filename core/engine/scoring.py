"""Logits of a token sequence through the engine's paged path: one prefill, then teacher-forced decodes.

Used by parity tests and the conformance suite's model level: the prefill runs
the first ``prefill_len`` tokens in one chunk and returns a row of logits per
position; each later token is fed as a one-token decode step (the true token,
not the sampled one), so a near-tie cannot derail the comparison.
"""

from __future__ import annotations

import torch

from tessera.engine.request import Request
from tessera.engine.scheduler import ScheduledRequest, SchedulerOutput
from tessera.sampling_params import SamplingParams


@torch.inference_mode()
def teacher_forced_logits(engine, token_ids: list[int], prefill_len: int | None = None) -> torch.Tensor:
    """``[len(token_ids), vocab]`` float32 logits on the CPU; row i predicts token i + 1."""
    from tessera.engine.inputs import batch_to_device, build_host_batch

    prefill_len = len(token_ids) if prefill_len is None else prefill_len
    if not 1 <= prefill_len <= len(token_ids):
        raise ValueError(f"prefill_len must be between 1 and {len(token_ids)}, got {prefill_len}")
    runner, kv = engine.runner, engine.kv
    request = Request("__score__", list(token_ids), SamplingParams(max_tokens=1))
    if not kv.can_allocate(request, len(token_ids)):
        raise RuntimeError("not enough free KV blocks to score this sequence; run it on an idle engine")
    rows = []
    try:
        steps = [(0, prefill_len)] + [(p, 1) for p in range(prefill_len, len(token_ids))]
        for start, n in steps:
            kv.allocate(request, n)
            request.num_computed = start + n
            sched = ScheduledRequest(request, start, n)
            batch = build_host_batch(SchedulerOutput([sched]), kv.block_size, {})
            input_ids, positions, meta, _ = batch_to_device(batch, runner.device, None, False)
            hidden = runner.forward(input_ids, positions, meta)
            rows.append(runner.model.compute_logits(hidden).float().cpu())
    finally:
        kv.free(request)
    return torch.cat(rows)
