"""The bench floor: a lower bound on the time of a workload under ANY schedule.

Two terms, each a bound on its own; the floor is the larger (``binding`` names it):

- compute: every FLOP the workload needs over the measured matmul rate. Linear layers run once
  per computed token (prompt tokens no cache can share, counted once per distinct prefix, plus
  one forward per output token but the last), MoE layers only through the active experts, the
  lm_head only for sampled rows; causal attention does ``4 * heads * head_dim`` FLOPs per
  (query, key) pair, a query at position ``i`` seeing ``min(i + 1, window)`` keys.
- memory: the bytes of the fewest steps the workload allows over the measured copy bandwidth.
  A request's tokens are sequential, so there are at least as many forward steps as the longest
  output (and, with at most ``max_batch`` sequences a step, total outputs / ``max_batch``); every
  step streams the weights once and the experts it touches (expected distinct experts under
  uniform routing, at the batches of the fewest-step schedule). Each decode forward reads its
  request's cached KV, every computed token writes its KV once, and each forward of a hybrid
  request reads and writes its Mamba state.

The expert term is the one part that is an expectation, not a bound: it assumes uniform routing, and
a router that sends every token to the same few experts touches fewer. For MoE models the memory
term can then exceed a real schedule's bytes; the dense and hybrid terms are bounds.

Chunked prefill running inside decode steps is still under both: its FLOPs are in the compute
term, and the steps it shares stream the weights once, as the memory term counts.
"""

from __future__ import annotations

from dataclasses import dataclass

Workload = list[tuple[list[int], int]]


@dataclass(frozen=True)
class ModelCost:
    """What one model costs per token and per step (read off the loaded model by :func:`model_cost`)."""

    #: bytes every forward step streams: dense weights and the lm_head (not the embedding table, not experts)
    weight_bytes: int
    #: matmul parameters one computed token runs through: dense linears plus the active experts' share
    linear_params: int
    #: lm_head parameters (run for the sampled rows only)
    head_params: int
    kv_bytes_per_token: int
    #: per attention layer: (query heads, head dim, sliding window or None)
    attention: tuple[tuple[int, int, int | None], ...] = ()
    #: per MoE layer: (bytes of all its experts, number of experts, experts per token)
    expert_layers: tuple[tuple[int, int, int], ...] = ()
    #: recurrent (Mamba) state of one sequence, read and written once per forward
    state_bytes_per_seq: int = 0


def touched_fraction(tokens: int, experts: int, top_k: int) -> float:
    """Expected share of a layer's experts that ``tokens`` uniformly routed tokens touch."""
    return 1.0 - (1.0 - top_k / experts) ** tokens


def causal_pairs(start: int, stop: int, window: int | None) -> int:
    """(query, key) pairs of causal attention for queries at positions ``start..stop-1``."""

    def upto(n: int) -> int:  # pairs of positions 0..n-1
        if window is None or n <= window:
            return n * (n + 1) // 2
        return window * (window + 1) // 2 + (n - window) * window

    return upto(stop) - upto(start)


def distinct_prompt_spans(workload: Workload) -> list[tuple[int, int]]:
    """Per prompt, the positions no earlier prompt shares (a prefix cache's best case): (start, stop)."""
    order = sorted(range(len(workload)), key=lambda i: workload[i][0])
    spans: list[tuple[int, int]] = [(0, 0)] * len(workload)
    previous: list[int] = []
    for i in order:
        prompt = workload[i][0]
        common = 0
        for a, b in zip(previous, prompt, strict=False):
            if a != b:
                break
            common += 1
        # the last prompt token is computed by every request: it yields that request's first output
        spans[i] = (min(common, len(prompt) - 1), len(prompt))
        previous = prompt
    return spans


