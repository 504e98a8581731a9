"""Tensor and expert parallelism on the CPU through gloo, world size 2 (and 4 for Llama): greedy tokens (and their logprobs)
equal to one rank in fp32 for Llama (one kv head for two ranks: replicated), Qwen3 (tied embeddings, an
odd vocabulary), Qwen3-MoE (tensor- and expert-parallel) and Bamba (Mamba2 split by heads, one group);
a worker killed mid-generation raises naming the rank within 30 s; bad sizes fail before any worker starts."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tessera import LLM, SamplingParams
from tessera.errors import ConfigError, WorkerError
from tessera.models.random_checkpoint import write_random_checkpoint

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, head_dim=16, vocab_size=211)
MODELS = {
    "llama": dict(num_attention_heads=4, num_key_value_heads=1),
    "qwen3": dict(tie_word_embeddings=True, vocab_size=251),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    "bamba": dict(mamba_n_heads=4, mamba_d_head=16, mamba_d_state=16, mamba_chunk_size=16),
}
PROMPTS = [
    [1, 5, 9, 13, 17, 21, 3],
    [7, 8, 9],
    [100, 50, 25, 12, 6, 3, 1, 2, 4, 8, 16, 32, 64, 128, 30, 60, 90],
]
PARAMS = SamplingParams(max_tokens=10, temperature=0.0, logprobs=2)


def checkpoint(tmp_path_factory, arch: str):
    return str(
        write_random_checkpoint(arch, tmp_path_factory.mktemp(arch), seed=3, **{**SMALL, **MODELS[arch]})
    )


def outputs(llm: LLM):
    results = llm.generate(PROMPTS, PARAMS, use_tqdm=False)
    tokens = [list(r.outputs[0].token_ids) for r in results]
    logprobs = [
        [{t: lp.logprob for t, lp in step.items()} for step in r.outputs[0].logprobs] for r in results
    ]
    return tokens, logprobs


def assert_same(one, two):
    assert two[0] == one[0]  # token for token
    for a_req, b_req in zip(one[1], two[1], strict=True):
        for a, b in zip(a_req, b_req, strict=True):
            assert a.keys() == b.keys() and all(abs(a[t] - b[t]) < 1e-4 for t in a)


@pytest.mark.parametrize(("arch", "expert_parallel"), [("llama", False), ("qwen3", False), ("qwen3_moe", False),
                                                       ("qwen3_moe", True), ("bamba", False)])  # fmt: skip
def test_two_ranks_equal_one_rank(tmp_path_factory, arch, expert_parallel):
    path = checkpoint(tmp_path_factory, arch)
    extra = {"enable_expert_parallel": expert_parallel} if expert_parallel else {}
    one = outputs(LLM(path, dtype="float32", **extra))
    assert len({tuple(t) for t in one[0]}) == len(PROMPTS)  # the prompts give different outputs
    llm = LLM(path, dtype="float32", tensor_parallel_size=2, **extra)
    try:
        assert_same(one, outputs(llm))
        assert_same(one, outputs(llm))  # a second batch on the same workers (requests dropped and re-added)
    finally:
        llm.engine.runner.shutdown()


def test_a_killed_worker_raises_naming_the_rank_without_hanging(tmp_path_factory):
    llm = LLM(checkpoint(tmp_path_factory, "llama"), dtype="float32", tensor_parallel_size=2)
    engine, runner = llm.engine, llm.engine.runner
    engine.add_request([1, 2, 3, 4], SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True))
    for _ in range(3):
        engine.step()
    previous = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the engine hung after a worker died"))
    signal.alarm(60)
    try:
        os.kill(runner.procs[1].pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerError, match="rank 1.*SIGKILL") as info:
            while engine.has_unfinished():
                engine.step()
        assert time.monotonic() - start < 30 and info.value.rank == 1
        with pytest.raises(WorkerError):  # the engine stays failed, it does not hang either
            engine.step()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert all(not p.is_alive() for p in runner.procs)  # the other worker was stopped


@pytest.mark.parametrize(("size", "overrides", "message"), [
    (0, {}, "tensor_parallel_size"),
    (3, {}, "4 attention heads do not divide by 3"),
    (2, {"num_attention_heads": 6, "num_key_value_heads": 3, "head_dim": 16}, "3 kv heads neither divide by 2"),
])  # fmt: skip
def test_bad_tensor_parallel_size_fails_before_any_worker(tmp_path, monkeypatch, size, overrides, message):
    import tessera.engine.tp_runner as tp_runner

    started = []
    monkeypatch.setattr(tp_runner.ParallelRunner, "__init__", lambda *a, **k: started.append(1))
    path = write_random_checkpoint("llama", tmp_path, **{**SMALL, **MODELS["llama"], **overrides})
    with pytest.raises(ConfigError, match=message):
        LLM(str(path), dtype="float32", tensor_parallel_size=size)
    assert not started


def test_more_ranks_than_devices_is_refused(tmp_path):
    from tessera.discovery import select_platform
    from tessera.models.sharding import check_tensor_parallel
    from tessera.models.spec import ModelSpec
    from tessera.platform import Capabilities

    class TwoDevices(type(select_platform("cpu"))):
        def capabilities(self, device_index=0):  # ranks need a device each, and there is one
            return Capabilities(dist_backend="gloo", ranks_share_device=False)

    spec = ModelSpec.from_dir(write_random_checkpoint("llama", tmp_path, **{**SMALL, **MODELS["llama"]}))
    config = type("C", (), {"tensor_parallel_size": 2, "enable_expert_parallel": False, "device_index": 0})()
    with pytest.raises(ConfigError, match="needs 2 cpu devices .* this host has 1"):
        check_tensor_parallel(spec, TwoDevices(), config)


def test_platform_show_prints_the_dist_backend_and_whether_it_is_usable(fresh_discovery):
    import json

    from typer.testing import CliRunner

    from tessera.cli import app

    result = CliRunner().invoke(app, ["platform", "show", "cpu"])
    assert result.exit_code == 0 and "distributed backend: gloo, usable" in result.stdout
    data = json.loads(CliRunner().invoke(app, ["platform", "show", "cpu", "--json"]).stdout)
    assert data["distributed"]["backend"] == "gloo" and data["distributed"]["usable"] is True


def test_generate_cli_takes_tensor_parallel_size(tmp_path, fresh_discovery):
    from typer.testing import CliRunner

    from tessera.cli import app

    path = write_random_checkpoint("llama", tmp_path, **{**SMALL, **MODELS["llama"]})
    result = CliRunner().invoke(app, ["generate", "--model", str(path), "-tp", "3", "--dtype", "float32"])
    assert result.exit_code != 0 and "4 attention heads do not divide by 3" in " ".join(result.output.split())


def test_four_ranks_equal_one_rank(tmp_path_factory):
    path = checkpoint(tmp_path_factory, "llama")  # 4 heads over 4 ranks; the one kv head replicated on each
    one = outputs(LLM(path, dtype="float32"))
    llm = LLM(path, dtype="float32", tensor_parallel_size=4)
    try:
        assert_same(one, outputs(llm))
    finally:
        llm.engine.runner.shutdown()
