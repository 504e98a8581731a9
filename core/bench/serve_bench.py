"""``tessera bench serve``: a load generator against a running OpenAI-compatible server.

Requests arrive as a Poisson process at ``request_rate`` per second (inf: all at
once), or ``max_concurrency`` clients each send their next request when the last
ends (both may be given: Poisson arrivals, at most C in flight). Each request
streams ``/v1/completions`` with token-id prompts of random length, ``ignore_eos``
and a fixed ``max_tokens``, so the load is exactly what was asked for. Reported:
request throughput, output tokens/s, TTFT, TPOT and ITL percentiles, failures.

Servers that take only OpenAI's fields (``transformers serve`` answers 422 to
``ignore_eos``) get the same ids as text (``texts``: the ids decoded by the
checkpoint's tokenizer) and no extension field; a request whose prompt the server
counts as another number of tokens fails (the text did not round-trip), and one
that meets an EOS ends early (its output is counted from the usage the server
reports). ``max_duration`` cuts the run: requests still running then are
``unfinished``, not completed, and the result says ``complete: false``.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    ok: bool = False
    error: str | None = None
    prompt_len: int = 0
    output_tokens: int = 0
    ttft: float | None = None
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    streamed: int = 0  # tokens received so far (what an unfinished request had delivered)


def workload(num_prompts: int, input_range: tuple[int, int], output_range: tuple[int, int], vocab: int,
             seed: int) -> list[tuple[list[int], int]]:  # fmt: skip
    """(prompt token ids, max_tokens) per request; ids avoid the first few (special) ids of most vocabularies."""
    rng = random.Random(seed)
    out = []
    for _ in range(num_prompts):
        n = rng.randint(*input_range)
        out.append(([rng.randrange(min(10, vocab - 1), vocab) for _ in range(n)], rng.randint(*output_range)))
    return out


def request_body(model: str, prompt: list[int] | str, max_tokens: int) -> dict:
    """A token-id prompt gets the extension fields (tessera serve, vLLM); a text prompt OpenAI's fields alone."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    if not isinstance(prompt, str):
        # token ids per chunk: a token counts when it arrives, even where its text is empty (a partial
        # UTF-8 sequence, or a random-weights model's bytes that decode to nothing)
        body |= {"ignore_eos": True, "return_token_ids": True}
    return body


async def _one(client, base_url: str, body: dict, result: Result, headers: dict) -> None:
    start = last = time.perf_counter()
    try:
        async with client.stream(
            "POST", f"{base_url}/v1/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread()).decode()[:200]}"
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]
                    result.error = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                    return
                now = time.perf_counter()
                if chunk.get("usage"):
                    result.output_tokens = chunk["usage"]["completion_tokens"]
                    _check_prompt_tokens(result, chunk["usage"], body)
                choice = chunk["choices"][0] if chunk.get("choices") else {}
                if choice.get("token_ids") or choice.get("text"):
                    result.streamed += len(choice.get("token_ids") or [None])
                    if result.ttft is None:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
        result.latency = time.perf_counter() - start
        result.ok = result.error is None
    except Exception as exc:  # noqa: BLE001 - a failed request is counted, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"


def _check_prompt_tokens(result: Result, usage: dict, body: dict) -> None:
    counted = usage.get("prompt_tokens")
    if isinstance(body["prompt"], str) and counted is not None and counted != result.prompt_len:
        result.error = (f"the server counts {counted} prompt tokens where the workload has {result.prompt_len}: "
                        "the text prompts do not round-trip through its tokenizer; pass that server's tokenizer")  # fmt: skip


