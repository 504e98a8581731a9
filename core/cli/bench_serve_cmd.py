"""``tessera bench serve``: load a running server (``tessera serve`` or any OpenAI-compatible one)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from tessera.cli.common import console, user_errors
from tessera.errors import ConfigError


def _range(value: str | None, fixed: int, what: str) -> tuple[int, int]:
    if value is None:
        return fixed, fixed
    try:
        low, high = (int(v) for v in value.split(","))
    except ValueError:
        raise ConfigError(f"{what} is LOW,HIGH (two integers), got {value!r}") from None
    if not 1 <= low <= high:
        raise ConfigError(f"{what} needs 1 <= LOW <= HIGH, got {value!r}")
    return low, high


def _vocab_size(base_url: str, model: str, api_key: str | None) -> int:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        models = httpx.get(
            f"{base_url.rstrip('/').removesuffix('/v1')}/v1/models", headers=headers, timeout=30
        )
        models.raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach {base_url}: {exc}; start the server (tessera serve MODEL)") from None
    cards = {m["id"]: m for m in models.json()["data"]}
    if model not in cards:
        raise ConfigError(f"the server serves {sorted(cards)}, not {model!r}; pass --model with one of those")
    vocab = cards[model].get("vocab_size")
    if not vocab:
        raise ConfigError("the server does not say its vocabulary size; pass --vocab-size")
    return int(vocab)


def bench_serve(
    base_url: str = typer.Option("http://127.0.0.1:8000", "--base-url"),
    model: str = typer.Option(..., "--model", help="The served model name."),
    request_rate: float = typer.Option(
        float("inf"), "--request-rate", help="Poisson arrivals per second (inf: all at once)."
    ),
    max_concurrency: int | None = typer.Option(
        None, "--max-concurrency", min=1, help="At most this many in flight."
    ),
    num_prompts: int = typer.Option(100, "--num-prompts", min=1),
    random_input_len: int = typer.Option(256, "--random-input-len", min=1),
    output_len: int = typer.Option(128, "--output-len", min=1),
    random_range: str | None = typer.Option(
        None, "--random-range", help="LOW,HIGH: input and output lengths uniform in it."
    ),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="Default: asked of the server."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="TESSERA_API_KEY"),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="Write the results as JSON."),
) -> None:
    """Stream requests at a server; report request throughput, output tok/s, TTFT, TPOT, ITL p50/p99, failures."""
    from tessera.bench.serve_bench import format_summary, run_load, workload

    with user_errors():
        inputs = _range(random_range, random_input_len, "--random-range")
        outputs = _range(random_range, output_len, "--random-range")
        vocab = vocab_size or _vocab_size(base_url, model, api_key)
        requests = workload(num_prompts, inputs, outputs, vocab, seed)
        result = asyncio.run(
            run_load(base_url, model, requests, request_rate, max_concurrency, api_key, seed)
        )
        result.update(model=model, base_url=base_url, input_range=inputs, output_range=outputs)
        console.print(format_summary(result), highlight=False)
        if out:
            out.write_text(json.dumps(result, indent=2))
            console.print(f"wrote {out}")
    if result["failed"]:
        raise typer.Exit(1)
