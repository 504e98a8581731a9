"""Per-step sampling inputs: parameter tensors and the exponential noise.

Noise for a request with a seed comes from a generator seeded by (seed, index of
the token being sampled), so its tokens do not depend on batching, preemption or
async scheduling. Requests without a seed share the engine's generator.
"""

from __future__ import annotations

import torch

from tessera.engine.scheduler import ScheduledRequest

_MIX = 0x9E3779B97F4A7C15


def token_seed(seed: int, index: int) -> int:
    return (seed * _MIX + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 63)


def list_to_device(values: list, dtype: torch.dtype, device: torch.device, pin: bool) -> torch.Tensor:
    """A host list on the device without a stream sync (``pin``: pinned staging, where a pageable copy
    would wait; the platform's ``pinned_memory`` capability)."""
    host = torch.tensor(values, dtype=dtype)
    if pin:
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def sampling_tensors(
    rows: list[ScheduledRequest],
    vocab: int,
    device: torch.device,
    generator: torch.Generator | None,
    pin: bool,
):
    """(temperature, top_k, top_p, noise or None) for the sampling rows."""
    params = [s.request.params for s in rows]
    temperature = list_to_device([p.temperature for p in params], torch.float32, device, pin)
    # None when no row filters: kernels then need not look at the values on the host
    use_k = any(0 < p.top_k < vocab for p in params)
    use_p = any(p.top_p < 1.0 for p in params)
    top_k = list_to_device([max(p.top_k, 0) for p in params], torch.int32, device, pin) if use_k else None
    top_p = list_to_device([p.top_p for p in params], torch.float32, device, pin) if use_p else None
    if all(p.greedy for p in params):
        return temperature, top_k, top_p, None
    noise = torch.empty(len(rows), vocab, dtype=torch.float32, device=device).exponential_(
        generator=generator
    )
    for i, sched in enumerate(rows):
        p = sched.request.params
        if p.seed is not None and not p.greedy:
            g = torch.Generator(device=device).manual_seed(token_seed(p.seed, sched.request.num_generated))
            noise[i].exponential_(generator=g)
    return temperature, top_k, top_p, noise


def feature_tensors(
    rows: list[ScheduledRequest], vocab: int, device: torch.device, counts, prev, pin: bool
) -> dict:
    """The sample op's 1.1 inputs the rows use (keyword arguments; empty when none uses one).

    ``counts`` is the runner's :class:`~tessera.engine.token_counts.TokenCounts`; ``prev`` the previous
    step's handle (its sampled tokens complete the counts under async scheduling)."""
    params = [s.request.params for s in rows]
    out: dict = {}
    if any(p.uses_penalties for p in params):
        prev_rows = prev.row_of() if prev is not None else {}
        prompt_mask, output_counts = counts.gather(
            rows, prev.sampled if prev is not None else None, prev_rows
        )
        out.update(prompt_mask=prompt_mask, output_counts=output_counts)
        names = ("presence_penalty", "frequency_penalty", "repetition_penalty")
        scalars = list_to_device([[getattr(p, n) for p in params] for n in names], torch.float32, device, pin)
        out.update(zip(names, scalars, strict=True))  # one copy for the three rows
    if any(p.logit_bias for p in params):
        entries = [(i, t, b) for i, p in enumerate(params) for t, b in (p.logit_bias or {}).items()]
        bias = torch.zeros(len(rows), vocab, dtype=torch.float32, device=device)
        where = list_to_device(
            [[i for i, _, _ in entries], [t for _, t, _ in entries]], torch.int64, device, pin
        )
        bias[where[0], where[1]] = list_to_device([b for _, _, b in entries], torch.float32, device, pin)
        out["logit_bias"] = bias
    if any(p.min_p > 0 and not p.greedy for p in params):
        out["min_p"] = list_to_device([p.min_p for p in params], torch.float32, device, pin)
    wanted = [p.logprobs for p in params if p.logprobs is not None]
    if wanted:
        out["num_logprobs"] = max(wanted)
    return out
