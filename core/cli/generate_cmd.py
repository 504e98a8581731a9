"""``tessera generate`` and ``tessera inspect``."""

from __future__ import annotations

import logging
import time

import typer
from rich.table import Table

from tessera.cli.common import console, err_console, user_errors

MODEL_HELP = "Model folder (config.json + safetensors). Default: a tiny built-in model, made on first use."


def _model_path(model: str | None) -> str:
    if model:
        return model
    from tessera.default_model import ensure_default_model

    path = ensure_default_model()
    console.print(f"[dim]no --model given: using the tiny built-in model at {path} (random weights)[/]")
    return str(path)


def generate(
    prompt: list[str] = typer.Option(["Tessera runs on"], "--prompt", "-p", help="Prompt text (repeatable)."),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    max_tokens: int = typer.Option(32, "--max-tokens", "-n"),
    temperature: float = typer.Option(0.0, "--temperature", "-t"),
    top_p: float = typer.Option(1.0, "--top-p"),
    top_k: int = typer.Option(0, "--top-k"),
    seed: int | None = typer.Option(None, "--seed"),
    platform: str | None = typer.Option(None, "--platform"),
    dtype: str = typer.Option("auto", "--dtype"),
    max_model_len: int | None = typer.Option(None, "--max-model-len"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="Never capture graphs."),
    quantization: str | None = typer.Option(
        None, "--quantization", help="fp8: quantize Linear weights on load."
    ),
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", "-tp", help="Worker processes (one per device) the model is split over."
    ),
    enable_expert_parallel: bool = typer.Option(
        False, "--enable-expert-parallel", help="With -tp N: MoE layers hold whole experts per rank."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Generate text for each prompt and print it with timings."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    with user_errors():
        from tessera import LLM, SamplingParams

        start = time.perf_counter()
        extra = {"max_model_len": max_model_len} if max_model_len is not None else {}
        llm = LLM(
            _model_path(model),
            dtype=dtype,
            platform=platform,
            enforce_eager=enforce_eager,
            quantization=quantization,
            tensor_parallel_size=tensor_parallel_size,
            enable_expert_parallel=enable_expert_parallel,
            **extra,
        )
        load_s = time.perf_counter() - start
        params = SamplingParams(
            temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, seed=seed
        )
        start = time.perf_counter()
        outputs = llm.generate(list(prompt), params, use_tqdm=len(prompt) > 1)
        gen_s = time.perf_counter() - start
    engine = llm.engine
    console.print(f"[dim]platform {engine.platform.name}, dtype {str(engine.dtype).removeprefix('torch.')}, "
                  f"model loaded in {load_s:.2f}s[/]", highlight=False)  # fmt: skip
    tokens = _print_outputs(outputs)
    console.print(
        f"[dim]{tokens} tokens in {gen_s:.2f}s ({tokens / max(gen_s, 1e-9):.1f} tokens/s)[/]", highlight=False
    )
    if any(out.error is not None for out in outputs):
        raise typer.Exit(2)  # the others were served and printed


def _print_outputs(outputs) -> int:
    """Each prompt with its completion and timings (errors on stderr); returns the tokens generated."""
    tokens = 0
    for out in outputs:
        completion = out.outputs[0]
        if out.error is not None:
            err_console.print(
                f"[bold red]error:[/] {_escape(out.prompt or '')!s}: {_escape(out.error)}", highlight=False
            )
            continue
        tokens += len(completion.token_ids)
        console.print(f"[bold]{_escape(out.prompt or '')}[/]{_escape(completion.text)}", highlight=False)
        ttft = out.metrics.time_to_first_token
        tpot = out.metrics.time_per_output_token
        console.print(f"[dim]  {len(completion.token_ids)} tokens, finish: {completion.finish_reason}, "
                      f"TTFT {ttft * 1000:.1f} ms, TPOT {(tpot or 0) * 1000:.2f} ms[/]", highlight=False)  # fmt: skip
    return tokens


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def inspect(
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    platform: str | None = typer.Option(None, "--platform"),
    dtype: str = typer.Option("auto", "--dtype"),
    quantization: str | None = typer.Option(None, "--quantization"),
) -> None:
    """Every layer of the model with the kernel (and its provider) chosen for each op."""
    with user_errors():
        from tessera import LLM

        llm = LLM(_model_path(model), dtype=dtype, platform=platform, enforce_eager=True, quantization=quantization,
                  max_num_seqs=1, kv_cache_bytes=64 << 20)  # fmt: skip
    engine = llm.engine
    ctx = engine.runner.ctx
    table = Table(
        title=f"{engine.spec.architecture} on {engine.platform.name} ({str(engine.dtype).removeprefix('torch.')})"
    )
    for column in ("layer", "op", "kernel", "provider", "graph safe", "weights"):
        table.add_column(column, overflow="fold")
    for c in ctx.choices:
        kernel = f"[yellow]{c.kernel} (fallback)[/]" if c.fallback else c.kernel
        table.add_row(
            c.layer, c.op, kernel, c.provider, "yes" if c.graph_safe else "no", c.weights or "as stored"
        )
    console.print(table)
    prepared: dict[tuple[str, str], int] = {}
    for c in ctx.choices:
        if c.weights:
            prepared[(c.op, c.weights)] = prepared.get((c.op, c.weights), 0) + 1
    for (op, line), count in prepared.items():
        console.print(f"{op} weights: {line} ({count} layers)", highlight=False, soft_wrap=True)
    graphs = engine.runner.graphs is not None
    console.print(f"decode graphs: {'on' if graphs else 'off'} (inspect runs eager; generation captures graphs when "
                  "the platform offers them and every kernel is graph-safe)")  # fmt: skip
