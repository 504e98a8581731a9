"""Certificates are verified whenever they are shown: a missing report, a report whose hash differs,
plugin versions that changed and a corrupt file are each shown as such, never as conformant."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance.certificate import check_certificate

from .certificate_helpers import certify_rms_norm

runner = CliRunner()


@pytest.fixture
def stored(tmp_path, monkeypatch, fresh_discovery):
    """One real certificate of a small cpu run, stored under a fresh TESSERA_HOME."""
    return certify_rms_norm(tmp_path, monkeypatch)


def listed(platform="cpu"):
    data = json.loads(runner.invoke(app, ["platform", "list", "--json"]).stdout)
    return next(p for p in data["plugins"] if p["plugin"] == platform)["platforms"][0]["certificates"]


def test_a_fresh_certificate_is_verified(stored):
    assert check_certificate(stored).status == "verified"
    (cert,) = listed()
    assert cert["status"] == "verified" and cert["verdict"] == "conformant"
    assert "certificate: conformant" in runner.invoke(app, ["platform", "list"]).output


def test_a_missing_report_or_a_different_hash_is_unverified(stored):
    data = json.loads(stored.read_text())
    report = data["report_path"]
    data["report_sha256"] = "0" * 64
    stored.write_text(json.dumps(data))
    (cert,) = listed()
    assert cert["status"] == "unverified" and "hashes to" in cert["reason"]
    # gone from the recorded path, and so from beside the certificate (where it would be looked for too)
    Path(report).rename(report + ".gone")
    (cert,) = listed()
    assert cert["status"] == "unverified" and "cannot be read" in cert["reason"]
    text = runner.invoke(app, ["platform", "list"]).output
    assert "certificate unverified" in text and "conformant" not in text.replace("not conformant", "")
    shown = runner.invoke(app, ["conformance", "show"])
    assert shown.exit_code == 2 and "cannot be shown" in " ".join(shown.output.split())


def test_changed_plugin_versions_make_it_stale(stored):
    # the report and certificate of a run made when tessera-cpu was 0.0.9 (they agree with each other)
    data = json.loads(stored.read_text())
    report = Path(data["report_path"])
    run = json.loads(report.read_text())
    run["plugins"]["tessera-cpu"] = data["plugins"]["tessera-cpu"] = "0.0.9"
    report.write_text(json.dumps(run))
    data["report_sha256"] = hashlib.sha256(report.read_bytes()).hexdigest()
    stored.write_text(json.dumps(data))
    checked = check_certificate(stored)
    assert checked.status == "stale" and "tessera-cpu 0.0.9 (installed: 0.1.0)" in checked.reason


def test_a_corrupt_certificate_is_listed_as_corrupt(stored):
    stored.write_text("{not json")
    (cert,) = listed()
    assert cert["status"] == "corrupt" and "unreadable certificate" in cert["reason"]
    assert "certificate corrupt" in runner.invoke(app, ["platform", "list"]).output
    shown = runner.invoke(app, ["conformance", "show"])
    assert shown.exit_code == 2 and "Traceback" not in shown.output
