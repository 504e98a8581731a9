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
    verified = runner.invoke(app, ["conformance", "verify", str(path)])
    assert verified.exit_code == 0, verified.output
    assert (
        "excused: silu_and_mul/wrong_silu_unwritten (known: the last element is never written)"
        in verified.output
    )


def test_a_schema_2_certificate_with_expected_failures_is_stale(home, install_fixture):
    """Before schema 3 an expected failure counted as a pass: such a certificate, true to its own rules, is
    shown as stale (run the suite again), not as tampered with, nor as conformant."""
    from tessera.conformance.certificate import check_certificate

    install_fixture("wrong_kernels")
    args = ["conformance", "run", "--platform", "cpu", "--ops", "silu_and_mul", "--kernels",
            "wrong_silu_unwritten", "--cases", "t1_*", "--dtypes", "float32"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    [path] = (home / "certificates" / "cpu").glob("*.json")
    cert = json.loads(path.read_text())
    old = {k: v for k, v in cert.items() if k != "excused"} | {"schema_version": 2, "verdict": "conformant",
                                                               "passed": cert["passed"] + cert["counts"]["xfail"]}  # fmt: skip
    path.write_text(json.dumps(old))
    checked = check_certificate(path)
    assert checked.status == "stale", checked
    assert checked.reason.startswith("made before expected failures were counted apart from passes")


def test_excused_names_each_case_that_is_no_single_kernel_by_its_id():
    from tessera.conformance.report import CaseResult, excused_kernels

    def xfail(level, case_id, op="", kernel="", reason="known; see the tracker"):
        return CaseResult(level=level, case_id=case_id, op=op, kernel=kernel, status="xfail",
                          message=f"expected: {reason}; over budget", extra={"expected": reason})  # fmt: skip

    excused = excused_kernels([
        xfail("op", "silu_and_mul/k/float32/t1", "silu_and_mul", "k"),
        xfail("layer", "layer/linear/float32", "linear", "cpu_linear,reference"),
        xfail("platform", "platform/graphs"),
        CaseResult(level="op", case_id="rms_norm/k/float32/t1", op="rms_norm", kernel="k", status="pass"),
    ])  # fmt: skip
    assert excused == {"silu_and_mul/k": "known; see the tracker", "layer/linear/float32": "known; see the tracker",
                       "platform/graphs": "known; see the tracker"}  # fmt: skip
