"""Each bad request gets its status and a message that says what was wrong, and never harms running requests."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from .conftest import MODEL_NAME, Server

CHAT = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "w9"}], "max_tokens": 4}
COMPLETION = {"model": MODEL_NAME, "prompt": "w9 w10", "max_tokens": 4}
LONG_PROMPT = " ".join(f"w{10 + i % 100}" for i in range(200))


def post(server, path: str, **kwargs) -> httpx.Response:
    return httpx.post(server.base_url + path, timeout=30, **kwargs)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


BAD = [
    (
        "malformed JSON",
        "/v1/completions",
        {"content": b'{"model": "tiny-chat", "prompt": '},
        400,
        "not valid JSON",
    ),
    (
        "unknown field",
        "/v1/completions",
        {"json": {**COMPLETION, "max_token": 5}},
        400,
        "unknown field 'max_token'",
    ),
    ("negative max_tokens", "/v1/completions", {"json": {**COMPLETION, "max_tokens": -1}}, 400, "max_tokens"),
    (
        "prompt over the context",
        "/v1/completions",
        {"json": {**COMPLETION, "prompt": LONG_PROMPT}},
        400,
        "the prompt has 200 tokens, max_model_len is 128",
    ),
    (
        "n=0",
        "/v1/completions",
        {"json": {**COMPLETION, "n": 0}},
        400,
        "n: Input should be greater than or equal to 1",
    ),
    (
        "top_p=2",
        "/v1/chat/completions",
        {"json": {**CHAT, "top_p": 2}},
        400,
        "top_p: Input should be less than or equal to 1",
    ),
    (
        "logprobs=100",
        "/v1/completions",
        {"json": {**COMPLETION, "logprobs": 100}},
        400,
        "logprobs: Input should be less than or equal to 20",
    ),
    (
        "top_logprobs=100",
        "/v1/chat/completions",
        {"json": {**CHAT, "logprobs": True, "top_logprobs": 100}},
        400,
        "top_logprobs: Input should be less than or equal to 20",
    ),
    (
        "a seed over 64 bits",
        "/v1/completions",
        {"json": {**COMPLETION, "seed": 2**70}},
        400,
        "seed must fit in a signed 64-bit integer",
    ),
    (
        "a stop token id over 64 bits",
        "/v1/chat/completions",
        {"json": {**CHAT, "stop_token_ids": [2**64]}},
        400,
        "token id in stop_token_ids must fit in a signed 64-bit integer",
    ),
    ("empty messages", "/v1/chat/completions", {"json": {**CHAT, "messages": []}}, 400, "messages is empty"),
    (
        "message without a role",
        "/v1/chat/completions",
        {"json": {**CHAT, "messages": [{"content": "w1"}]}},
        400,
        "message 0 has no role",
    ),
    ("empty prompt", "/v1/completions", {"json": {**COMPLETION, "prompt": []}}, 400, "prompt is empty"),
    (
        "token id out of the vocabulary",
        "/v1/completions",
        {"json": {**COMPLETION, "prompt": [5, 9999]}},
        400,
        "prompt token ids must lie in [0, 211)",
    ),
    (
        "tools",
        "/v1/chat/completions",
        {"json": {**CHAT, "tools": [{"type": "function"}]}},
        400,
        "not supported by this server version",
    ),
    ("a body that is not an object", "/v1/completions", {"json": [1, 2]}, 400, "must be a JSON object"),
    (
        "max_tokens past the context",
        "/v1/completions",
        {"json": {**COMPLETION, "max_tokens": 100_000_000}},
        400,
        "maximum context length is 128 tokens: the prompt has 2 and max_tokens asks for 100000000 more",
    ),
    (
        "max_completion_tokens past the context",
        "/v1/chat/completions",
        {"json": {**CHAT, "max_tokens": None, "max_completion_tokens": 500}},
        400,
        "lower max_tokens to at most",
    ),
    (
        "top_logprobs without logprobs",
        "/v1/chat/completions",
        {"json": {**CHAT, "top_logprobs": 3}},
        400,
        "top_logprobs needs logprobs set to true",
    ),
    (
        "stream_options without stream",
        "/v1/completions",
        {"json": {**COMPLETION, "stream_options": {"include_usage": True}}},
        400,
        "stream_options applies only to streamed responses",
    ),
    (
        "an image in a text model's chat",
        "/v1/chat/completions",
        {
            "json": {
                **CHAT,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            }
        },
        400,
        "content part of type 'image_url': this model takes text only",
    ),
    (
        "a role that is not a string",
        "/v1/chat/completions",
        {"json": {**CHAT, "messages": [{"role": 5}]}},
        400,
        "message 0's role must be a string, got int",
    ),  # fmt: skip
    (
        "detokenize a negative id",
        "/detokenize",
        {"json": {"tokens": [-1]}},
        400,
        "tokens must lie in [0, 211)",
    ),
    (
        "detokenize an id past the vocabulary",
        "/detokenize",
        {"json": {"tokens": [10, 99999]}},
        400,
        "got [99999]",
    ),
    (
        "unknown model",
        "/v1/completions",
        {"json": {**COMPLETION, "model": "gpt-9"}},
        404,
        "the model 'gpt-9' does not exist",
    ),
    (
        "unknown model in chat",
        "/v1/chat/completions",
        {"json": {**CHAT, "model": "gpt-9"}},
        404,
        "does not exist",
    ),
]


def test_unknown_routes_and_methods_answer_in_openai_shape(server):
    missing = httpx.post(server.base_url + "/v1/embeddings", json={}, timeout=30)
    assert missing.status_code == 404 and "POST /v1/embeddings: Not Found" in error_of(missing)["message"]
    wrong = httpx.get(server.base_url + "/v1/completions", timeout=30)
    assert wrong.status_code == 405 and "Method Not Allowed" in error_of(wrong)["message"]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {**CHAT, "stop_token_ids": [2**64]}, "stop_token_ids"),  # a model-level check
    ("/v1/completions", {**COMPLETION, "prompt": [5, 9999]}, "prompt"),  # the rest: admission's refusals
    ("/v1/completions", {**COMPLETION, "prompt": []}, "prompt"),
    ("/v1/completions", {**COMPLETION, "max_tokens": 100_000_000}, "max_tokens"),
    ("/v1/completions", {**COMPLETION, "stop_token_ids": [9999]}, "stop_token_ids"),  # past the vocabulary
    ("/v1/completions", {**COMPLETION, "logit_bias": {"9999": 1.0}}, "logit_bias"),
])  # fmt: skip
def test_a_refusal_names_its_field(server, path, body, param):
    """Each 400 names the field it refused (admission's error carries it; no message is parsed for it)."""
    error = error_of(post(server, path, json=body))
    assert error["param"] == param and "Value error" not in error["message"], error


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_request(server, path, kwargs, status, message):
    response = post(server, path, **kwargs)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert message in error["message"], error
    assert error["type"] == {400: "invalid_request_error", 404: "not_found_error"}[status]


def test_the_openai_client_sees_the_errors(server):
    client = server.client()
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="gpt-9", prompt="w1", max_tokens=2)
    assert info.value.status_code == 404 and "does not exist" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL_NAME, messages=[], max_tokens=2)
    assert "messages is empty" in info.value.message


