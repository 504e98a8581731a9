"""`tessera bench throughput / latency` end to end on a tiny preset, against transformers (no speed assertion)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tessera.bench.e2e import fixed_workload, random_workload
from tessera.bench.floor import ModelCost, floor_terms, touched_fraction
from tessera.cli import app


def test_throughput_with_transformers_peer(tmp_path, monkeypatch, fresh_discovery):
    pytest.importorskip("transformers")
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    out = tmp_path / "tp.json"
    result = CliRunner().invoke(app, ["bench", "throughput", "--preset", "tiny-llama", "--num-prompts", "4", "--input-len", "16",
                                      "--output-len", "8", "--compare", "hf", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["tessera"]["output_tokens"] == 32 and data["hf"]["output_tokens"] == 32
    assert data["speedup_vs_hf"] > 0 and 0 < data["floor_share"] and data["tessera"]["tpot_ms"]["p50"] > 0
    floor = data["floor"]
    assert floor["seconds"] == max(floor["compute_s"], floor["memory_s"]) == data["floor_seconds"]
    assert floor["binding"] in ("compute", "memory") and data["limits"]["copy_GBps"] > 0
    assert data["warmup_s"] >= 0


def test_latency_and_bad_arguments(tmp_path, monkeypatch, fresh_discovery):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    result = CliRunner().invoke(
        app, ["bench", "latency", "--preset", "tiny-qwen3", "--input-len", "8", "--output-len", "4"]
    )
    assert result.exit_code == 0 and "tessera" in result.output
    both = CliRunner().invoke(app, ["bench", "latency"])
    assert both.exit_code == 2 and "exactly one of --model DIR and --preset NAME" in both.output
    unknown = CliRunner().invoke(app, ["bench", "latency", "--preset", "gpt-5"])
    assert unknown.exit_code == 2 and "unknown preset 'gpt-5'" in unknown.output


def test_workloads_and_floor():
    fixed = fixed_workload(3, 5, 7, 100, 0)
    assert [len(p) for p, _ in fixed] == [5, 5, 5] and {o for _, o in fixed} == {7}
    rand = random_workload(50, 100, 1024, 1000, 1)
    assert all(100 <= len(p) <= 1024 and 100 <= o <= 1024 for p, o in rand) and rand == random_workload(
        50, 100, 1024, 1000, 1
    )
    limits = {"copy_GBps": 1000.0, "matmul_TFLOPs": 100.0}
    # one sequence, 2 outputs: 2 steps reading 1 GB of weights and a little KV: about 2 ms, memory-bound
    cost = ModelCost(weight_bytes=10**9, linear_params=10**6, head_params=0, kv_bytes_per_token=100)
    floor = floor_terms([([1] * 4, 2)], cost, limits, 1)
    assert floor["seconds"] == pytest.approx(2e-3, rel=1e-3) and floor["binding"] == "memory"
    assert floor["steps"] == 2
    # plus one MoE layer of 1 GB (8 experts, top-2) and 1 MB of state per sequence: the first step runs the
    # 4 prompt tokens (touching 1 - (6/8)^4 of the experts), the second one decode token (a quarter)
    moe_cost = ModelCost(10**9, 10**6, 0, 100, expert_layers=((10**9, 8, 2),), state_bytes_per_seq=10**6)
    moe = floor_terms([([1] * 4, 2)], moe_cost, limits, 1)
    experts = 1e9 * (touched_fraction(4, 8, 2) + touched_fraction(1, 8, 2))
    assert moe["memory_s"] == pytest.approx((2e9 + experts + 3e6 + 100 * 5 + 100 * 4) / 1e12, rel=1e-6)
    assert touched_fraction(64, 128, 8) == pytest.approx(1 - (120 / 128) ** 64)


REMOTE_CODE = """
from pathlib import Path

Path(__file__).with_name("REMOTE_CODE_RAN").write_text("the checkpoint's own code ran")
from transformers import LlamaConfig


class RemoteConfig(LlamaConfig):
    model_type = "tessera_remote_llama"
"""


@pytest.mark.parametrize("model_type", ["tessera_remote_llama", "llama"])
def test_compare_hf_never_runs_checkpoint_code(tmp_path, monkeypatch, fresh_discovery, model_type):
    """A checkpoint with auto_map and a Python file: `bench --compare hf` must not import that file."""
    pytest.importorskip("transformers")
    from .hf_checkpoints import write_tiny_checkpoint

    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    folder = write_tiny_checkpoint("llama", tmp_path / "remote")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "configuration_remote.RemoteConfig",
                          "AutoModelForCausalLM": "configuration_remote.RemoteConfig"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_remote.py").write_text(REMOTE_CODE)
    result = CliRunner().invoke(app, ["bench", "latency", "--model", str(folder), "--input-len", "4",
                                      "--output-len", "2", "--compare", "hf"], input="y\n")  # fmt: skip
    assert not (folder / "REMOTE_CODE_RAN").exists()
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    if model_type == "llama":  # transformers knows the type: its own code serves, the comparison runs
        assert "transformers failed" not in text and "tok/s ->" in text
    else:
        assert "transformers failed: ConfigError" in text and "tessera never runs checkpoint code" in text


def test_throughput_with_logprobs_and_penalties(tmp_path, monkeypatch, fresh_discovery):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    out = tmp_path / "tp.json"
    result = CliRunner().invoke(app, ["bench", "throughput", "--preset", "tiny-llama", "--num-prompts", "4", "--input-len", "16",
                                      "--output-len", "8", "--logprobs", "5", "--penalties", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["sampling"] == {
        "logprobs": 5,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "repetition_penalty": 1.1,
    }
    assert data["tessera"]["output_tokens"] == 32
