"""``tessera tune KERNEL``: autotune a kernel on the present device and write its config file."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tessera.cli.common import console, parse_shape, user_errors
from tessera.discovery import select_platform
from tessera.errors import TesseraError
from tessera.kernel_registry import get_registry, platform_facts
from tessera.platform import dtype_from_name
from tessera.pluggable_layers.measure import median_ms_graph
from tessera.pluggable_layers.tuner import tune_kernel
from tessera.pluggable_layers.tuning import TUNED_DIR_ENV, write_config_file


def default_out_dir() -> Path:
    from tessera.paths import data_dir

    return Path(os.environ.get(TUNED_DIR_ENV) or data_dir() / "configs")


def tune(
    kernel: str = typer.Argument(..., help="Kernel name, e.g. triton_rms_norm (see `tessera kernels list`)."),
    shapes: str | None = typer.Option(
        None,
        "--shapes",
        help="Semicolon-separated shapes, e.g. 'tokens=1,hidden=4096;tokens=256,hidden=4096'.",
    ),
    platform: str | None = typer.Option(None, "--platform", "-p"),
    device: int = typer.Option(0, "--device"),
    dtype: str = typer.Option("bfloat16", "--dtype"),
    out: Path | None = typer.Option(
        None,
        "--out",
        help=f"Folder for <kernel>/<device>.json (default ${TUNED_DIR_ENV} or the user data dir).",
    ),
    iters: int = typer.Option(20, "--iters"),
) -> None:
    """Check every valid config of KERNEL against the reference, time it with device events, keep the fastest."""
    with user_errors():
        target = select_platform(platform)
        target.set_device(device)
        facts = platform_facts(target, device)
        impl = get_registry().find(kernel)
        refusal = impl.refusal(get_registry().select(impl.op, facts, dtype).query)
        if refusal:
            raise TesseraError(f"kernel {kernel!r} cannot run on {facts.name}: {refusal}")
        shape_list = (
            [parse_shape(s, _shape_fields(impl), "--shapes") for s in shapes.split(";") if s.strip()]
            if shapes
            else [dict(s) for s in impl.tune_shapes]
        )
        data = tune_kernel(
            impl, shape_list, dtype_from_name(dtype), target.torch_device(device), facts.device or facts.name,
            make_event=target.event, synchronize=lambda: target.synchronize(device), iters=iters, log=console.print,
            timer=lambda call: median_ms_graph([call], target, calls=20, iters=iters),
        )  # fmt: skip
        path = write_config_file((out or default_out_dir()) / kernel / f"{data.device}.json", data)
    console.print(f"wrote {path}")


def _shape_fields(impl) -> list[str]:
    """The dimensions a shape of ``impl``'s tuning names: its shape key's, else those of its own tune shapes."""
    if impl.shape_key is not None:
        return list(impl.shape_key.fields)
    return list(dict(impl.tune_shapes[0])) if impl.tune_shapes else []
