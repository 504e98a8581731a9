"""Many clients at once: none lost, outputs equal solo greedy runs; clients that leave free their KV blocks."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from ..hf_checkpoints import write_tiny_checkpoint
from .conftest import MODEL_NAME, Server, add_tokenizer, metric


def blocks_in_use(server) -> float:
    return metric(httpx.get(server.base_url + "/metrics").text, "kv_blocks_in_use")


def test_64_concurrent_streams_equal_solo_runs(server, reference, deadline):
    prompts = [[10 + i, 20 + i % 7, 30 + i % 5] + [40 + i % 3] * (i % 4) for i in range(64)]
    lengths = [4 + i % 9 for i in range(64)]
    params = [{"temperature": 0.0, "max_tokens": n} for n in lengths]
    # one offline batch (batched greedy equals solo greedy: the engine's own tests), a few checked solo here
    solo = [out.outputs[0] for out in reference.generate(prompts, params, use_tqdm=False)]
    for i in (0, 21, 63):
        alone = reference.generate([prompts[i]], params[i], use_tqdm=False)[0].outputs[0]
        assert alone.token_ids == solo[i].token_ids

    async def one(client, prompt, n):
        stream = await client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=n, temperature=0,
                                                 stream=True, extra_body={"return_token_ids": True})  # fmt: skip
        text, ids, reason = "", [], None
        async for chunk in stream:
            text += chunk.choices[0].text
            ids += chunk.choices[0].token_ids
            reason = chunk.choices[0].finish_reason or reason
        return text, ids, reason

    async def run():
        async with server.async_client(timeout=60) as client:
            return await asyncio.gather(*(one(client, p, n) for p, n in zip(prompts, lengths, strict=True)))

    with deadline(60):
        results = asyncio.run(run())
    assert len(results) == 64
    for (text, ids, reason), want in zip(results, solo, strict=True):
        assert (ids, text, reason) == (want.token_ids, want.text, want.finish_reason)
    assert blocks_in_use(server) == 0


@pytest.fixture(scope="module")
def long_server(tmp_path_factory):
    """A server whose requests can run for thousands of tokens: no stream can end before its client leaves."""
    target = write_tiny_checkpoint(
        "llama", tmp_path_factory.mktemp("serve_long"), max_position_embeddings=4096
    )
    add_tokenizer(target)
    s = Server(target, engine={"max_model_len": 4096, "kv_cache_bytes": 96 << 20})
    yield s
    s.stop()


def test_16_clients_that_disconnect_free_their_blocks(long_server, deadline):
    server = long_server

    async def leave_early(i: int, seen: list, leave: asyncio.Event):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as raw:
            body = {"model": MODEL_NAME, "prompt": [5 + i, 6, 7], "max_tokens": 4000, "stream": True,
                    "ignore_eos": True, "temperature": 0}  # fmt: skip
            async with raw.stream("POST", "/v1/completions", json=body) as response:
                lines = 0
                async for line in response.aiter_lines():
                    lines += bool(line)
                    if lines == 3:
                        seen.append(i)
                        await leave.wait()
                        break  # leaving the block closes the connection mid-stream

    async def run():
        seen: list[int] = []
        leave = asyncio.Event()
        clients = [asyncio.ensure_future(leave_early(i, seen, leave)) for i in range(16)]
        while len(seen) < 16 and not any(c.done() for c in clients):
            await asyncio.sleep(0.005)
        held = await asyncio.to_thread(blocks_in_use, server)
        leave.set()
        await asyncio.gather(*clients)
        return seen, held

    with deadline(60):
        seen, held = asyncio.run(run())
        assert len(seen) == 16 and held > 0  # they were running, holding blocks, when they left
        end = time.monotonic() + 10
        while blocks_in_use(server) and time.monotonic() < end:
            time.sleep(0.02)
    page = httpx.get(server.base_url + "/metrics").text
    assert metric(page, "kv_blocks_in_use") == 0 and metric(page, "num_requests_running") == 0
    assert server.state.engine.stats["requests"] == 0  # every aborted request was released by the engine
    assert 'request_success_total{model_name="tiny-chat",finished_reason="abort"} 16' in page, page


def test_clients_that_leave_a_non_streamed_request_free_their_blocks(long_server, deadline):
    """A non-streamed answer is written only at the end: a client that times out before it is gone, so its
    request (all n of its completions) is aborted then, not generated to the end for nobody."""
    server = long_server
    before = httpx.get(server.base_url + "/metrics").text
    aborted = 'tessera:request_success_total{model_name="tiny-chat",finished_reason="abort"}'
    count = metric_line(before, aborted)
    body = {"model": MODEL_NAME, "prompt": [5, 6, 7], "max_tokens": 4000, "n": 4, "ignore_eos": True}
    with deadline(60):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.base_url + "/v1/completions", json=body, timeout=httpx.Timeout(30, read=1.0))
        end = time.monotonic() + 10
        while blocks_in_use(server) and time.monotonic() < end:
            time.sleep(0.02)
    page = httpx.get(server.base_url + "/metrics").text
    assert metric(page, "kv_blocks_in_use") == 0 and metric(page, "num_requests_running") == 0, page
    assert metric_line(page, aborted) == count + 4, page  # its 4 completions, each counted as aborted


def metric_line(page: str, sample: str) -> float:
    return next((float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(sample)), 0.0)
