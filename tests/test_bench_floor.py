"""The bench floor is a lower bound: no schedule of a workload, costed step by step at the same limits, beats it."""

from __future__ import annotations

import pytest

from tessera.bench.e2e import fixed_workload, random_workload, shared_prefix_workload
from tessera.bench.floor import ModelCost, causal_pairs, distinct_prompt_spans, floor_terms, touched_fraction

#: the H200 of issue 21: 4.19 TB/s copy, 776 TFLOP/s bf16 matmul
H200 = {"copy_GBps": 4190.0, "matmul_TFLOPs": 776.0}
#: llama3-8b in bf16: 32 layers, 32 query heads of 128, 8 KV heads, untied 128256 x 4096 lm_head
HEAD = 128256 * 4096
LINEAR = 32 * (4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336)
LLAMA3_8B = ModelCost(weight_bytes=2 * (LINEAR + HEAD), linear_params=LINEAR, head_params=HEAD,
                      kv_bytes_per_token=32 * 2 * 8 * 128 * 2, attention=((32, 128, None),) * 32)  # fmt: skip
TINY_MOE = ModelCost(10**6, 10**5, 10**4, 64, attention=((4, 16, None), (4, 16, 8)),
                     expert_layers=((4 * 10**6, 16, 4),), state_bytes_per_seq=10**3)  # fmt: skip


def schedule_seconds(workload, cost: ModelCost, limits: dict, steps) -> float:
    """Cost a schedule step by step at its own max(bytes / bandwidth, FLOPs / rate).

    ``steps``: per step, (request, tokens computed) pairs; a request's tokens run in order, prompt first,
    then one decode per step, and it samples when it reaches the end of its known tokens."""
    bw, rate = limits["copy_GBps"] * 1e9, limits["matmul_TFLOPs"] * 1e12
    done = [0] * len(workload)  # positions computed
    total = 0.0
    for step in steps:
        nbytes, flops, tokens = float(cost.weight_bytes), 0.0, 0
        for r, n in step:
            prompt, out = workload[r]
            start, stop = done[r], done[r] + n
            assert stop <= len(prompt) + out - 1, "a schedule computes at most prompt + outputs - 1 positions"
            done[r] = stop
            tokens += n
            nbytes += cost.kv_bytes_per_token * (n + start)  # writes its tokens, reads the cached ones
            nbytes += 2 * cost.state_bytes_per_seq
            flops += 2.0 * cost.linear_params * n
            flops += 2.0 * cost.head_params * (1 if stop >= len(prompt) else 0)
            flops += sum(4.0 * h * d * causal_pairs(start, stop, w) for h, d, w in cost.attention)
        nbytes += sum(b * touched_fraction(tokens, e, k) for b, e, k in cost.expert_layers)
        total += max(nbytes / bw, flops / rate)
    assert done == [len(p) + o - 1 for p, o in workload], "the schedule must finish every request"
    return total


def all_at_once(workload):
    """Every prompt whole in the first step, then one decode per live request per step."""
    steps = [[(r, len(p)) for r, (p, _) in enumerate(workload)]]
    for s in range(1, max(o for _, o in workload)):
        steps.append([(r, 1) for r, (_, o) in enumerate(workload) if o > s])
    return steps


def chunked(workload, budget: int, max_seqs: int):
    """The engine's policy: running decodes first, then prompt chunks within a token budget."""
    need = [len(p) + o - 1 for p, o in workload]
    done, running, waiting, steps = [0] * len(workload), [], list(range(len(workload))), []
    while any(d < n for d, n in zip(done, need, strict=True)):
        left, step = budget, []
        for r in sorted(running, key=lambda r: done[r] < len(workload[r][0])):
            n = min(
                1 if done[r] >= len(workload[r][0]) else len(workload[r][0]) - done[r],
                left,
                need[r] - done[r],
            )
            if n > 0:
                step.append((r, n))
                left -= n
        while waiting and left > 0 and len(running) < max_seqs:
            r = waiting.pop(0)
            running.append(r)
            n = min(len(workload[r][0]), left)
            step.append((r, n))
            left -= n
        for r, n in step:
            done[r] += n
        running = [r for r in running if done[r] < need[r]]
        steps.append(step)
    return steps


