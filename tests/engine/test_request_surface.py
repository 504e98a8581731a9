"""The request surface, offline: SamplingParams fields against transformers (the oracle) on tiny checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tessera import LLM, SamplingParams
from tessera.errors import ConfigError
from tessera.sampling_params import to_sampling_params

PROMPT = [3, 17, 42, 9, 100]


def hf_model(path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def ids(prompt=PROMPT):
    return {"prompt_token_ids": list(prompt)}


@pytest.fixture(scope="module")
def llama_llm(checkpoints):
    return LLM(str(checkpoints("llama")), max_num_batched_tokens=64)


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"n": 0}, "n"), ({"top_p": 2}, "top_p"), ({"logprobs": 100}, "logprobs"), ({"prompt_logprobs": 21}, "prompt_logprobs"),
     ({"presence_penalty": 3}, "presence_penalty"), ({"frequency_penalty": -2.5}, "frequency_penalty"),
     ({"repetition_penalty": 0}, "repetition_penalty"), ({"min_p": 1.5}, "min_p"), ({"max_tokens": 0}, "max_tokens"),
     ({"stop": [""]}, "stop"), ({"logit_bias": {3: 500}}, "logit_bias"), ({"temperature": float("nan")}, "temperature"),
     ({"min_tokens": 5, "max_tokens": 2}, "min_tokens")],
)  # fmt: skip
def test_bad_fields_are_refused_with_the_field_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        to_sampling_params(fields)


def test_token_ids_in_params_must_be_in_the_vocabulary(llama_llm):
    for params in ({"logit_bias": {5000: 1.0}}, {"stop_token_ids": [211]}):
        out = llama_llm.generate([ids()], params, use_tqdm=False)[0]
        assert out.outputs[0].finish_reason == "error" and "outside the vocabulary" in out.error


def test_repetition_penalty_matches_transformers(llama_llm, checkpoints):
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, repetition_penalty=1.5)
    ours = llama_llm.generate([ids()], params, use_tqdm=False)[0].outputs[0].token_ids
    plain = llama_llm.generate([ids()], params.model_copy(update={"repetition_penalty": 1.0}), use_tqdm=False)
    ref = hf_model(checkpoints("llama")).generate(torch.tensor([PROMPT]), max_new_tokens=24, do_sample=False,
                                                  repetition_penalty=1.5, eos_token_id=None, pad_token_id=0)  # fmt: skip
    assert ours == ref[0, len(PROMPT) :].tolist()
    assert ours != plain[0].outputs[0].token_ids  # the penalty changed something


def test_presence_and_frequency_penalties_follow_their_definition(llama_llm, checkpoints):
    params = SamplingParams(
        temperature=0, max_tokens=16, ignore_eos=True, presence_penalty=1.5, frequency_penalty=0.7
    )
    ours = llama_llm.generate([ids()], params, use_tqdm=False)[0].outputs[0].token_ids
    model, seq, expected = hf_model(checkpoints("llama")), list(PROMPT), []
    with torch.no_grad():
        for _ in range(16):
            logits = model(torch.tensor([seq])).logits[0, -1]
            counts = torch.bincount(
                torch.tensor(expected, dtype=torch.long), minlength=logits.shape[0]
            ).float()
            token = int(torch.argmax(logits - 0.7 * counts - 1.5 * (counts > 0).float()))
            expected.append(token)
            seq.append(token)
    assert ours == expected


def test_logprobs_are_transformers_log_softmax(llama_llm, checkpoints):
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, logprobs=5, prompt_logprobs=3)
    out = llama_llm.generate([ids()], params, use_tqdm=False)[0]
    completion = out.outputs[0]
    seq = PROMPT + completion.token_ids
    with torch.no_grad():
        ref = torch.log_softmax(hf_model(checkpoints("llama"))(torch.tensor([seq])).logits[0].float(), -1)
    assert len(completion.logprobs) == 8
    total = 0.0
    for i, (token, entry) in enumerate(zip(completion.token_ids, completion.logprobs, strict=True)):
        row = ref[len(PROMPT) - 1 + i]
        top = torch.topk(row, 5)
        assert list(entry)[0] == token and entry[token].rank == 1  # greedy: the sampled token is the top one
        assert set(entry) == set(top.indices.tolist())
        for t, lp in entry.items():
            assert abs(lp.logprob - float(row[t])) < 1e-4
        total += float(row[token])
    assert abs(completion.cumulative_logprob - total) < 1e-3
    assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == len(PROMPT)
    for p in range(1, len(PROMPT)):
        entry = out.prompt_logprobs[p]
        true = PROMPT[p]
        assert abs(entry[true].logprob - float(ref[p - 1, true])) < 1e-4
        assert entry[true].rank == int((ref[p - 1] > ref[p - 1, true]).sum()) + 1
        assert len(entry) in (3, 4)  # the true token plus the top 3 (it may be one of them)


def test_logit_bias_min_p_and_seeded_n(llama_llm):
    forced = llama_llm.generate([ids()], SamplingParams(temperature=0.9, seed=3, max_tokens=5, ignore_eos=True,
                                                        logit_bias={7: 100.0}), use_tqdm=False)[0]  # fmt: skip
    assert forced.outputs[0].token_ids == [7] * 5
    greedy = llama_llm.generate(
        [ids()], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True), use_tqdm=False
    )
    only_top = SamplingParams(temperature=1.0, min_p=1.0, seed=5, max_tokens=10, ignore_eos=True)
    assert (
        llama_llm.generate([ids()], only_top, use_tqdm=False)[0].outputs[0].token_ids
        == greedy[0].outputs[0].token_ids
    )
    params = SamplingParams(temperature=1.0, seed=11, n=3, max_tokens=12, ignore_eos=True)
    first, again = (llama_llm.generate([ids()], params, use_tqdm=False)[0] for _ in range(2))
    samples = [c.token_ids for c in first.outputs]
    assert [c.index for c in first.outputs] == [0, 1, 2] and len({tuple(s) for s in samples}) == 3
    assert samples == [c.token_ids for c in again.outputs]  # reproducible
    single = llama_llm.generate([ids()], params.model_copy(update={"n": 1}), use_tqdm=False)[0]
    assert single.outputs[0].token_ids == samples[0]


def test_max_tokens_none_fills_the_context(checkpoints):
    llm = LLM(str(checkpoints("llama")), max_model_len=24)
    out = llm.generate(
        [ids()], SamplingParams(temperature=0, max_tokens=None, ignore_eos=True), use_tqdm=False
    )[0]
    assert len(out.outputs[0].token_ids) == 24 - len(PROMPT) and out.outputs[0].finish_reason == "length"


def test_stop_token_ids_give_stop_reason(llama_llm):
    greedy = llama_llm.generate(
        [ids()], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True), use_tqdm=False
    )
    tokens = greedy[0].outputs[0].token_ids
    stop = tokens[3]
    out = llama_llm.generate([ids()], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True,
                                                     stop_token_ids=[stop]), use_tqdm=False)[0].outputs[0]  # fmt: skip
    assert out.token_ids == tokens[: tokens.index(stop) + 1]
    assert out.finish_reason == "stop" and out.stop_reason == stop


def test_two_eos_ids_in_generation_config_stop_like_transformers(tmp_path, checkpoints):
    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    probe = LLM(str(target)).generate([ids()], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True),
                                      use_tqdm=False)[0].outputs[0].token_ids  # fmt: skip
    second = next(t for i, t in enumerate(probe) if i >= 3 and t not in probe[:i])
    unused = next(t for t in range(3, 211) if t not in probe)
    config = json.loads((target / "config.json").read_text())
    config["eos_token_id"] = unused
    (target / "config.json").write_text(json.dumps(config))
    (target / "generation_config.json").write_text(json.dumps({"eos_token_id": [unused, second], "max_new_tokens": 12,
                                                               "do_sample": False}))  # fmt: skip
    out = LLM(str(target)).generate([ids()], SamplingParams(temperature=0), use_tqdm=False)[0].outputs[0]
    ref = hf_model(target).generate(torch.tensor([PROMPT]), pad_token_id=0)[0, len(PROMPT) :].tolist()
    assert out.token_ids == ref == probe[: probe.index(second) + 1]
    assert out.finish_reason == "stop" and out.stop_reason is None


def test_generation_config_defaults_apply_only_to_unset_fields(tmp_path, checkpoints):
    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    (target / "generation_config.json").write_text(json.dumps({"temperature": 0.0, "max_new_tokens": 7}))
    llm = LLM(str(target))
    defaulted = llm.generate([ids()], SamplingParams(ignore_eos=True), use_tqdm=False)[0].outputs[0]
    greedy = llm.generate(
        [ids()], SamplingParams(temperature=0, max_tokens=7, ignore_eos=True), use_tqdm=False
    )
    assert defaulted.token_ids == greedy[0].outputs[0].token_ids and len(defaulted.token_ids) == 7
    user = llm.generate(
        [ids()], SamplingParams(temperature=1.0, seed=1, max_tokens=3, ignore_eos=True), use_tqdm=False
    )
    assert len(user[0].outputs[0].token_ids) == 3


def test_penalties_and_logprobs_under_async_equal_sync(checkpoints):
    params = SamplingParams(temperature=0.7, seed=2, max_tokens=20, ignore_eos=True, logprobs=2, presence_penalty=0.5,
                            frequency_penalty=0.5, repetition_penalty=1.1, n=2)  # fmt: skip
    prompts = [ids(), ids(range(20, 60))]
    runs = [LLM(str(checkpoints("llama")), async_scheduling=a, max_num_batched_tokens=32).generate(prompts, params,
            use_tqdm=False) for a in (True, False)]  # fmt: skip
    for a, b in zip(*runs, strict=True):
        assert [c.token_ids for c in a.outputs] == [c.token_ids for c in b.outputs]
        assert a.outputs[1].cumulative_logprob == pytest.approx(b.outputs[1].cumulative_logprob, abs=1e-4)
