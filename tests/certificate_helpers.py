"""A real certificate for the certificate tests: a cpu conformance run of one op through the CLI."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tessera.cli import app


def certify_rms_norm(home: Path, monkeypatch) -> Path:
    """A real certificate of a cpu run of rms_norm (one op), stored under ``home`` as TESSERA_HOME."""
    monkeypatch.setenv("TESSERA_HOME", str(home))
    result = CliRunner().invoke(
        app, ["conformance", "run", "--platform", "cpu", "--ops", "rms_norm", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    (path,) = (home / "certificates" / "cpu").glob("*.json")
    return path