def fewest_steps(workload: Workload, max_batch: int | None) -> int:
    longest = max(o for _, o in workload)
    total = sum(o for _, o in workload)
    return max(longest, -(-total // max_batch) if max_batch else 0)


def workload_flops(workload: Workload, cost: ModelCost) -> float:
    flops = 0.0
    for (prompt, out), (start, stop) in zip(workload, distinct_prompt_spans(workload), strict=True):
        computed = (stop - start) + max(out - 1, 0)
        end = len(prompt) + max(out - 1, 0)
        flops += 2.0 * cost.linear_params * computed + 2.0 * cost.head_params * out
        for heads, dim, window in cost.attention:
            pairs = causal_pairs(start, stop, window) + causal_pairs(len(prompt), end, window)
            flops += 4.0 * heads * dim * pairs
    return flops


def step_batches(workload: Workload, steps: int, max_batch: int | None, prefill_tokens: int) -> list[int]:
    """Tokens of each step of the fewest-step schedule: every prompt in the first, then the live decodes."""
    outs = sorted((o for _, o in workload), reverse=True)
    cap = max_batch or len(outs)
    batches = [prefill_tokens]
    left = sum(max(o - 1, 0) for o in outs)
    for s in range(1, steps):
        live = min(cap, sum(1 for o in outs if o > s)) or -(-left // max(steps - s, 1))
        live = min(live, left)
        batches.append(live)
        left -= live
    return batches


def cached_reads(prompt_len: int, decodes: int, window: int | None) -> int:
    """Cached tokens one attention layer reads over a request's decodes: decode k sees the
    ``prompt_len + k - 1`` tokens before it, at most ``window - 1`` of them in a sliding-window layer."""
    lo, hi = prompt_len, prompt_len + decodes  # the cached lengths the decodes see, [lo, hi)
    cap = None if window is None else max(window - 1, 0)
    if cap is None or hi <= cap:
        return decodes * prompt_len + decodes * (decodes - 1) // 2
    cut = max(lo, cap)  # lengths below cut are read whole, the others are capped
    return (cut - lo) * (lo + cut - 1) // 2 + (hi - cut) * cap


def workload_bytes(workload: Workload, cost: ModelCost, max_batch: int | None = None) -> tuple[float, int]:
    """(bytes, steps): the traffic of the fewest steps the workload allows."""
    steps = fewest_steps(workload, max_batch)
    spans = distinct_prompt_spans(workload)
    total = float(steps * cost.weight_bytes)
    prefill = sum(stop - start for start, stop in spans)
    if cost.expert_layers:
        for tokens in step_batches(workload, steps, max_batch, prefill):
            total += sum(b * touched_fraction(tokens, e, k) for b, e, k in cost.expert_layers)
    kv = cost.kv_bytes_per_token
    for (prompt, out), (start, stop) in zip(workload, spans, strict=True):
        decodes = max(out - 1, 0)
        total += kv * ((stop - start) + decodes)  # each computed token writes its KV once
        # decode k (1..out-1) reads the len(prompt) + k - 1 cached tokens before it, in each attention
        # layer; a sliding-window layer reads only the window's
        windows = [w for _, _, w in cost.attention] or [None]
        per_layer = kv / len(windows)
        total += per_layer * sum(cached_reads(len(prompt), decodes, w) for w in windows)
        total += cost.state_bytes_per_seq * (2 * decodes + 1)
    return total, steps


def floor_terms(workload: Workload, cost: ModelCost, limits: dict, max_batch: int | None = None) -> dict:
    """Both terms of the floor in seconds, the floor (the larger) and which term binds."""
    flops = workload_flops(workload, cost)
    nbytes, steps = workload_bytes(workload, cost, max_batch)
    compute_s = flops / (limits["matmul_TFLOPs"] * 1e12)
    memory_s = nbytes / (limits["copy_GBps"] * 1e9)
    return {
        "seconds": max(compute_s, memory_s),
        "binding": "compute" if compute_s >= memory_s else "memory",
        "compute_s": compute_s,
        "memory_s": memory_s,
        "flops": flops,
        "bytes": nbytes,
        "steps": steps,
        "step_ms": 1000.0 * memory_s / steps,
    }


def model_cost(runner) -> ModelCost:
    """The :class:`ModelCost` of a loaded model (``runner``: a ModelRunner)."""
    from tessera.engine.cache_plan import state_bytes_per_slot
    from tessera.pluggable_layers.moe import FusedMoE

    model = runner.model
    head = model.lm_head.weight
    experts = [m for m in model.modules() if isinstance(m, FusedMoE)]
    skip = {id(t) for m in experts for t in (m.w13, m.w2)} | {id(model.embed_tokens.weight), id(head)}
    dense = [p for p in model.parameters() if id(p) not in skip]
    dense_bytes = sum(p.numel() * p.element_size() for p in dense)
    active = sum(p.numel() for p in dense if p.dim() > 1) + sum(
        (m.w13.numel() + m.w2.numel()) * m.top_k // m.num_experts for m in experts
    )
    layers = tuple(
        (sum(t.numel() * t.element_size() for t in (m.w13, m.w2)), m.num_experts, m.top_k) for m in experts
    )
    attention = tuple((a.num_heads, a.head_dim, a.sliding_window) for a in model.attention_layers())
    kv = runner.plan.bytes_per_block // max(runner.plan.block_size, 1)
    return ModelCost(dense_bytes + head.numel() * head.element_size(), active, head.numel(), kv, attention,
                     layers, state_bytes_per_slot(runner))  # fmt: skip
