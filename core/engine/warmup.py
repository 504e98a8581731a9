"""Startup warm-up: every shape and variant the engine can schedule runs once before the first request.

Kernels that compile per shape (a tuned config per pow2 bucket of tokens and sequences, integer
arguments specialized by divisibility) would otherwise compile inside a request. The warm-up runs
the model forward over flat batches of every token count the scheduler can form (each power of
two up to ``max_num_batched_tokens`` and one past it, so both specializations compile) for every
sequence count bucket up to ``max_num_seqs``, with decodes and prefills mixed as the scheduler
mixes them; then the lm_head and the sampler at every sampling batch bucket, once per sampling
variant (greedy, random, top-k, top-p, min-p, penalties, logit bias, logprobs). Decode graphs are
captured after it (:mod:`tessera.engine.graphs`).

The batches write no KV (slot -1), read block 0 and use the spare Mamba state slot, as graph
padding rows do, so no request's data is touched.
"""

from __future__ import annotations

import logging

import torch

from tessera.engine.runner_parts import RunnerParts
from tessera.pluggable_layers.batch import AttentionMetadata, BatchMetadata, MambaMetadata
from tessera.pluggable_layers.checks import trusted_indices

log = logging.getLogger("tessera.engine")


def bucket_sizes(limit: int) -> list[int]:
    """1, 2, 3 and each power of two up to ``limit`` with the size one past it, and ``limit``."""
    sizes = {1, 2, 3, limit}
    p = 4
    while p <= limit:
        sizes.update((p, p + 1))
        p *= 2
    return sorted(s for s in sizes if s <= limit)


def forward_shapes(max_tokens: int, max_seqs: int, max_len: int) -> list[tuple[int, int]]:
    """(tokens, sequences) of every flat batch bucket the scheduler can form."""
    return [
        (tokens, seqs)
        for tokens in bucket_sizes(max_tokens)
        for seqs in bucket_sizes(min(tokens, max_seqs))
        if batch_layout(tokens, seqs, max_len) is not None
    ]


def batch_layout(tokens: int, seqs: int, max_len: int) -> list[tuple[int, bool]] | None:
    """Per sequence (tokens, decode?): as many decodes as leave prefills of at most ``max_len`` tokens
    (all decodes when ``tokens == seqs``); None when no such batch exists."""
    if tokens == seqs:
        return [(1, True)] * seqs
    for prefills in range(1, seqs + 1):
        decodes = seqs - prefills
        left = tokens - decodes
        if prefills <= left <= prefills * max_len:
            sizes = [left // prefills + (1 if i < left % prefills else 0) for i in range(prefills)]
            return [(1, True)] * decodes + [(n, False) for n in sizes]
    return None


def dummy_batch(parts: RunnerParts, layout, block_size: int, spare_slot: int):
    """(input_ids, positions, meta) of a batch that writes no KV and reads block 0 only."""
    device, i32 = parts.device, torch.int32
    lens = [n + (1 if decode else 0) for n, decode in layout]  # a decode sees one cached token
    positions = [p for (n, decode), total in zip(layout, lens, strict=True) for p in range(total - n, total)]
    tokens = len(positions)
    qsl = [0]
    for n, _ in layout:
        qsl.append(qsl[-1] + n)
    width = -(-max(lens) // block_size)
    qsl_t = torch.tensor(qsl, dtype=i32, device=device)
    attention = AttentionMetadata(torch.full((tokens,), -1, dtype=torch.int64, device=device), qsl_t,
                                  torch.tensor(lens, dtype=i32, device=device),
                                  torch.zeros(len(layout), width, dtype=i32, device=device))  # fmt: skip
    decodes = sum(1 for _, d in layout if d)
    mamba = MambaMetadata(qsl_t, torch.full((len(layout),), spare_slot, dtype=i32, device=device),
                          torch.tensor([d for _, d in layout], dtype=torch.bool, device=device), decodes)  # fmt: skip
    ids = torch.zeros(tokens, dtype=torch.int64, device=device)
    return (
        ids,
        torch.tensor(positions, dtype=torch.int64, device=device),
        BatchMetadata(tokens, attention, mamba),
    )


def sampling_variants(rows: int, vocab: int, device) -> list[tuple[tuple, dict]]:
    """(positional args after logits, feature keywords) of every sampling variant, for ``rows`` rows."""
    f32 = torch.float32
    zero, one = torch.zeros(rows, dtype=f32, device=device), torch.ones(rows, dtype=f32, device=device)
    k = torch.full((rows,), min(20, vocab), dtype=torch.int32, device=device)
    p = torch.full((rows,), 0.9, dtype=f32, device=device)

    def noise():
        return torch.empty(rows, vocab, dtype=f32, device=device).exponential_()

    penalties = {"prompt_mask": torch.zeros(rows, vocab, dtype=torch.bool, device=device),
                 "output_counts": torch.zeros(rows, vocab, dtype=torch.int32, device=device),
                 "presence_penalty": one * 0.5, "frequency_penalty": one * 0.5, "repetition_penalty": one * 1.1}  # fmt: skip
    return [
        ((zero, None, None, None), {}),
        ((one, None, None, noise()), {}),
        ((one, k, None, noise()), {}),
        ((one, None, p, noise()), {}),
        ((one, k, p, noise()), {}),
        ((one, None, None, noise()), {"min_p": one * 0.05}),
        ((zero, None, None, None), penalties),
        ((one, k, p, noise()), penalties),
        ((zero, None, None, None), {"logit_bias": torch.zeros(rows, vocab, dtype=f32, device=device)}),
        ((zero, None, None, None), {"num_logprobs": 5}),
        ((one, k, p, noise()), {"num_logprobs": 5, **penalties}),
    ]


@torch.inference_mode()
def warm_up(runner, progress: bool = True) -> int:
    """Run every forward shape and sampling variant once (``runner``: a ModelRunner). Returns the calls."""
    from rich.progress import Progress

    parts, config, plan = runner.parts, runner.config, runner.plan
    max_len = parts.max_model_len
    shapes = forward_shapes(config.max_num_batched_tokens, config.max_num_seqs, max_len)
    rows = bucket_sizes(config.max_num_seqs)
    total = len(shapes) + len(rows)
    spare = max(plan.num_state_slots - 1, 0)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("warm-up: compiling every batch shape", total=total)
        for tokens, seqs in shapes:
            parts.forward(*dummy_batch(parts, batch_layout(tokens, seqs, max_len), plan.block_size, spare))
            bar.advance(task)
        for n in rows:
            with trusted_indices():
                hidden = torch.zeros(n, runner.spec.hidden_size, dtype=parts.dtype, device=parts.device)
                logits = runner.model.compute_logits(hidden).float()
                for args, features in sampling_variants(n, logits.shape[1], parts.device):
                    runner.sampler(logits, *args, **features)
            bar.advance(task)
    parts.platform.synchronize(parts.device_index)
    return total
