"""``tessera bench kernels``: kernels against the measured device limits and a peer in the same run."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tessera.cli.common import console, user_errors

app = typer.Typer(help="Benchmarks against the hardware floor and a peer, in one run.", no_args_is_help=True)


def _kernel_table(rows: list[dict], device: str) -> Table:
    """``bench kernels`` as a table: time, rates, floor share and the best peer of each case."""
    table = Table(title=f"tessera bench kernels on {device}")
    for column in (
        "op",
        "case",
        "kernel",
        "ms",
        "GB/s",
        "TFLOP/s",
        "floor share",
        "best peer",
        "vs peer",
        "check",
    ):
        table.add_column(column)
    for r in rows:
        if "error" in r:
            table.add_row(r["op"], r["case"], "[red]error[/]", "", "", "", "", "", "", r["error"][:40])
            continue
        peers = {k[5:-3]: v for k, v in r.items() if k.startswith("peer_") and k.endswith("_ms")}
        best = min(peers, key=peers.get) if peers else None
        table.add_row(r["op"], r["case"], r["kernel"], f"{r['ms']:.4f}", f"{r['GBps']:.0f}", f"{r['TFLOPs']:.1f}",
                      f"{r['floor_share']:.2f}", f"{best} {peers[best]:.4f}" if best else "-",
                      f"{peers[best] / r['ms']:.2f}x" if best else "-", f"{r.get('check_error', float('nan')):.1e}")  # fmt: skip
    return table


@app.command("kernels")
def kernels(
    op: str | None = typer.Option(None, "--op", help="Only these ops (comma-separated)."),
    platform: str | None = typer.Option(None, "--platform", "-p"),
    device: int = typer.Option(0, "--device"),
    out: Path | None = typer.Option(None, "--out", help="Write the results as JSON."),
    iters: int = typer.Option(20, "--iters"),
) -> None:
    """Median time (device events, after warm-up) of each op's selected kernel, its GB/s or TFLOP/s, the share
    of the floor measured at the start of this run, and each peer's time."""
    import torch

    from tessera.bench.cases import all_cases
    from tessera.bench.kernel_bench import run_case
    from tessera.discovery import select_platform
    from tessera.kernel_registry import get_registry, platform_facts
    from tessera.pluggable_layers.measure import measure_limits

    with user_errors():
        target = select_platform(platform)
        target.set_device(device)
        facts = platform_facts(target, device)
        torch_device = target.torch_device(device)
        limits = measure_limits(target, torch_device)
        console.print(
            f"limits on {facts.device}: copy {limits['copy_GBps']:.0f} GB/s, matmul {limits['matmul_TFLOPs']:.0f} TFLOP/s"
        )
        rows = []
        for case in all_cases():
            if op and case.op not in op.split(","):
                continue
            try:
                rows.append(run_case(case, get_registry(), facts, target, torch_device, limits, iters))
            except Exception as exc:  # noqa: BLE001 - one case failing must not lose the others
                rows.append(
                    {"op": case.op, "case": case.label, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                )
            console.print(rows[-1], highlight=False)
    console.print(_kernel_table(rows, facts.device))
    if out:
        devices = target.devices()
        payload = {
            "device": devices[device].model_dump(),
            "torch": torch.__version__,
            "limits": limits,
            "results": rows,
        }
        Path(out).write_text(json.dumps(payload, indent=2, default=str))
        console.print(f"wrote {out}")


def _e2e(workload_fn, model, preset, compare, dtype, platform, out, max_num_seqs, label, extras=None,
         tensor_parallel_size: int = 1) -> dict:  # fmt: skip
    from tessera.bench.e2e import (
        copy_weights,
        decode_traffic,
        floor_seconds,
        hf_model_for,
        run_hf,
        run_tessera,
        summarize,
    )
    from tessera.errors import ConfigError
    from tessera.llm import LLM
    from tessera.models.presets import preset_dir
    from tessera.models.spec import ModelSpec
    from tessera.pluggable_layers.measure import measure_limits

    if bool(model) == bool(preset):
        raise ConfigError("give exactly one of --model DIR and --preset NAME")
    if tensor_parallel_size > 1 and compare == "hf":
        raise ConfigError("--compare hf needs --tensor-parallel-size 1 (the weights live in the workers)")
    path, load_format = (str(preset_dir(preset)), "random") if preset else (model, "safetensors")
    vocab = ModelSpec.from_dir(path).vocab_size
    workload = workload_fn(vocab)
    longest = max(len(p) + o for p, o in workload)
    llm = LLM(path, dtype=dtype, platform=platform, load_format=load_format, max_num_seqs=max_num_seqs,
              max_model_len=longest + 8, gpu_memory_utilization=0.45 if compare == "hf" else 0.9,
              tensor_parallel_size=tensor_parallel_size)  # fmt: skip
    engine = llm.engine
    device = engine.runner.device
    result: dict = {"benchmark": label, "model": preset or model, "platform": engine.platform.name,
                    "device": engine.platform.devices()[0].name, "dtype": str(engine.dtype).removeprefix("torch."),
                    "num_prompts": len(workload), "max_num_seqs": max_num_seqs, "sampling": extras or {}}  # fmt: skip
    hf = None
    if compare == "hf":
        try:
            hf = hf_model_for(llm)
            copy_weights(hf, llm)
        except Exception as exc:  # noqa: BLE001 - the peer failing is reported, the bench goes on
            result["hf"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            hf = None
    limits = measure_limits(engine.platform, device)
    result["limits"] = {k: v for k, v in limits.items() if isinstance(v, float)}
    result["tessera"] = run_tessera(llm, workload, extras)
    result["tensor_parallel_size"] = tensor_parallel_size
    if (
        engine.runner.model is not None
    ):  # with tensor parallelism the weights (and the floor's bytes) live in the workers
        weight_bytes, params, traffic = decode_traffic(engine.runner)
        kv_per_token = engine.runner.plan.bytes_per_block // max(engine.runner.plan.block_size, 1)
        floor = floor_seconds(
            workload, weight_bytes, params, kv_per_token, result["limits"], max_num_seqs, traffic
        )
        result.update({"floor_seconds": floor, "floor_share": floor / result["tessera"]["seconds"]})
    if hf is not None:
        try:
            result["hf"] = run_hf(hf, workload, max_num_seqs)
            result["speedup_vs_hf"] = (
                result["tessera"]["output_tokens_per_s"] / result["hf"]["output_tokens_per_s"]
            )
        except Exception as exc:  # noqa: BLE001 - out of memory and the like
            result["hf"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    console.print(summarize(result), highlight=False)
    if out:
        Path(out).write_text(json.dumps(result, indent=2, default=str))
        console.print(f"wrote {out}")
    return result


@app.command("throughput")
def throughput(
    model: str | None = typer.Option(None, "--model", "-m", help="Checkpoint folder."),
    preset: str | None = typer.Option(
        None, "--preset", help="Random weights from a preset: llama3-8b, qwen3-0.6b, ..."
    ),
    num_prompts: int = typer.Option(64, "--num-prompts"),
    input_len: int = typer.Option(256, "--input-len"),
    output_len: int = typer.Option(256, "--output-len"),
    random_range: str | None = typer.Option(
        None, "--random-range", help="LOW,HIGH: input and output lengths uniform in it."
    ),
    seed: int = typer.Option(0, "--seed"),
    compare: str | None = typer.Option(
        None, "--compare", help="hf: run transformers' generate on the same weights too."
    ),
    dtype: str = typer.Option("auto", "--dtype"),
    platform: str | None = typer.Option(None, "--platform", "-p"),
    max_num_seqs: int = typer.Option(256, "--max-num-seqs"),
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", "-tp", help="Worker processes (devices) the model is split over."
    ),
    out: Path | None = typer.Option(None, "--out"),
    logprobs: int | None = typer.Option(None, "--logprobs", help="Return the top N logprobs of every token."),
    penalties: bool = typer.Option(
        False, "--penalties", help="Sample with presence 0.5, frequency 0.5 and repetition 1.1 penalties."
    ),
) -> None:
    """Output tokens/s of a whole workload, against the device floor (and transformers with --compare hf).

    ``--logprobs N`` and ``--penalties`` measure what those sampling features cost (run with and without)."""
    from tessera.bench.e2e import fixed_workload, random_workload, sampling_extras

    with user_errors():
        if random_range:
            low, high = (int(v) for v in random_range.split(","))
            make = lambda vocab: random_workload(num_prompts, low, high, vocab, seed)  # noqa: E731
        else:
            make = lambda vocab: fixed_workload(num_prompts, input_len, output_len, vocab, seed)  # noqa: E731
        extras = sampling_extras(logprobs, penalties)
        _e2e(
            make,
            model,
            preset,
            compare,
            dtype,
            platform,
            out,
            min(max_num_seqs, num_prompts),
            "throughput",
            extras,
            tensor_parallel_size=tensor_parallel_size,
        )


@app.command("latency")
def latency(
    model: str | None = typer.Option(None, "--model", "-m"),
    preset: str | None = typer.Option(None, "--preset"),
    batch_size: int = typer.Option(1, "--batch-size"),
    input_len: int = typer.Option(128, "--input-len"),
    output_len: int = typer.Option(256, "--output-len"),
    compare: str | None = typer.Option(None, "--compare"),
    dtype: str = typer.Option("auto", "--dtype"),
    platform: str | None = typer.Option(None, "--platform", "-p"),
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", "-tp", help="Worker processes (devices) the model is split over."
    ),
    out: Path | None = typer.Option(None, "--out"),
) -> None:
    """Time per output token of one batch (default batch 1), against the weight-bytes floor."""
    from tessera.bench.e2e import fixed_workload

    with user_errors():
        make = lambda vocab: fixed_workload(batch_size, input_len, output_len, vocab, 0)  # noqa: E731
        _e2e(make, model, preset, compare, dtype, platform, out, batch_size, "latency",
             tensor_parallel_size=tensor_parallel_size)  # fmt: skip
