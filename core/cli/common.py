"""Helpers shared by the CLI commands: JSON output, error reporting, byte formatting."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tessera.errors import ConfigError, TesseraError, describe_validation_error

# Wide enough for device names and reasons when the output is piped or captured.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def human_bytes(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a TesseraError, a validation error or an OSError into a one-line message and exit code 2."""
    from pydantic import ValidationError

    try:
        yield
    except TesseraError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        err_console.print(f"[bold red]error:[/] {escape(describe_validation_error(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:  # a file or folder the user named (or its parent) cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        what = exc.strerror or str(exc)
        err_console.print(f"[bold red]error:[/] cannot use{escape(where)}: {escape(what)}", highlight=False)
        raise typer.Exit(2) from None


def parse_shape(text: str, fields: Iterable[str], option: str = "--shape") -> dict[str, Any]:
    """A shape a user typed (``tokens=64,hidden=4096``) with exactly ``fields``: each a non-negative integer, but
    ``dtype``, a dtype name; anything else is a ConfigError that shows the form wanted."""
    fields = list(fields)
    example = ",".join(
        f"{f}=bfloat16" if f == "dtype" else f"{f}={64 * (i + 1)}" for i, f in enumerate(fields)
    )
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, eq, value = (p.strip() for p in part.partition("="))
        ok = bool(value) and (value.isidentifier() if name == "dtype" else value.isdigit())
        if not eq or name not in fields or not ok:
            raise ConfigError(f"{option} {text!r}: give {', '.join(fields)} as NAME=VALUE pairs separated by commas "
                              f"(integers, a dtype name for dtype), e.g. {example}")  # fmt: skip
        out[name] = value if name == "dtype" else int(value)
    missing = [f for f in fields if f not in out]
    if missing:
        raise ConfigError(f"{option} {text!r} lacks {', '.join(missing)}: e.g. {example}")
    return out