def sequential(workload):
    steps = []
    for r, (p, o) in enumerate(workload):
        steps.append([(r, len(p))])
        steps += [[(r, 1)] for _ in range(o - 1)]
    return steps


@pytest.mark.parametrize(
    "workload",
    [
        fixed_workload(6, 20, 9, 100, 0),
        random_workload(7, 3, 40, 100, 1),
        shared_prefix_workload(5, 24, 6, 5, 100, 2),
        [([5] * 30, 1), ([7] * 3, 12)],
    ],
)
@pytest.mark.parametrize("cost", [LLAMA3_8B, TINY_MOE])
@pytest.mark.parametrize("limits", [H200, {"copy_GBps": 10.0, "matmul_TFLOPs": 0.001}])
def test_floor_never_exceeds_a_schedule(workload, cost, limits):
    floor = floor_terms(workload, cost, limits)["seconds"]
    for steps in (
        all_at_once(workload),
        chunked(workload, 16, 4),
        chunked(workload, 7, 2),
        sequential(workload),
    ):
        assert floor <= schedule_seconds(workload, cost, limits, steps) * (1 + 1e-9)


def test_capped_batch_needs_more_steps():
    workload = fixed_workload(8, 4, 10, 100, 0)
    free = floor_terms(workload, LLAMA3_8B, H200)
    capped = floor_terms(workload, LLAMA3_8B, H200, max_batch=2)
    assert free["steps"] == 10 and capped["steps"] == 40 and capped["memory_s"] > free["memory_s"]
    steps = chunked(workload, 64, 2)
    assert capped["seconds"] <= schedule_seconds(workload, LLAMA3_8B, H200, steps)


def test_issue_21_lines_come_out_below_one():
    """The 256 x 512 -> 512 llama3-8b line measured 16,922 tok/s (7.75 s); the old floor said 1.01 of it."""
    big = fixed_workload(256, 512, 512, 128256, 0)
    floor = floor_terms(big, LLAMA3_8B, H200, 256)
    assert floor["binding"] == "memory" and 0.55 < floor["seconds"] / (256 * 512 / 16922) < 0.8
    assert floor["compute_s"] > 0.8 * floor["memory_s"]  # prefill and decode FLOPs nearly bind too
    small = floor_terms(fixed_workload(64, 256, 256, 128256, 0), LLAMA3_8B, H200, 64)
    assert 0.4 < small["seconds"] / (64 * 256 / 7082) < 0.6  # 7,082 tok/s


def test_attention_pairs_and_shared_prefixes():
    assert causal_pairs(0, 4, None) == 1 + 2 + 3 + 4
    assert causal_pairs(2, 4, None) == 3 + 4
    assert causal_pairs(0, 6, 2) == 1 + 2 + 2 + 2 + 2 + 2
    workload = [([1, 2, 3, 4], 2), ([1, 2, 3, 9], 2), ([1, 2, 3, 4], 3), ([5], 1)]
    spans = distinct_prompt_spans(workload)
    # the first [1,2,3,4] computes it all; the other shares 3 tokens, the copy computes its last token only
    assert sorted(spans[:3]) == [(0, 4), (3, 4), (3, 4)] and spans[3] == (0, 1)
    shared = shared_prefix_workload(16, 64, 8, 4, 1000, 0)
    alone = [([i + 3] + p[1:], o) for i, (p, o) in enumerate(shared)]  # no two share even a first token
    assert floor_terms(shared, LLAMA3_8B, H200)["flops"] < 0.3 * floor_terms(alone, LLAMA3_8B, H200)["flops"]


def test_cached_reads_equal_the_sum_over_decodes_with_and_without_a_window():
    from tessera.bench.floor import cached_reads

    for prompt_len in (0, 1, 7, 31):
        for decodes in (0, 1, 5, 40):
            for window in (None, 1, 2, 8, 33, 4096):
                cap = None if window is None else window - 1
                brute = sum(
                    prompt_len + k - 1 if cap is None else min(prompt_len + k - 1, cap)
                    for k in range(1, decodes + 1)
                )
                assert cached_reads(prompt_len, decodes, window) == brute, (prompt_len, decodes, window)
