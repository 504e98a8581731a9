"""vLLM's request surface through the server: seeded sampling, vLLM's extra fields, n, stop strings,
logprobs and penalties, each equal to what the offline API gives for the same SamplingParams."""

from __future__ import annotations

import httpx

from .conftest import MODEL_NAME


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


def test_n_gives_n_choices(server):
    out = server.client().completions.create(model=MODEL_NAME, prompt=["w5", "w6"], n=2, max_tokens=4,
                                             temperature=1.0, seed=3)  # fmt: skip
    assert sorted(c.index for c in out.choices) == [0, 1, 2, 3]
    chat = server.client().chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "w5"}],
                                                   n=2, max_tokens=4)  # fmt: skip
    assert [c.index for c in chat.choices] == [0, 1]


def test_stop_strings(server, reference):
    full = reference.generate([[30, 31]], {"temperature": 0, "max_tokens": 12, "ignore_eos": True},
                              use_tqdm=False)[0].outputs[0]  # fmt: skip
    word = full.text.split()[3]
    out = server.client().completions.create(model=MODEL_NAME, prompt=[30, 31], max_tokens=12, temperature=0,
                                             stop=[word], extra_body={"ignore_eos": True})  # fmt: skip
    assert word not in out.choices[0].text and out.choices[0].finish_reason == "stop"
    assert full.text.startswith(out.choices[0].text.rstrip())


def test_logprobs(server):
    out = server.client().completions.create(model=MODEL_NAME, prompt=[30, 31], max_tokens=4, temperature=0,
                                             logprobs=3)  # fmt: skip
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) >= 1
    assert all(v <= 0 for v in lp.token_logprobs) and all(1 <= len(t) <= 4 for t in lp.top_logprobs)
    chat = server.client().chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "w5"}],
                                                   max_tokens=3, logprobs=True, top_logprobs=2)  # fmt: skip
    assert chat.choices[0].logprobs.content and all(c.logprob <= 0 for c in chat.choices[0].logprobs.content)


def test_chat_top_logprobs_gives_exactly_that_many(server):
    """Chat's top_logprobs=k lists k alternatives per token whether or not the sampled token is among them
    (completions' logprobs=k may list k + 1: the sampled token is added there, as in OpenAI's legacy API)."""
    for k in (0, 1, 3):
        chat = server.client().chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "w5"}],
                                                       max_tokens=6, logprobs=True, top_logprobs=k, temperature=1.5,
                                                       seed=3, extra_body={"ignore_eos": True})  # fmt: skip
        content = chat.choices[0].logprobs.content
        assert len(content) == 6 and all(len(c.top_logprobs) == k for c in content), (k, content)


def test_prompt_logprobs_in_completions_and_chat(server, reference):
    want = reference.generate([[30, 31, 32]], {"max_tokens": 1, "prompt_logprobs": 2}, use_tqdm=False)[0]
    body = {"model": MODEL_NAME, "prompt": [30, 31, 32], "max_tokens": 1, "prompt_logprobs": 2}
    got = httpx.post(server.base_url + "/v1/completions", json=body, timeout=30).json()["choices"][0]
    lps = got["prompt_logprobs"]
    assert len(lps) == 3 and lps[0] is None
    for position, entry in enumerate(want.prompt_logprobs[1:], start=1):
        assert set(lps[position]) == {str(t) for t in entry}
        for t, v in entry.items():
            assert (
                abs(lps[position][str(t)]["logprob"] - v.logprob) < 1e-4
                and lps[position][str(t)]["rank"] == v.rank
            )
    stream = httpx.post(server.base_url + "/v1/completions", json={**body, "stream": True}, timeout=30).text
    assert '"prompt_logprobs":[null,' in stream
    chat = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "w5"}],
        "max_tokens": 1,
        "prompt_logprobs": 1,
    }
    answer = httpx.post(server.base_url + "/v1/chat/completions", json=chat, timeout=30).json()
    assert answer["prompt_logprobs"][0] is None and len(answer["prompt_logprobs"]) > 2


def test_chat_content_parts_are_joined_text(server):
    def tokens(content):
        body = {"messages": [{"role": "user", "content": content}]}
        return httpx.post(server.base_url + "/tokenize", json=body, timeout=30).json()["tokens"]

    parts = [{"type": "text", "text": "w10 w11"}, {"type": "text", "text": "w12"}]
    assert tokens(parts) == tokens("w10 w11\nw12") and 0 not in tokens(parts)  # 0 is <unk>


def test_penalties_change_greedy_output(server, reference):
    client = server.client()
    args = dict(model=MODEL_NAME, prompt=[40, 40, 40], max_tokens=16, temperature=0,
                extra_body={"ignore_eos": True, "return_token_ids": True})  # fmt: skip
    plain = client.completions.create(**args).choices[0].token_ids
    penalized = (
        client.completions.create(**args, frequency_penalty=2.0, presence_penalty=2.0).choices[0].token_ids
    )
    assert len(set(penalized)) >= len(set(plain)) and penalized != plain
    offline = reference.generate([[40, 40, 40]], {"temperature": 0, "max_tokens": 16, "ignore_eos": True,
                                                   "frequency_penalty": 2.0, "presence_penalty": 2.0},
                                 use_tqdm=False)[0].outputs[0]  # fmt: skip
    assert penalized == offline.token_ids
    repeated = client.completions.create(
        **{**args, "extra_body": {**args["extra_body"], "repetition_penalty": 1.5}}
    )
    want = reference.generate([[40, 40, 40]], {"temperature": 0, "max_tokens": 16, "ignore_eos": True,
                                                "repetition_penalty": 1.5}, use_tqdm=False)[0].outputs[0]  # fmt: skip
    assert repeated.choices[0].token_ids == want.token_ids


def test_a_lone_surrogate_fails_its_prompt_alone(server, reference):
    """Text no tokenizer can take (a lone surrogate, which JSON's \\ud800 escape can carry) is that prompt's error:
    the other prompts of the call are served, and the server answers 400."""
    good, bad = reference.generate(["w10 w11", "w10 \ud800"], {"max_tokens": 2}, use_tqdm=False)
    assert good.error is None and len(good.outputs[0].token_ids) == 2
    assert bad.outputs[0].finish_reason == "error" and "is a lone surrogate" in bad.error
    raw = b'{"model": "tiny-chat", "prompt": "w10 \\ud800", "max_tokens": 2}'
    response = httpx.post(server.base_url + "/v1/completions", content=raw, timeout=30)
    assert response.status_code == 400 and "lone surrogate" in response.json()["error"]["message"], (
        response.text
    )


def test_a_lone_surrogate_in_a_chat_is_a_clear_error(reference):
    """As for messages without a role, LLM.chat refuses the call, with what is wrong (not a UnicodeEncodeError)."""
    import pytest

    from tessera.errors import ConfigError

    with pytest.raises(ConfigError, match="the rendered chat is not valid text: .* is a lone surrogate"):
        reference.chat([{"role": "user", "content": "w10 \ud800"}], {"max_tokens": 2}, use_tqdm=False)
