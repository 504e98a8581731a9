"""Certificates tampered with in the ways a careless copy or a hostile file can: a certificate shown under a
platform it was not made for, an unknown schema, a fingerprint entry removed, a report path that is no
regular file (a NUL byte, /dev/zero, a FIFO), a report given where a certificate is expected; and runs whose
selection names nothing (a typo) refused instead of certifying what is left."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.certificate import check_certificate, latest_certificates
from tessera.errors import ConfigError

from .certificate_helpers import certify_rms_norm

runner = CliRunner()


@pytest.fixture
def stored(tmp_path, monkeypatch, fresh_discovery):
    return certify_rms_norm(tmp_path / "home", monkeypatch)


def edited(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_certificate_under_another_platform_is_not_shown_as_verified(stored, tmp_path):
    assert [c.status for c in latest_certificates("cpu")] == ["verified"]
    cuda = stored.parent.parent / "cuda"
    cuda.mkdir()
    shutil.move(stored, cuda / stored.name)
    shutil.move(stored.with_name(f"{stored.stem}.report"), cuda / f"{stored.stem}.report")
    (found,) = latest_certificates("cuda")
    assert (
        found.status == "unverified"
        and "a certificate of the 'cpu' platform, in cuda's folder" in found.reason
    )


@pytest.mark.parametrize("version", [99, -5, 0])
def test_an_unknown_schema_version_is_corrupt(stored, version):
    edited(stored, schema_version=version)
    checked = check_certificate(stored)
    assert checked.status == "corrupt" and f"schema_version {version}" in checked.reason


def test_a_removed_fingerprint_entry_is_unverified(stored):
    data = json.loads(stored.read_text())
    fingerprints = data["fingerprints"]
    fingerprints.pop("tessera-cpu")
    edited(stored, fingerprints=fingerprints)
    checked = check_certificate(stored)
    assert checked.status == "unverified" and "no code fingerprint for tessera-cpu" in checked.reason


@pytest.mark.parametrize("report_path", ["bad\u0000path", "/dev/zero", "FIFO"])
def test_a_report_path_that_is_no_regular_file_neither_crashes_nor_hangs(stored, tmp_path, report_path):
    shutil.rmtree(stored.with_name(f"{stored.stem}.report"))  # nothing beside it: only the recorded path
    if report_path == "FIFO":
        report_path = str(tmp_path / "fifo")
        os.mkfifo(report_path)
    edited(stored, report_path=report_path)
    checked = check_certificate(stored)
    assert checked.status == "unverified" and "its report cannot be read" in checked.reason
    result = runner.invoke(app, ["platform", "list"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def test_a_fifo_in_the_certificate_folder_is_corrupt_not_a_hang(stored):
    os.mkfifo(stored.parent / "trap.json")
    by_name = {os.path.basename(c.path): c for c in latest_certificates("cpu")}
    assert by_name["trap.json"].status == "corrupt" and "not a regular file" in by_name["trap.json"].reason


def test_a_report_given_as_a_certificate_says_so(stored):
    report = stored.with_name(f"{stored.stem}.report") / "report.json"
    checked = check_certificate(report)
    assert checked.status == "corrupt" and "this is a conformance report, not a certificate" in checked.reason


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (dict(ops=["nosuch"]), "no op nosuch; the ops are"),
        (dict(kernels=["nosuch*"]), "no kernel of cpu matches nosuch*"),
        (dict(dtypes=["float64"]), "no dtype float64"),
        (dict(ops=["rms_norm"], cases=["nosuch"]), "no case matches nosuch"),
        (dict(device_index=5), "no device 5 on cpu"),
    ],
)
def test_a_selection_that_names_nothing_is_refused(fresh_discovery, option, message):
    from tessera.conformance.runner import RunOptions, run

    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        run(RunOptions(platform="cpu", **option))


def test_a_dtype_the_platform_claims_since_makes_a_complete_certificate_stale(
    tmp_path, monkeypatch, fresh_discovery
):
    from tessera.conformance.certificate_coverage import untested_dtypes

    monkeypatch.setenv("TESSERA_CPU_DTYPES", "float32")
    path = certify_rms_norm(tmp_path / "home", monkeypatch)
    data = (path.with_name(f"{path.stem}.report") / "report.json").read_bytes()
    assert untested_dtypes("cpu", "complete", data) == ("verified", "")
    monkeypatch.setenv("TESSERA_CPU_DTYPES", "float32,bfloat16")
    fresh_discovery._cached.clear()
    status, reason = untested_dtypes("cpu", "complete", data)
    assert status == "stale" and "cpu now claims bfloat16, which this certificate did not test" in reason
    assert untested_dtypes("cpu", "ops=rms_norm", data) == (
        "verified",
        "",
    )  # a partial run claims no coverage
