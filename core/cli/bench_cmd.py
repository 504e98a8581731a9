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


def _e2e(make, max_num_seqs: int, label: str, **options) -> dict:
    from tessera.bench.e2e_run import E2EOptions, run_e2e

    opts = E2EOptions(max_num_seqs=max_num_seqs, label=label, **options)
    return run_e2e(make, opts, say=lambda line: console.print(line, highlight=False))


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
    shared_prefix_len: int = typer.Option(
        0,
        "--shared-prefix-len",
        help="Every prompt starts with the same N tokens, then --input-len of its own.",
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
    profile_host: bool = typer.Option(
        False, "--profile-host", help="Host microseconds per step by phase, in the JSON's host_profile."
    ),
) -> None:
    """Output tokens/s of a whole workload, against the device floor (and transformers with --compare hf).

    ``--logprobs N`` and ``--penalties`` measure what those sampling features cost (run with and without);
    ``--shared-prefix-len`` shows the prefix cache (its hit rate is in the JSON)."""
    from tessera.bench.e2e import fixed_workload, random_workload, sampling_extras, shared_prefix_workload
    from tessera.errors import ConfigError

    with user_errors():
        if random_range and shared_prefix_len:
            raise ConfigError("--random-range and --shared-prefix-len do not combine; give one of them")
        if random_range:
            low, high = (int(v) for v in random_range.split(","))
            make = lambda vocab: random_workload(num_prompts, low, high, vocab, seed)  # noqa: E731
        elif shared_prefix_len:
            make = lambda vocab: shared_prefix_workload(  # noqa: E731
                num_prompts, shared_prefix_len, input_len, output_len, vocab, seed
            )
        else:
            make = lambda vocab: fixed_workload(num_prompts, input_len, output_len, vocab, seed)  # noqa: E731
        _e2e(make, min(max_num_seqs, num_prompts), "throughput", model=model, preset=preset, compare=compare,
             dtype=dtype, platform=platform, out=out, extras=sampling_extras(logprobs, penalties),
             profile_host=profile_host, tensor_parallel_size=tensor_parallel_size)  # fmt: skip


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
    first: bool = typer.Option(
        False,
        "--first-request",
        help="Also the TTFT of the first request a new engine serves, against the warm one.",
    ),
    profile_host: bool = typer.Option(False, "--profile-host", help="Host microseconds per step by phase."),
) -> None:
    """Time per output token of one batch (default batch 1), against the weight-bytes floor."""
    from tessera.bench.e2e import fixed_workload

    with user_errors():
        make = lambda vocab: fixed_workload(batch_size, input_len, output_len, vocab, 0)  # noqa: E731
        _e2e(make, batch_size, "latency", model=model, preset=preset, compare=compare, dtype=dtype,
             platform=platform, out=out, first_request=first, profile_host=profile_host,
             tensor_parallel_size=tensor_parallel_size)  # fmt: skip
