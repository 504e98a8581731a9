"""``tessera bench serve``: a load generator against a running OpenAI-compatible server.

Requests arrive as a Poisson process at ``request_rate`` per second (inf: all at
once), or ``max_concurrency`` clients each send their next request when the last
ends (both may be given: Poisson arrivals, at most C in flight). Each request
streams ``/v1/completions`` with token-id prompts of random length, ``ignore_eos``
and a fixed ``max_tokens``, so the load is exactly what was asked for. Reported:
request throughput, output tokens/s, TTFT, TPOT and ITL percentiles, failures.
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


def workload(num_prompts: int, input_range: tuple[int, int], output_range: tuple[int, int], vocab: int,
             seed: int) -> list[tuple[list[int], int]]:  # fmt: skip
    """(prompt token ids, max_tokens) per request; ids avoid the first few (special) ids of most vocabularies."""
    rng = random.Random(seed)
    out = []
    for _ in range(num_prompts):
        n = rng.randint(*input_range)
        out.append(([rng.randrange(min(10, vocab - 1), vocab) for _ in range(n)], rng.randint(*output_range)))
    return out


async def _one(
    client, base_url: str, model: str, prompt: list[int], max_tokens: int, headers: dict
) -> Result:
    # token ids per chunk: a token counts when it arrives, even where its text is empty (a partial
    # UTF-8 sequence, or a random-weights model's bytes that decode to nothing)
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}, "return_token_ids": True}  # fmt: skip
    result = Result(prompt_len=len(prompt))
    start = last = time.perf_counter()
    try:
        async with client.stream(
            "POST", f"{base_url}/v1/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread()).decode()[:200]}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    result.error = chunk["error"]["message"]
                    return result
                now = time.perf_counter()
                if chunk.get("usage"):
                    result.output_tokens = chunk["usage"]["completion_tokens"]
                if chunk.get("choices") and (
                    chunk["choices"][0].get("token_ids") or chunk["choices"][0].get("text")
                ):
                    if result.ttft is None:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
        result.latency = time.perf_counter() - start
        result.ok = result.error is None
    except Exception as exc:  # noqa: BLE001 - a failed request is counted, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def run_load(base_url: str, model: str, requests: list[tuple[list[int], int]], request_rate: float,
                   max_concurrency: int | None, api_key: str | None = None, seed: int = 0) -> dict:  # fmt: skip
    import httpx

    base_url = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    rng = random.Random(seed)
    limits = httpx.Limits(
        max_connections=max_concurrency or len(requests) or 1, max_keepalive_connections=None
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits) as client:

        async def gated(prompt, max_tokens):
            if gate is None:
                return await _one(client, base_url, model, prompt, max_tokens, headers)
            async with gate:
                return await _one(client, base_url, model, prompt, max_tokens, headers)

        start = time.perf_counter()
        tasks = []
        for prompt, max_tokens in requests:
            tasks.append(asyncio.ensure_future(gated(prompt, max_tokens)))
            if request_rate != float("inf"):
                await asyncio.sleep(rng.expovariate(request_rate))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    return summarize(results, duration, request_rate, max_concurrency)


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
    return {"benchmark": "serve", "num_requests": len(results), "completed": len(done),
            "failed": len(results) - len(done), "errors": errors[:10], "duration_s": duration,
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
    lines += [f"error: {e}" for e in s["errors"]]
    return "\n".join(lines)
