"""Bad input gets a clear error, and nothing already accepted is lost."""

from __future__ import annotations

import json
import shutil

import pytest

from tessera import LLM, SamplingParams
from tessera.discovery import select_platform
from tessera.errors import ConfigError, PlatformError, TesseraError
from tessera.models.spec import ModelLoadError


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
     ({"temperature": -1}, "greater than or equal to 0"), ({"min_tokens": 5, "max_tokens": 2}, "exceeds max_tokens"),
     ({"temperature": float("inf")}, "temperature must be a finite number"),
     ({"temperature": float("nan")}, "temperature must be a finite number"),
     ({"temperature": "inf"}, "temperature must be a finite number")],
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


def test_generate_rejects_an_empty_list_and_serves_the_good_prompts_of_a_bad_batch(checkpoints):
    llm = LLM(str(checkpoints("llama")))
    with pytest.raises(ConfigError, match="empty prompt list"):
        llm.generate([])
    good, bad = llm.generate([{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": []}])
    assert good.finished and good.outputs[0].finish_reason in ("stop", "length") and good.error is None
    assert bad.finished and bad.outputs[0].finish_reason == "error" and "the prompt is empty" in bad.error
    assert not llm.engine.has_unfinished()
    assert llm.generate([{"prompt_token_ids": [1, 2]}], SamplingParams(max_tokens=2))[0].finished


def test_text_prompt_without_tokenizer(checkpoints):
    llm = LLM(str(checkpoints("llama")))
    with pytest.raises(TesseraError, match="no usable tokenizer"):
        llm.engine.add_request("hello")
    (out,) = llm.generate(["hello"])  # generate reports it per request instead of raising
    assert out.outputs[0].finish_reason == "error" and "no usable tokenizer" in out.error


@pytest.mark.parametrize(
    ("prompt", "match"),
    [({"prompt_token_ids": [5.9, 6.2]}, r"item 0 is 5.9 \(float\)"), ({"prompt_token_ids": ["a"]}, r"item 0 is 'a' \(str\)"),
     ({"prompt_token_ids": [5, True]}, r"item 1 is True \(bool\)"), ([4, 5.0], r"item 1 is 5.0 \(float\)"),
     ({"prompt_token_ids": "abc"}, "must be a list of integer token ids, got str"), ({"prompt": 3}, "must be a string")],
)  # fmt: skip
def test_non_integer_token_ids_are_refused_not_truncated(prompt, match, checkpoints):
    engine = LLM(str(checkpoints("llama"))).engine
    with pytest.raises(ConfigError, match=match):
        engine.add_request(prompt)
    assert not engine.has_unfinished()


def test_sampling_params_as_a_dict_are_validated(checkpoints):
    llm = LLM(str(checkpoints("llama")))
    prompt = {"prompt_token_ids": [4, 5, 6]}
    as_dict = llm.generate(prompt, {"temperature": 0, "max_tokens": 3, "ignore_eos": True})[0]
    typed = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))[0]
    assert as_dict.outputs[0].token_ids == typed.outputs[0].token_ids and len(typed.outputs[0].token_ids) == 3
    with pytest.raises(
        ConfigError, match="invalid sampling params.*temprature: Extra inputs are not permitted"
    ):
        llm.generate(prompt, {"temprature": 0})
    with pytest.raises(ConfigError, match="must be a SamplingParams .or a dict of its fields., got int"):
        llm.engine.add_request(prompt, 3)
    first, second = llm.generate([prompt, prompt], [SamplingParams(max_tokens=2), {"max_tokens": -1}])
    assert first.error is None and len(first.outputs[0].token_ids) <= 2
    assert second.outputs[0].finish_reason == "error" and "max_tokens must be at least 1" in second.error
    assert not llm.engine.has_unfinished()


def test_one_bad_request_in_a_batch_is_rejected_by_itself(checkpoints):
    llm = LLM(str(checkpoints("llama")), max_model_len=64)
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    good = [{"prompt_token_ids": [4, 5, 6]}, [7, 8, 9]]
    alone = [o.outputs[0].token_ids for o in llm.generate(good, params)]
    batch = [good[0], {"prompt_token_ids": [5.5]}, "text without a tokenizer", {"prompt_token_ids": [5, 10**6]},
             good[1], {"prompt_token_ids": list(range(3, 80))}, 3.5]  # fmt: skip
    outs = llm.generate(batch, params)
    assert len(outs) == len(batch) and len({o.request_id for o in outs}) == len(batch)
    assert [o.outputs[0].token_ids for o in (outs[0], outs[4])] == alone
    reasons = [
        "item 0 is 5.5",
        "no usable tokenizer",
        "must lie in",
        "max_model_len is 64",
        "a prompt is a string",
    ]
    for out, reason in zip([outs[i] for i in (1, 2, 3, 5, 6)], reasons, strict=True):
        assert out.finished and out.outputs[0].finish_reason == "error" and out.outputs[0].token_ids == []
        assert reason in out.error
    assert outs[2].prompt == "text without a tokenizer"
    assert llm.engine.kv.pool.num_free == llm.engine.kv.pool.num_blocks and not llm.engine.has_unfinished()


def test_tiny_temperatures_generate_like_greedy_also_with_min_tokens(checkpoints):
    """1e-40, 1e-38 and 1e-45 used to give token 0 every time (NaN probabilities); they act like greedy."""
    llm = LLM(str(checkpoints("llama")))
    prompt = {"prompt_token_ids": [5, 6, 7]}
    greedy = (
        llm.generate(prompt, SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))[0]
        .outputs[0]
        .token_ids
    )
    stop = dict(min_tokens=3, stop_token_ids=(greedy[0],), max_tokens=6)
    held = llm.generate(prompt, SamplingParams(temperature=0, **stop))[0].outputs[0].token_ids
    assert held[0] != greedy[0] and len(held) >= 3
    for t in (1e-40, 1e-38, 1e-45):
        tiny = llm.generate(prompt, SamplingParams(temperature=t, max_tokens=8, ignore_eos=True, seed=1))[0]
        assert tiny.outputs[0].token_ids == greedy, t
        assert llm.generate(prompt, SamplingParams(temperature=t, **stop))[0].outputs[0].token_ids == held, t


