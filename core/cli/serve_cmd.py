"""``tessera serve MODEL_DIR``: the OpenAI-compatible HTTP server."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from tessera.cli.common import console, user_errors


def serve(
    model: str = typer.Argument(..., help="Model folder (config.json + safetensors + tokenizer)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    platform: str | None = typer.Option(None, "--platform"),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="TESSERA_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 routes."
    ),  # fmt: skip
    max_waiting: int | None = typer.Option(
        None, "--max-waiting", min=0, help="Answer 503 while more requests than this wait."
    ),  # fmt: skip
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="The model name clients send (default: the folder's name)."
    ),  # fmt: skip
    chat_template: Path | None = typer.Option(None, "--chat-template", help="A Jinja chat template file."),
    dtype: str = typer.Option("auto", "--dtype"),
    max_model_len: int | None = typer.Option(None, "--max-model-len"),
    max_num_seqs: int = typer.Option(64, "--max-num-seqs"),
    max_num_batched_tokens: int = typer.Option(4096, "--max-num-batched-tokens"),
    kv_cache_bytes: int | None = typer.Option(None, "--kv-cache-bytes"),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="Never capture graphs."),
    quantization: str | None = typer.Option(None, "--quantization"),
    load_format: str = typer.Option("safetensors", "--load-format"),
    drain_timeout: float = typer.Option(
        5.0, "--drain-timeout", help="On shutdown, seconds to let running requests finish."
    ),  # fmt: skip
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", "-tp", help="Worker processes (one per device) the model is split over."
    ),
    enable_expert_parallel: bool = typer.Option(
        False, "--enable-expert-parallel", help="With -tp N: MoE layers hold whole experts per rank."
    ),
    log_level: str = typer.Option("info", "--log-level"),
    engine_in_thread: bool = typer.Option(
        False,
        "--engine-in-thread",
        help="Run the engine in a thread of the server process (debugging; slower).",
    ),  # fmt: skip
    engine_start_timeout: float = typer.Option(
        600.0, "--engine-start-timeout", help="Seconds the engine core may take to load the model."
    ),  # fmt: skip
) -> None:
    """Serve MODEL over OpenAI's API: /v1/completions, /v1/chat/completions, /v1/models, /metrics, ..."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        from tessera.chat import load_chat_template
        from tessera.llm import make_config
        from tessera.serve.app import build_app
        from tessera.serve.server import run_server

        extra = {"max_model_len": max_model_len} if max_model_len is not None else {}
        config = make_config(model=model, dtype=dtype, platform=platform, max_num_seqs=max_num_seqs,
                             max_num_batched_tokens=max_num_batched_tokens, kv_cache_bytes=kv_cache_bytes,
                             gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                             quantization=quantization, load_format=load_format,
                             tensor_parallel_size=tensor_parallel_size, enable_expert_parallel=enable_expert_parallel,
                             **extra)  # fmt: skip
        template = load_chat_template(model, chat_template)
        core, platform_name, context = _start_engine(config, engine_in_thread, engine_start_timeout)
        name = served_model_name or Path(model).resolve().name
        app = build_app(core, name, template, api_key, max_waiting, drain_timeout)
    console.print(f"serving {name!r} on http://{host}:{port}/v1 (platform {platform_name}, max_model_len {context}, "
                  f"chat template: {'yes' if template else 'none'})", highlight=False)  # fmt: skip
    try:
        run_server(app, host, port, log_level.lower())
    finally:
        if not engine_in_thread:
            core.close()  # a no-op after the app's own shutdown; stops the core when the server never started


def _start_engine(config, in_thread: bool, timeout: float):
    """(the engine core for build_app, its platform's name, its max_model_len)."""
    if in_thread:
        from tessera.engine.llm_engine import LLMEngine

        engine = LLMEngine(config)
        return engine, engine.platform.name, engine.max_model_len
    from tessera.serve.core_client import CoreClient

    client = CoreClient.start_process(config, timeout)
    return client, client.info.platform, client.info.max_model_len
