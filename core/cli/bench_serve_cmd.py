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


def _text_prompts(tokenizer: Path | None, backend: str):
    """The tokenizer that turns the workload's ids into text, for ``--backend openai`` (None for tessera)."""
    if backend not in ("tessera", "openai"):
        raise ConfigError(f"--backend is tessera or openai, got {backend!r}")
    if backend == "tessera":
        return None
    if tokenizer is None:
        raise ConfigError("--backend openai sends text prompts: pass --tokenizer with the served checkpoint's "
                          "folder or its tokenizer.json")  # fmt: skip
    path = tokenizer / "tokenizer.json" if tokenizer.is_dir() else tokenizer
    if not path.is_file():
        raise ConfigError(
            f"no tokenizer.json at {path}; pass the served checkpoint's folder or its tokenizer.json"
        )
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


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
    backend: str = typer.Option(
        "tessera",
        "--backend",
        help="tessera: token-id prompts with ignore_eos (tessera serve, vLLM); openai: OpenAI's fields alone, the "
        "same ids sent as text decoded by --tokenizer (servers such as transformers serve), output counted from usage.",
    ),  # fmt: skip
    tokenizer: Path | None = typer.Option(
        None, "--tokenizer", help="For --backend openai: the served tokenizer."
    ),
    max_duration: float | None = typer.Option(
        None,
        "--max-duration",
        min=0.001,
        help="Stop after this many seconds; requests still running are reported unfinished (complete: false).",
    ),  # fmt: skip
    out: Path | None = typer.Option(None, "--out", help="Write the results as JSON."),
) -> None:
    """Stream requests at a server; report request throughput, output tok/s, TTFT, TPOT, ITL p50/p99, failures."""
    from tessera.bench.serve_bench import format_summary, run_load, workload

    with user_errors():
        inputs = _range(random_range, random_input_len, "--random-range")
        outputs = _range(random_range, output_len, "--random-range")
        text_tokenizer = _text_prompts(tokenizer, backend)
        vocab = vocab_size or (
            text_tokenizer.get_vocab_size() if text_tokenizer else _vocab_size(base_url, model, api_key)
        )
        requests = workload(num_prompts, inputs, outputs, vocab, seed)
        texts = None
        if text_tokenizer:
            texts = [text_tokenizer.decode(ids, skip_special_tokens=False) for ids, _ in requests]
        result = asyncio.run(
            run_load(
                base_url, model, requests, request_rate, max_concurrency, api_key, seed, texts, max_duration
            )
        )
        result.update(
            model=model, base_url=base_url, input_range=inputs, output_range=outputs, backend=backend
        )
        console.print(format_summary(result), highlight=False)
        if out:
            out.write_text(json.dumps(result, indent=2))
            console.print(f"wrote {out}")
    if not result["complete"]:
        raise typer.Exit(1)