async def run_load(base_url: str, model: str, requests: list[tuple[list[int], int]], request_rate: float,
                   max_concurrency: int | None, api_key: str | None = None, seed: int = 0,
                   texts: list[str] | None = None, max_duration: float | None = None) -> dict:  # fmt: skip
    """Run the load; ``texts`` (one per request) are sent in place of the token ids, see the module doc."""
    import httpx

    base_url = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    rng = random.Random(seed)
    limits = httpx.Limits(
        max_connections=max_concurrency or len(requests) or 1, max_keepalive_connections=None
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits) as client:
        results = [Result(prompt_len=len(ids)) for ids, _ in requests]
        bodies = [request_body(model, texts[i] if texts else ids, n) for i, (ids, n) in enumerate(requests)]

        async def gated(i: int) -> None:
            if gate is None:
                return await _one(client, base_url, bodies[i], results[i], headers)
            async with gate:
                return await _one(client, base_url, bodies[i], results[i], headers)

        async def launch() -> None:
            tasks = []
            for i in range(len(requests)):
                tasks.append(asyncio.ensure_future(gated(i)))
                if request_rate != float("inf"):
                    await asyncio.sleep(rng.expovariate(request_rate))
            await asyncio.gather(*tasks)

        start = time.perf_counter()
        run = asyncio.ensure_future(launch())
        _, cut = await asyncio.wait([run], timeout=max_duration)
        duration = time.perf_counter() - start
        if cut:  # cancelling the gather cancels every request still in flight
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    result = summarize(results, duration, request_rate, max_concurrency)
    result["max_duration_s"] = max_duration
    return result


def _pcts(values: list[float]) -> dict:
    if not values:
        return {"mean_ms": None, "p50_ms": None, "p99_ms": None}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"mean_ms": statistics.fmean(values) * 1000, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def summarize(
    results: list[Result], duration: float, request_rate: float, max_concurrency: int | None
) -> dict:
    done = [r for r in results if r.ok]
    output = sum(r.output_tokens for r in done)
    tpot = [
        (r.latency - r.ttft) / (r.output_tokens - 1)
        for r in done
        if r.ttft is not None and r.output_tokens > 1
    ]
    errors = sorted({r.error for r in results if r.error})
    failed = sum(1 for r in results if r.error)
    unfinished = len(results) - len(done) - failed
    streamed = output + sum(r.streamed for r in results if not r.ok)
    return {"benchmark": "serve", "num_requests": len(results), "completed": len(done),
            "failed": failed, "unfinished": unfinished, "complete": len(done) == len(results),
            "errors": errors[:10], "duration_s": duration, "streamed_output_tokens_per_s": streamed / duration,
            "request_rate": "inf" if request_rate == float("inf") else request_rate,
            "max_concurrency": max_concurrency, "request_throughput": len(done) / duration,
            "input_tokens": sum(r.prompt_len for r in done), "output_tokens": output,
            "output_tokens_per_s": output / duration,
            "total_tokens_per_s": (output + sum(r.prompt_len for r in done)) / duration,
            "ttft": _pcts([r.ttft for r in done if r.ttft is not None]), "tpot": _pcts(tpot),
            "itl": _pcts([x for r in done for x in r.itl]),
            "e2e": _pcts([r.latency for r in done])}  # fmt: skip


def format_summary(s: dict) -> str:
    def row(name: str) -> str:
        v = s[name]
        if v["p50_ms"] is None:
            return f"{name.upper():5} -"
        return (
            f"{name.upper():5} mean {v['mean_ms']:.1f} ms  p50 {v['p50_ms']:.1f} ms  p99 {v['p99_ms']:.1f} ms"
        )

    lines = [f"requests: {s['completed']} completed, {s['failed']} failed in {s['duration_s']:.2f} s",
             f"request throughput {s['request_throughput']:.2f} req/s, output {s['output_tokens_per_s']:.1f} tok/s, "
             f"total {s['total_tokens_per_s']:.1f} tok/s"] + [row(k) for k in ("ttft", "tpot", "itl", "e2e")]  # fmt: skip
    if s["unfinished"]:
        lines.append(f"INCOMPLETE: {s['unfinished']} requests unfinished at the {s['duration_s']:.0f} s cut (not in the "
                     f"figures above); {s['streamed_output_tokens_per_s']:.1f} tok/s streamed by all requests")  # fmt: skip
    lines += [f"error: {e}" for e in s["errors"]]
    return "\n".join(lines)
