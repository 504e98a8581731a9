"""The real server driven by the official openai client: greedy outputs equal the offline API token for token."""

from __future__ import annotations

import httpx

from .conftest import MODEL_NAME

GREEDY = dict(temperature=0.0)
EOS = 2


def words_to_ids(reference, text: str) -> list[int]:
    return reference.engine.tokenizer.encode(text, add_special_tokens=False)


def expected(reference, prompt, max_tokens: int) -> list[int]:
    out = reference.generate([prompt], {"temperature": 0.0, "max_tokens": max_tokens}, use_tqdm=False)[0]
    return [t for t in out.outputs[0].token_ids if t != EOS]  # EOS is a special token: not in the text


def test_completion_equals_generate(server, reference):
    client = server.client()
    out = client.completions.create(model=MODEL_NAME, prompt="w10 w11 w12", max_tokens=12,
                                    extra_body={"return_token_ids": True}, **GREEDY)  # fmt: skip
    choice = out.choices[0]
    offline = reference.generate(["w10 w11 w12"], {"temperature": 0.0, "max_tokens": 12}, use_tqdm=False)[0]
    assert choice.token_ids == offline.outputs[0].token_ids and choice.text == offline.outputs[0].text
    assert words_to_ids(reference, choice.text) == expected(reference, "w10 w11 w12", 12)
    assert choice.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens == 3 and out.usage.completion_tokens >= len(choice.text.split())
    assert out.object == "text_completion" and out.model == MODEL_NAME


def test_streamed_completion_equals_the_whole(server, reference):
    client = server.client()
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=[7, 8, 9], max_tokens=10, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY))  # fmt: skip
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert words_to_ids(reference, text) == expected(reference, [7, 8, 9], 10)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_several_prompts_give_one_choice_each(server, reference):
    prompts = ["w20 w21", "w30 w31 w32", "w40"]
    out = server.client().completions.create(model=MODEL_NAME, prompt=prompts, max_tokens=6, **GREEDY)
    assert [c.index for c in out.choices] == [0, 1, 2]
    for prompt, choice in zip(prompts, out.choices, strict=True):
        assert words_to_ids(reference, choice.text) == expected(reference, prompt, 6)


def test_chat_equals_llm_chat(server, reference):
    messages = [{"role": "system", "content": "w50 w51"}, {"role": "user", "content": "w60 w61 w62"}]
    out = server.client().chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=9,
                                                  extra_body={"return_token_ids": True}, **GREEDY)  # fmt: skip
    offline = reference.chat(messages, {"temperature": 0.0, "max_tokens": 9}, use_tqdm=False)[0]
    assert out.choices[0].token_ids == offline.outputs[0].token_ids
    assert out.choices[0].prompt_token_ids == offline.prompt_token_ids
    # the template: <s> system : w50 w51 user : w60 w61 w62 assistant :
    assert offline.prompt_token_ids == [1, 3, 6, 50, 51, 4, 6, 60, 61, 62, 5, 6]
    assert out.usage.prompt_tokens == len(offline.prompt_token_ids)
    message = out.choices[0].message
    assert message.role == "assistant"
    assert words_to_ids(reference, message.content) == [t for t in offline.outputs[0].token_ids if t != EOS]


def test_streamed_chat_equals_the_whole(server, reference):
    messages = [{"role": "user", "content": "w70 w71"}]
    client = server.client()
    whole = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=8, **GREEDY)
    chunks = list(client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=8, stream=True,
                                                 **GREEDY))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert {c.object for c in chunks} == {"chat.completion.chunk"}


def test_raw_sse_lines_end_with_done(server):
    body = {"model": MODEL_NAME, "prompt": "w5", "max_tokens": 3, "stream": True, "temperature": 0}
    with httpx.stream("POST", server.base_url + "/v1/completions", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]" and len(lines) >= 2


def test_models_tokenize_detokenize_health(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    tokens = httpx.post(server.base_url + "/tokenize", json={"prompt": "w9 w10 user"}).json()
    assert tokens["tokens"] == [9, 10, 4] and tokens["count"] == 3 and tokens["max_model_len"] == 128
    chat = httpx.post(
        server.base_url + "/tokenize", json={"messages": [{"role": "user", "content": "w9"}]}
    ).json()
    assert chat["tokens"] == [1, 4, 6, 9, 5, 6]
    assert httpx.post(server.base_url + "/detokenize", json={"tokens": [9, 10, 4]}).json() == {
        "prompt": "w9 w10 user"
    }
    assert httpx.get(server.base_url + "/health").status_code == 200


def test_metrics_count_tokens_and_latencies(server):
    from .conftest import metric

    before = metric(httpx.get(server.base_url + "/metrics").text, "generation_tokens_total")
    server.client().completions.create(
        model=MODEL_NAME, prompt="w3 w4", max_tokens=5, extra_body={"ignore_eos": True}, **GREEDY
    )
    page = httpx.get(server.base_url + "/metrics").text
    assert metric(page, "generation_tokens_total") == before + 5
    assert metric(page, "time_to_first_token_seconds_count") >= 1
    assert metric(page, "e2e_request_latency_seconds_count") >= 1
    assert "# TYPE tessera:time_per_output_token_seconds histogram" in page
    assert 'le="+Inf"' in page and metric(page, "kv_blocks_total") > 0
