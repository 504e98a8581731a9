"""Continuous batching: preemption under a small KV budget, prefix caching, async vs sync, abort."""

from __future__ import annotations

import random

import pytest

from tessera import LLM, SamplingParams


def prompts_and_params(n: int, seed: int):
    rng = random.Random(seed)
    prompts = [[rng.randrange(3, 200) for _ in range(rng.randint(1, 40))] for _ in range(n)]
    params = [SamplingParams(temperature=0, max_tokens=rng.randint(1, 24), ignore_eos=True) for _ in range(n)]
    return prompts, params


def test_preemption_keeps_every_output_identical_to_running_alone(checkpoints):
    path = str(checkpoints("llama"))
    prompts, params = prompts_and_params(64, 0)
    small = LLM(path, num_kv_blocks=20, block_size=4, max_num_seqs=16, max_num_batched_tokens=48)
    outs = small.generate([{"prompt_token_ids": p} for p in prompts], params)
    assert small.engine.scheduler.num_preemptions > 0, "the budget was meant to force preemption"
    alone = LLM(path, max_num_seqs=1, enable_prefix_caching=False)
    for prompt, p, out in zip(prompts, params, outs, strict=True):
        expected = alone.generate([{"prompt_token_ids": prompt}], p)[0].outputs[0].token_ids
        assert out.outputs[0].token_ids == expected
        assert len(expected) == p.max_tokens
    assert small.engine.kv.pool.num_free == small.engine.kv.pool.num_blocks


def test_shared_prefix_hits_the_cache(checkpoints):
    llm = LLM(str(checkpoints("qwen3")), block_size=4)
    first = list(range(10, 24))  # 14 tokens: three full blocks of 4 and a partial one
    second = first[:12] + [99, 98, 97]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    llm.generate([{"prompt_token_ids": first}], params)
    stats = llm.engine.stats
    out = llm.generate([{"prompt_token_ids": second}], params)[0]
    after = llm.engine.stats
    assert after["prefix_hits"] - stats["prefix_hits"] == 3
    assert after["prefix_queries"] - stats["prefix_queries"] == 3
    uncached = LLM(str(checkpoints("qwen3")), block_size=4, enable_prefix_caching=False)
    assert (
        out.outputs[0].token_ids
        == uncached.generate([{"prompt_token_ids": second}], params)[0].outputs[0].token_ids
    )


@pytest.mark.parametrize("arch", ["llama", "bamba"])
def test_async_and_sync_scheduling_agree(arch, checkpoints):
    prompts, params = prompts_and_params(12, 1)
    params = [
        p if i % 2 else p.model_copy(update={"temperature": 0.8, "top_p": 0.9, "seed": i})
        for i, p in enumerate(params)
    ]
    results = {}
    for mode in (True, False):
        llm = LLM(
            str(checkpoints(arch)),
            async_scheduling=mode,
            max_num_batched_tokens=32,
            num_kv_blocks=40,
            block_size=4,
        )
        results[mode] = [
            o.outputs[0].token_ids for o in llm.generate([{"prompt_token_ids": p} for p in prompts], params)
        ]
    assert results[True] == results[False]
    assert LLM.__init__.__defaults__ is not None
    from tessera.config import EngineConfig

    assert EngineConfig(model="x").async_scheduling is True


def test_streaming_abort_and_stop_tokens(checkpoints):
    llm = LLM(str(checkpoints("llama")))
    engine = llm.engine
    free_run = llm.generate(
        [{"prompt_token_ids": [5, 6, 7]}], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    )[0]
    stop_at = free_run.outputs[0].token_ids[3]
    a = engine.add_request(
        {"prompt_token_ids": [5, 6, 7]},
        SamplingParams(temperature=0, max_tokens=10, stop_token_ids=(stop_at,)),
    )
    b = engine.add_request(
        {"prompt_token_ids": [9, 9, 9]}, SamplingParams(temperature=0, max_tokens=50, ignore_eos=True)
    )
    finished = {}
    steps = 0
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                finished[out.request_id] = out
        steps += 1
        if steps == 4:
            engine.abort(b)
    assert finished[a].outputs[0].finish_reason == "stop"
    assert finished[a].outputs[0].token_ids[-1] == stop_at and len(finished[a].outputs[0].token_ids) <= 4
    assert finished[b].outputs[0].finish_reason == "abort"
    assert engine.kv.pool.num_free == engine.kv.pool.num_blocks


def test_min_tokens_suppresses_stops(checkpoints):
    llm = LLM(str(checkpoints("llama")))
    free_run = llm.generate(
        [{"prompt_token_ids": [5, 6, 7]}], SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    )[0]
    first = free_run.outputs[0].token_ids[0]
    out = llm.generate([{"prompt_token_ids": [5, 6, 7]}],
                       SamplingParams(temperature=0, max_tokens=6, min_tokens=3, stop_token_ids=(first,)))[0]  # fmt: skip
    assert len(out.outputs[0].token_ids) >= 3 and out.outputs[0].token_ids[0] != first


def test_metrics_are_filled(checkpoints):
    out = LLM(str(checkpoints("llama"))).generate(
        [{"prompt_token_ids": [1, 2, 3]}], SamplingParams(max_tokens=5, ignore_eos=True)
    )[0]
    assert out.metrics.time_to_first_token is not None and out.metrics.time_to_first_token >= 0
    assert out.metrics.time_per_output_token is not None
