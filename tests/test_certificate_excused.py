"""An expected failure is said, never counted as a pass: a certificate whose only failures are ones a
plugin declared is "conformant except expected failures", names the kernels, and `platform list` shows
them as not certified where they fail."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tessera.cli import app
from tessera.cli.platform_cmd import certificate_line

runner = CliRunner()


def test_expected_failures_are_not_counted_as_conformant(home, install_fixture):
    install_fixture("wrong_kernels")
    # only the cases the fixture declares as expected failures of its silu kernel
    args = ["conformance", "run", "--platform", "cpu", "--ops", "silu_and_mul", "--kernels",
            "wrong_silu_unwritten", "--cases", "t1_*", "--dtypes", "float32"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [path] = (home / "certificates" / "cpu").glob("*.json")
    cert = json.loads(path.read_text())
    assert cert["verdict"] == "conformant except expected failures"
    assert cert["counts"]["xfail"] > 0 and cert["passed"] == cert["counts"]["pass"] < cert["total"]
    assert list(cert["excused"]) == ["silu_and_mul/wrong_silu_unwritten"]
    assert "the last element is never written" in cert["excused"]["silu_and_mul/wrong_silu_unwritten"]
    data = json.loads(runner.invoke(app, ["platform", "list", "--json"]).stdout)
    cpu = next(p for r in data["plugins"] for p in r["platforms"] if p["name"] == "cpu")
    [shown] = [c for c in cpu["certificates"] if c.get("excused")]
    assert shown["status"] == "verified"
    line = certificate_line(shown)  # the line `platform list` shows for it
    assert (
        "[yellow]conformant except expected failures[/]" in line and "not certified where they fail" in line
    )
    assert "silu_and_mul/wrong_silu_unwritten (known: the last element is never written)" in line
    assert "expected failures" in runner.invoke(app, ["platform", "list"]).output
