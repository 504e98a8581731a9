"""Startup warm-up, the host profile, the first-request TTFT and the shared-prefix bench line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tessera import SamplingParams
from tessera.cli import app
from tessera.engine.warmup import batch_layout, bucket_sizes, forward_shapes
from tessera.llm import LLM
from tessera.models.presets import preset_dir


def test_bucket_sizes_and_layouts():
    assert bucket_sizes(20) == [1, 2, 3, 4, 5, 8, 9, 16, 17, 20]
    assert batch_layout(5, 5, 8) == [(1, True)] * 5
    assert batch_layout(10, 3, 8) == [(1, True), (1, True), (8, False)]
    layout = batch_layout(20, 3, 8)
    assert layout is not None and sum(n for n, _ in layout) == 20 and all(n <= 8 for n, _ in layout)
    assert batch_layout(40, 2, 8) is None  # two sequences of at most 8 tokens cannot hold 40
    shapes = forward_shapes(64, 4, 32)
    assert (64, 4) in shapes and (1, 1) in shapes and (33, 2) in shapes and (64, 1) not in shapes


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-bamba", "tiny-qwen3_moe"])
def test_full_warmup_changes_no_output(tmp_path, monkeypatch, fresh_discovery, preset):
    """The warm-up writes no KV and no live state: generations equal those of an engine without it."""
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    path = str(preset_dir(preset))
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14]]
    params = [SamplingParams(temperature=0, max_tokens=6, ignore_eos=True),
              SamplingParams(temperature=0.8, top_k=20, top_p=0.9, seed=3, max_tokens=6, ignore_eos=True,
                             presence_penalty=0.3, logprobs=2)]  # fmt: skip
    outs = {}
    for mode in ("full", "off"):
        llm = LLM(path, load_format="random", max_num_seqs=4, max_num_batched_tokens=40, max_model_len=32,
                  warmup=mode)  # fmt: skip
        assert (llm.engine.runner.warmup_s > 0) if mode == "full" else llm.engine.runner.warmup_s >= 0
        got = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        outs[mode] = [o.outputs[0].token_ids for o in got]
    assert outs["full"] == outs["off"] and all(len(t) == 6 for t in outs["full"])


def test_profile_host_first_request_and_shared_prefix(tmp_path, monkeypatch, fresh_discovery):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    out = tmp_path / "tp.json"
    result = CliRunner().invoke(app, ["bench", "throughput", "--preset", "tiny-llama", "--num-prompts", "6",
                                      "--input-len", "8", "--output-len", "4", "--shared-prefix-len", "48",
                                      "--profile-host", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    cache = data["tessera"]["prefix_cache"]
    # the first request computes the 48-token prefix; the other five find its 3 full blocks cached
    assert cache["block_hits"] == 5 * 3 and cache["block_queries"] == 6 * 3 and cache["hit_rate"] == 15 / 18
    prof = data["tessera"]["host_profile"]
    assert prof["steps"] >= 4 and set(prof["us_per_step"]) >= {"schedule", "inputs", "forward", "sampling",
                                                               "outputs", "detokenize", "other"}  # fmt: skip
    assert prof["us_per_step"]["forward"] > 0 and prof["us_per_step"]["schedule"] > 0
    latency = tmp_path / "lat.json"
    result = CliRunner().invoke(app, ["bench", "latency", "--preset", "tiny-qwen3", "--input-len", "8",
                                      "--output-len", "4", "--first-request", "--out", str(latency)])  # fmt: skip
    assert result.exit_code == 0, result.output
    first = json.loads(latency.read_text())["first_request"]
    assert first["ttft_ms"] > 0 and first["vs_warm_ttft"] > 0
    both = CliRunner().invoke(app, ["bench", "throughput", "--preset", "tiny-llama", "--random-range", "4,8",
                                    "--shared-prefix-len", "16"])  # fmt: skip
    assert both.exit_code == 2 and "do not combine" in both.output


def test_host_profile_restores_the_engine(tmp_path, monkeypatch, fresh_discovery):
    from tessera.bench.host_profile import HostProfile
    from tessera.engine import model_runner

    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    llm = LLM(str(preset_dir("tiny-llama")), load_format="random", max_num_seqs=2, max_model_len=32)
    engine = llm.engine
    originals = (model_runner.build_host_batch, engine.scheduler.schedule, engine.runner.sampler)
    with HostProfile(engine) as prof:
        llm.generate([{"prompt_token_ids": [4, 5, 6]}], SamplingParams(max_tokens=3, ignore_eos=True),
                     use_tqdm=False)  # fmt: skip
    assert prof.steps >= 3 and prof.seconds["schedule"] > 0
    assert (model_runner.build_host_batch, engine.scheduler.schedule, engine.runner.sampler) == originals
    assert "step" not in vars(engine) and "forward" not in vars(engine.runner)