def test_bad_requests_do_not_harm_a_running_one(server, reference):
    expected = reference.generate(["w11 w12"], {"temperature": 0.0, "max_tokens": 40, "ignore_eos": True},
                                  use_tqdm=False)[0].outputs[0].token_ids  # fmt: skip

    async def run():
        async with server.async_client() as client, httpx.AsyncClient(base_url=server.base_url) as raw:
            stream = await client.completions.create(model=MODEL_NAME, prompt="w11 w12", max_tokens=40, stream=True,
                                                     temperature=0,
                                                     extra_body={"ignore_eos": True, "return_token_ids": True})  # fmt: skip
            ids, bad = [], 0
            async for chunk in stream:
                ids += chunk.choices[0].token_ids
                if bad < 10:
                    args = BAD[bad % len(BAD)]
                    response = await raw.post(args[1], **args[2])
                    assert response.status_code == args[3]
                    bad += 1
        return ids, bad

    ids, bad = asyncio.run(run())
    assert bad == 10 and ids == expected


@pytest.fixture(scope="module")
def guarded(bare_checkpoint):
    """A server with an API key, room for one running and one waiting request, and no chat template."""
    s = Server(bare_checkpoint, api_key="sesame", max_waiting=1, engine={"max_num_seqs": 1})
    yield s
    s.stop()


def test_wrong_api_key_is_401(guarded):
    with pytest.raises(openai.AuthenticationError) as info:
        guarded.client(api_key="wrong").completions.create(model=MODEL_NAME, prompt="w1", max_tokens=2)
    assert info.value.status_code == 401 and "invalid API key" in info.value.message
    assert httpx.get(guarded.base_url + "/v1/models").status_code == 401
    assert httpx.get(guarded.base_url + "/health").status_code == 200  # health and metrics need no key
    out = guarded.client(api_key="sesame").completions.create(model=MODEL_NAME, prompt="w1", max_tokens=2)
    assert out.usage.completion_tokens >= 1


def test_chat_without_a_template_is_a_clear_400(guarded):
    with pytest.raises(openai.BadRequestError) as info:
        guarded.client(api_key="sesame").chat.completions.create(model=MODEL_NAME, max_tokens=2,
                                                                  messages=[{"role": "user", "content": "w1"}])  # fmt: skip
    assert "has no chat template" in info.value.message and "--chat-template" in info.value.message


def test_over_max_waiting_is_503(guarded):
    async def run():
        async with guarded.async_client(default_headers={"Authorization": "Bearer sesame"}) as client:
            long = dict(model=MODEL_NAME, max_tokens=100, stream=True, extra_body={"ignore_eos": True})
            running = await client.completions.create(prompt="w1", **long)
            await running.__anext__()  # it runs: max_num_seqs is 1
            waiting = await client.completions.create(prompt="w2", **long)  # admitted: it waits
            with pytest.raises(openai.APIStatusError) as info:
                await client.completions.create(prompt="w3", **long)
            await running.close()
            await waiting.close()
            return info.value

    error = asyncio.run(run())
    assert error.status_code == 503 and "--max-waiting 1" in error.message
    assert error.body["code"] == "server_busy"