LLAMA = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
         "vocab_size": 50, "intermediate_size": 32}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "match"),
    [(None, "must hold a JSON object of model settings, got NoneType"), ([1], "must hold a JSON object"),
     ({**LLAMA, "num_attention_heads": 0}, "num_attention_heads is 0 .int.; it must be a positive integer"),
     ({**LLAMA, "hidden_size": "64"}, "hidden_size is '64' .str.; it must be a positive integer"),
     ({**LLAMA, "hidden_size": True}, "hidden_size is True .bool."),
     ({**LLAMA, "rms_norm_eps": "tiny"}, "rms_norm_eps is 'tiny' .str.; it must be a positive number"),
     ({**LLAMA, "architectures": "LlamaForCausalLM"}, r'not a string: write \["LlamaForCausalLM"\]'),
     ({**LLAMA, "eos_token_id": [2, "x"]}, "a token id or a list of token ids"),
     ({**LLAMA, "num_key_value_heads": 3}, r"num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)"),
     ({**LLAMA, "hidden_size": 66}, "hidden_size .66. is not a multiple of num_attention_heads .4. and no head_dim")],
)  # fmt: skip
def test_config_json_is_validated_with_clear_errors(config, match, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=match) as info:
        LLM(str(tmp_path))
    assert str(tmp_path / "config.json") in str(info.value)


def test_a_null_required_field_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA, "hidden_size": None}))
    with pytest.raises(ConfigError, match="lacks hidden_size .missing or null."):
        LLM(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "match"),
    [("{broken", "cannot read .*tokenizer_config.json: Expecting property name"), ("[1, 2]", "must hold a JSON object"),
     ('{"tokenizer_class": 5}', "tokenizer_class is 5"),
     ('{"tokenizer_class": "TesseraByteTokenizer", "bos_token_id": "1"}', "bos_token_id is '1'")],
)  # fmt: skip
def test_malformed_tokenizer_config_is_a_clear_error(text, match, tmp_path, checkpoints):
    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    (target / "tokenizer_config.json").write_text(text)
    with pytest.raises(ModelLoadError, match=match):
        LLM(str(target))
