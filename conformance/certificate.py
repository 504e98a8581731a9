"""Certificates: the signed-off summary of one conformance run, kept per platform and device.

Stored in the user's data directory as ``certificates/<platform>/<canonical device>.json``
(the latest) next to the report it was made from; ``tessera platform list`` shows them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, ValidationError

from tessera.conformance.report import ConformanceReport


class Certificate(BaseModel):
    schema_version: int = 1
    suite_version: str
    platform: str
    device: str
    canonical_device: str
    arch: str
    driver: str | None
    torch: str
    plugins: dict[str, str]
    mode: str
    scope: str = "complete"
    date: str
    counts: dict[str, int]
    passed: int
    total: int
    verdict: str  # "conformant" or "not conformant"
    report_sha256: str
    report_path: str


def certificate_root() -> Path:
    from tessera.paths import data_dir

    return data_dir() / "certificates"


def make_certificate(report: ConformanceReport, report_path: Path, sha256: str) -> Certificate:
    counts = report.counts()
    total = sum(v for k, v in counts.items() if k != "skip")
    return Certificate(
        suite_version=report.suite_version, platform=report.platform, device=report.device.name,
        canonical_device=report.device.canonical_name, arch=report.device.arch, driver=report.device.driver,
        torch=report.torch, plugins=report.plugins, mode=report.mode, scope=report.scope, date=report.started, counts=counts,
        passed=counts["pass"] + counts["xfail"], total=total,
        verdict="conformant" if report.passed else "not conformant", report_sha256=sha256, report_path=str(report_path),
    )  # fmt: skip


def stem(certificate: Certificate) -> str:
    """File stem: the device, plus a marker for partial runs so they never replace a complete one."""
    if certificate.scope == "complete":
        return certificate.canonical_device
    import hashlib

    return (
        f"{certificate.canonical_device}.partial-{hashlib.sha256(certificate.scope.encode()).hexdigest()[:8]}"
    )


def store(certificate: Certificate, report_dir: Path) -> Path:
    """Keep the certificate (and a copy of its report) as the latest for its platform, device and scope."""
    folder = certificate_root() / certificate.platform
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{stem(certificate)}.report"
    if kept.resolve() != report_dir.resolve():
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(report_dir, kept)
        certificate = certificate.model_copy(update={"report_path": str(kept / "report.json")})
    path = folder / f"{stem(certificate)}.json"
    path.write_text(certificate.model_dump_json(indent=2))
    return path


def latest_certificates(platform: str) -> list[Certificate]:
    """Every stored certificate of ``platform`` (one per device); unreadable files are skipped."""
    folder = certificate_root() / platform
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(Certificate.model_validate_json(path.read_text()))
        except (ValidationError, OSError, ValueError):
            continue
    return out
