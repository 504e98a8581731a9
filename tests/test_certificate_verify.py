"""What a certificate claims, checked where it is shown: `tessera conformance verify` on copies of the
committed H200 folder and on a fresh cpu certificate that is corrupted, edited and moved; the report found
beside a certificate whose recorded path is gone; the ops none of whose cases ran listed as untested."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.certificate import check_certificate
from tessera.conformance.report import ConformanceReport, markdown, untested_ops

from .certificate_helpers import certify_rms_norm

runner = CliRunner()
H200 = Path(__file__).resolve().parents[1] / "conformance" / "certificates" / "NVIDIA_H200"
COLLECTIVES = ("all_gather", "all_reduce", "reduce_scatter")


def verify(path) -> tuple[int, str]:
    result = runner.invoke(app, ["conformance", "verify", str(path)])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def stored(tmp_path, monkeypatch, fresh_discovery):
    """One real certificate of a small cpu run (one op), stored under a fresh TESSERA_HOME."""
    return certify_rms_norm(tmp_path / "home", monkeypatch)


def test_the_committed_h200_certificate_is_found_but_unverified_for_want_of_fingerprints(tmp_path):
    copy = shutil.copytree(H200, tmp_path / "NVIDIA_H200")
    for target in (copy, copy / "certificate.json"):
        code, out = verify(target)
        assert code == 1 and f"{copy / 'certificate.json'}: unverified" in out
        assert "made before code fingerprints were recorded; run the suite again" in out
        # its recorded report path is on the machine that ran it; the copy beside it was checked
        assert f"report checked: {copy / 'report.json'}, found beside the certificate" in out
        assert "recorded: conformant 1640/1640 on NVIDIA_H200" in out
    (copy / "report.json").write_text((copy / "report.json").read_text() + " ")
    code, out = verify(copy)
    assert code == 1 and "unverified" in out and "hashes to" in out
    (copy / "report.json").unlink()
    code, out = verify(copy)
    assert code == 1 and "its report cannot be read" in out and str(copy / "report.json") in out


def test_the_h200_run_left_the_collectives_untested_but_not_linear_fp8():
    report = ConformanceReport.model_validate_json((H200 / "report.json").read_text())
    fp8 = {r.status for r in report.results if r.level == "op" and r.op == "linear_fp8"}
    assert fp8 == {"pass", "skip"}  # some of its cases skipped: it is tested all the same
    found = untested_ops(report.results)
    assert set(found) == set(COLLECTIVES)
    assert found["all_reduce"] == "the collective cases need 2 cuda devices, this host has 1"
    page = markdown(report.model_copy(update={"untested_ops": found, "world_size": None}))
    assert "**Untested (none of their cases ran" in page and "all_gather, all_reduce, reduce_scatter" in page
    assert "ran on 2 ranks" not in page


def test_a_fresh_certificate_verifies_and_each_change_is_caught(stored, tmp_path):
    assert verify(stored)[0] == 0 and verify(stored.parent)[0] == 0
    code, out = verify(stored)
    assert f"{stored}: verified" in out and "recorded: conformant" in out
    original = stored.read_text()
    data = json.loads(original)
    data["verdict"], data["passed"] = "conformant", data["passed"] + 1  # an edited claim
    stored.write_text(json.dumps(data))
    code, out = verify(stored)
    assert code == 1 and "unverified" in out and "it says what its report" in out
    assert f"passed (certificate: {data['passed']}, report: {data['passed'] - 1})" in out
    stored.write_text("{not json")
    code, out = verify(stored)
    assert code == 1 and ": corrupt" in out and "unreadable certificate" in out
    stored.write_text(original)
    report = Path(json.loads(original)["report_path"])
    report.write_text(report.read_text().replace('"seed": 2', '"seed": 3'))
    code, out = verify(stored)
    assert code == 1 and "hashes to" in out


def test_a_moved_certificate_is_verified_by_the_report_beside_it(stored, tmp_path):
    """Moved with its ``<stem>.report`` folder (as `store` lays it out), or as a committed folder."""
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(stored, moved / stored.name)
    shutil.move(stored.with_name(f"{stored.stem}.report"), moved / f"{stored.stem}.report")
    code, out = verify(moved)
    assert code == 0 and "verified" in out
    assert f"report checked: {moved / f'{stored.stem}.report' / 'report.json'}, found beside" in out
    committed = tmp_path / "committed"
    committed.mkdir()
    shutil.copy(moved / stored.name, committed / "certificate.json")
    shutil.copy(moved / f"{stored.stem}.report" / "report.json", committed / "report.json")
    checked = check_certificate(committed / "certificate.json")
    assert checked.status == "verified" and checked.report == str(committed / "report.json")
    (committed / "report.json").write_text("{}")
    assert check_certificate(committed / "certificate.json").status == "unverified"


def test_verify_says_what_is_wrong_with_its_argument(tmp_path):
    code, out = verify(tmp_path / "missing")
    assert code == 2 and "does not exist" in out
    code, out = verify(tmp_path)
    assert code == 2 and "holds no certificate" in out
    code, out = verify("/dev/null")
    assert code == 2 and "/dev/null is not a regular file" in out


def test_collectives_that_could_not_run_are_untested_and_claim_no_world_size(tmp_path, monkeypatch,
                                                                              install_fixture):  # fmt: skip
    """A real platform with one device that ranks cannot share: every collective case is skipped."""
    install_fixture("checked_platform")
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    result = runner.invoke(app, ["conformance", "run", "--platform", "checked_cpu", "--ops",
                                 "all_gather,all_reduce,rms_norm", "--seed", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "untested (none of their cases ran): all_gather, all_reduce" in " ".join(result.output.split())
    (path,) = (tmp_path / "certificates" / "checked_cpu").glob("*.json")
    cert = json.loads(path.read_text())
    why = "the collective cases need 2 checked_cpu devices, this host has 1"
    assert cert["world_size"] is None and cert["untested_ops"] == {"all_gather": why, "all_reduce": why}
    report_dir = Path(cert["report_path"]).parent
    report = json.loads((report_dir / "report.json").read_text())
    assert report["world_size"] is None and report["untested_ops"] == cert["untested_ops"]
    page = (report_dir / "report.md").read_text()
    assert f"all_gather, all_reduce ({why})" in page and "ran on 2 ranks" not in page
    listed = " ".join(runner.invoke(app, ["platform", "list"]).output.replace("│", " ").split())
    assert f"certificate: conformant; untested: all_gather, all_reduce ({why}):" in listed
    entry = next(p for p in json.loads(runner.invoke(app, ["platform", "list", "--json"]).stdout)["plugins"]
                 if p["plugin"] == "checked_platform")["platforms"][0]["certificates"][0]  # fmt: skip
    assert entry["status"] == "verified" and entry["untested_ops"] == cert["untested_ops"]
