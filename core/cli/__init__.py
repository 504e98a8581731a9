"""The ``tessera`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import os

import typer

from tessera.cli import (
    bench_cmd,
    bench_serve_cmd,
    conformance_cmd,
    generate_cmd,
    kernels_cmd,
    platform_cmd,
    serve_cmd,
    tune_cmd,
)

app = typer.Typer(
    name="tessera",
    help="Tessera: LLM inference on whatever hardware is present, through plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from tessera.hookspecs import PLUGIN_API_VERSION

        try:
            own = version("tessera")
        except PackageNotFoundError:  # running from a source tree that is not installed
            own = "unknown (not installed)"
        typer.echo(f"tessera {own} (plugin API {PLUGIN_API_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Tessera: LLM inference on whatever hardware is present, through plugins."""
    if "WORLD_SIZE" in os.environ:  # under torchrun: rank 0 runs the command, the others serve its steps
        from tessera.engine import tp_launch
        from tessera.engine.tp_launch import launched_rank, serve_rank

        tp_launch.CLI_LAUNCH = True
        where = launched_rank()
        if where is not None and where.rank > 0:
            serve_rank(where)
            raise typer.Exit()


app.add_typer(platform_cmd.app, name="platform")
app.add_typer(kernels_cmd.app, name="kernels")
app.add_typer(conformance_cmd.app, name="conformance")
bench_cmd.app.command("serve")(bench_serve_cmd.bench_serve)
app.add_typer(bench_cmd.app, name="bench")
app.command("tune")(tune_cmd.tune)
app.command("generate")(generate_cmd.generate)
app.command("inspect")(generate_cmd.inspect)
app.command("serve")(serve_cmd.serve)


def main() -> None:
    app()
