"""vLLM's request surface through the server. Fields SamplingParams does not have yet are refused with a clear
400; the tests of their effect run once SamplingParams has them."""

from __future__ import annotations

import httpx
import pytest

from tessera.sampling_params import SamplingParams

from .conftest import MODEL_NAME

FIELDS = SamplingParams.model_fields


def needs(*names):
    missing = [n for n in names if n not in FIELDS]
    return pytest.mark.skipif(bool(missing), reason=f"SamplingParams has no {', '.join(missing)} yet")


def test_seeded_sampling_repeats_and_equals_the_offline_api(server, reference):
    client = server.client()
    args = dict(model=MODEL_NAME, prompt=[11, 12, 13], max_tokens=12, temperature=1.0, seed=1234,
                extra_body={"return_token_ids": True, "ignore_eos": True})  # fmt: skip
    a, b = (client.completions.create(**args).choices[0] for _ in range(2))
    offline = reference.generate([[11, 12, 13]], {"temperature": 1.0, "max_tokens": 12, "seed": 1234,
                                                   "ignore_eos": True}, use_tqdm=False)[0].outputs[0]  # fmt: skip
    assert a.token_ids == b.token_ids == offline.token_ids
    other = client.completions.create(**{**args, "seed": 99}).choices[0]
    assert other.token_ids != a.token_ids


def test_vllm_extras_pass_through(server, reference):
    out = server.client().completions.create(model=MODEL_NAME, prompt=[20, 21], max_tokens=6, temperature=0,
                                             extra_body={"min_tokens": 6, "top_k": 5, "stop_token_ids": [77],
                                                         "return_token_ids": True})  # fmt: skip
    want = reference.generate([[20, 21]], {"temperature": 0, "max_tokens": 6, "min_tokens": 6, "top_k": 5,
                                           "stop_token_ids": (77,)}, use_tqdm=False)[0]  # fmt: skip
    assert out.choices[0].token_ids == want.outputs[0].token_ids
    assert out.choices[0].prompt_token_ids == [20, 21]


UNSUPPORTED = [("n", 2), ("stop", ["w5"]), ("logprobs", 2), ("presence_penalty", 0.5), ("frequency_penalty", 0.5),
               ("logit_bias", {"5": 10.0})]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_fields_this_version_lacks_are_a_clear_400(server, field, value):
    if field in FIELDS:
        pytest.skip(f"SamplingParams has {field}")
    body = {"model": MODEL_NAME, "prompt": "w5", "max_tokens": 2, field: value}
    response = httpx.post(server.base_url + "/v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "not supported by this server version" in error["message"] and error["param"] == field
    neutral = {"n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
    if field in neutral:  # the neutral value of a missing field is no request for it
        assert (
            httpx.post(server.base_url + "/v1/completions", json={**body, field: neutral[field]}).status_code
            == 200
        )


@needs("n")
def test_n_gives_n_choices(server):
    out = server.client().completions.create(model=MODEL_NAME, prompt=["w5", "w6"], n=2, max_tokens=4,
                                             temperature=1.0, seed=3)  # fmt: skip
    assert sorted(c.index for c in out.choices) == [0, 1, 2, 3]
    chat = server.client().chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "w5"}],
                                                   n=2, max_tokens=4)  # fmt: skip
    assert [c.index for c in chat.choices] == [0, 1]


@needs("stop", "include_stop_str_in_output")
def test_stop_strings(server, reference):
    full = reference.generate([[30, 31]], {"temperature": 0, "max_tokens": 12, "ignore_eos": True},
                              use_tqdm=False)[0].outputs[0]  # fmt: skip
    word = full.text.split()[3]
    out = server.client().completions.create(model=MODEL_NAME, prompt=[30, 31], max_tokens=12, temperature=0,
                                             stop=[word], extra_body={"ignore_eos": True})  # fmt: skip
    assert word not in out.choices[0].text and out.choices[0].finish_reason == "stop"
    assert full.text.startswith(out.choices[0].text.rstrip())


@needs("logprobs")
def test_logprobs(server):
    out = server.client().completions.create(model=MODEL_NAME, prompt=[30, 31], max_tokens=4, temperature=0,
                                             logprobs=3)  # fmt: skip
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) >= 1
    assert all(v <= 0 for v in lp.token_logprobs) and all(1 <= len(t) <= 4 for t in lp.top_logprobs)
    chat = server.client().chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "w5"}],
                                                   max_tokens=3, logprobs=True, top_logprobs=2)  # fmt: skip
    assert chat.choices[0].logprobs.content and all(c.logprob <= 0 for c in chat.choices[0].logprobs.content)


@needs("presence_penalty", "frequency_penalty", "repetition_penalty")
def test_penalties_change_greedy_output(server):
    client = server.client()
    args = dict(model=MODEL_NAME, prompt=[40, 40, 40], max_tokens=16, temperature=0,
                extra_body={"ignore_eos": True, "return_token_ids": True})  # fmt: skip
    plain = client.completions.create(**args).choices[0].token_ids
    penalized = (
        client.completions.create(**args, frequency_penalty=2.0, presence_penalty=2.0).choices[0].token_ids
    )
    assert len(set(penalized)) >= len(set(plain)) and penalized != plain
    assert client.completions.create(
        **{**args, "extra_body": {**args["extra_body"], "repetition_penalty": 1.5}}
    )
