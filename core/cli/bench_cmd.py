"""``tessera bench kernels``: kernels against the measured device limits and a peer in the same run."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tessera.cli.common import console, user_errors

app = typer.Typer(help="Benchmarks against the hardware floor and a peer, in one run.", no_args_is_help=True)


@app.command("kernels")
def kernels(
    op: str | None = typer.Option(None, "--op", help="Only this op."),
    platform: str | None = typer.Option(None, "--platform", "-p"),
    device: int = typer.Option(0, "--device"),
    out: Path | None = typer.Option(None, "--out", help="Write the results as JSON."),
    iters: int = typer.Option(20, "--iters"),
) -> None:
    """Median time (device events, after warm-up) of each op's selected kernel, its GB/s or TFLOP/s, the share
    of the floor measured at the start of this run, and each peer's time."""
    import torch

    from tessera.bench.cases import all_cases
    from tessera.bench.kernels import run_case
    from tessera.bench.timing import measure_limits
    from tessera.kernels import get_registry, platform_facts
    from tessera.plugins import select_platform

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
            if op and case.op != op:
                continue
            try:
                rows.append(run_case(case, get_registry(), facts, target, torch_device, limits, iters))
            except Exception as exc:  # noqa: BLE001 - one case failing must not lose the others
                rows.append(
                    {"op": case.op, "case": case.label, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                )
            console.print(rows[-1], highlight=False)
    table = Table(title=f"tessera bench kernels on {facts.device}")
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
    console.print(table)
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
