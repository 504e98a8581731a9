"""Bad input gets a clear error, and nothing already accepted is lost."""

from __future__ import annotations

import json
import shutil

import pytest

from tessera import LLM, SamplingParams
from tessera.errors import ConfigError, PlatformError, TesseraError
from tessera.models.spec import ModelLoadError
from tessera.plugins import select_platform


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        LLM(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        LLM(str(tmp_path))


def test_unreadable_config(tmp_path):
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ModelLoadError, match="cannot read"):
        LLM(str(tmp_path))


def test_unsupported_architecture_lists_the_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(
        ModelLoadError,
        match=r"'GPT2LMHeadModel' is not supported; supported: BambaForCausalLM, LlamaForCausalLM",
    ):
        LLM(str(tmp_path))


def test_truncated_safetensors(tmp_path, checkpoints):
    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    weights = target / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        LLM(str(target))


def test_missing_tensors(tmp_path, checkpoints):
    from safetensors.torch import load_file, save_file

    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    tensors = load_file(target / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, target / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"layers.1.mlp.gate_up_proj.weight not \(fully\) loaded"):
        LLM(str(target))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"temperature": 0, "max_tokens": 0}, "max_tokens must be at least 1"),
     ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"), ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
     ({"temperature": -1}, "greater than or equal to 0"), ({"min_tokens": 5, "max_tokens": 2}, "exceeds max_tokens")],
)  # fmt: skip
def test_sampling_params_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_engine_config_errors(checkpoints):
    path = str(checkpoints("llama"))
    with pytest.raises(PlatformError, match="unknown platform 'tpu'"):
        LLM(path, platform="tpu")
    with pytest.raises(ConfigError, match="max_num_seqs"):
        LLM(path, max_num_seqs=0)
    with pytest.raises(ConfigError, match="block_size must be a power of two"):
        LLM(path, block_size=12)
    with pytest.raises(ConfigError, match="exceeds the model's max_position_embeddings"):
        LLM(path, max_model_len=100000)


def test_unsupported_dtype(checkpoints, monkeypatch):
    monkeypatch.setenv("TESSERA_CPU_DTYPES", "float32")  # a CPU without bf16 or fp16, whatever this host has
    assert select_platform("cpu").capabilities().dtypes == ("float32",)
    with pytest.raises(PlatformError, match="dtype bfloat16 is not supported on this platform"):
        LLM(str(checkpoints("llama")), dtype="bfloat16", platform="cpu")


def test_prompt_errors_do_not_disturb_requests_in_flight(checkpoints):
    llm = LLM(str(checkpoints("llama")), max_model_len=64)
    engine = llm.engine
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    expected = llm.generate([{"prompt_token_ids": [4, 5, 6]}], params)[0].outputs[0].token_ids
    good = engine.add_request({"prompt_token_ids": [4, 5, 6]}, params)
    engine.step()
    for bad, match in (({"prompt_token_ids": list(range(3, 70))}, "max_model_len is 64"),
                       ({"prompt_token_ids": []}, "the prompt is empty"),
                       ({"prompt_token_ids": [5, 100000]}, "prompt token ids must lie in"),
                       (3.5, "a prompt is a string")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            engine.add_request(bad, params)
    done = {}
    while engine.has_unfinished():
        done.update({o.request_id: o for o in engine.step() if o.finished})
    assert done[good].outputs[0].token_ids == expected


def test_generate_rejects_an_empty_list_and_rolls_back_a_bad_batch(checkpoints):
    llm = LLM(str(checkpoints("llama")))
    with pytest.raises(ConfigError, match="empty prompt list"):
        llm.generate([])
    with pytest.raises(ConfigError):
        llm.generate([{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": []}])
    assert not llm.engine.has_unfinished()
    assert llm.generate([{"prompt_token_ids": [1, 2]}], SamplingParams(max_tokens=2))[0].finished


def test_text_prompt_without_tokenizer(checkpoints):
    with pytest.raises(TesseraError, match="no usable tokenizer"):
        LLM(str(checkpoints("llama"))).generate(["hello"])
