"""Certificates: the signed-off summary of one conformance run, kept per platform and device.

Stored in the user's data directory as ``certificates/<platform>/<canonical device>.json``
(the latest) next to the report it was made from; ``tessera platform list``, ``tessera conformance
show`` and ``tessera conformance verify`` verify each one when they show it (report present, its sha256,
the installed versions and the code fingerprints of the installed distributions).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as importlib_metadata
import shutil
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from tessera.conformance.certificate_coverage import candidate_distributions, untested_dtypes
from tessera.conformance.fingerprint import code_fingerprint, code_fingerprints
from tessera.conformance.report import SUITE_VERSION, ConformanceReport, excused_kernels
from tessera.errors import describe_validation_error

#: 2: code fingerprints and untested ops (version 1 files are read, and shown as unverified)
SCHEMA_VERSION = 3
#: the schema versions this version reads (1: before code fingerprints, shown as unverified; 2: expected
#: failures counted as passes, so a schema-2 certificate with any is shown as stale)
KNOWN_SCHEMAS = (1, 2, 3)
#: the distribution of the reference kernels and layers the suite compares against
CORE_DISTRIBUTION = "tessera"


class Certificate(BaseModel):
    schema_version: int = SCHEMA_VERSION
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
    #: "conformant", "conformant except expected failures" (some cases failed as their plugin declared: see
    #: ``excused``) or "not conformant"
    verdict: str
    report_sha256: str
    report_path: str
    #: op -> number of cases drawn from its shape space (absent in certificates made before spaces)
    generated: dict[str, int] = {}
    sanitized: bool = False
    #: the ranks the collective ops were certified on (None: made before collectives, or none ran)
    world_size: int | None = None
    #: op -> why none of its cases ran (an op listed here is not certified, whatever the verdict)
    untested_ops: dict[str, str] = {}
    #: op/kernel -> the expected failures its plugin declared (those kernels are not certified where they fail)
    excused: dict[str, str] = {}
    #: distribution -> sha256 of its code when it was certified (empty: made before fingerprints)
    fingerprints: dict[str, str] = {}


def certificate_root() -> Path:
    from tessera.paths import data_dir

    return data_dir() / "certificates"


def claims(report: ConformanceReport, schema: int = SCHEMA_VERSION) -> dict:
    """What a certificate says about its report (every field but the report's place, hash and the code
    fingerprints): made from the report, and checked against it whenever the certificate is shown. A case
    that passed against its plugin's expectation (xpass) passed; before schema 3 an expected failure did too."""
    counts = report.counts()
    if schema < 3:
        return dict(_common_claims(report, counts), passed=counts["pass"] + counts["xfail"],
                    verdict="conformant" if report.passed else "not conformant")  # fmt: skip
    return dict(_common_claims(report, counts), passed=counts["pass"] + counts["xpass"], verdict=verdict(report),
                excused=excused_kernels(report.results))  # fmt: skip


def _common_claims(report: ConformanceReport, counts: dict) -> dict:
    return dict(
        suite_version=report.suite_version, platform=report.platform, device=report.device.name,
        canonical_device=report.device.canonical_name, arch=report.device.arch, driver=report.device.driver,
        torch=report.torch, plugins=report.plugins, mode=report.mode, scope=report.scope, date=report.started, counts=counts,
        total=sum(v for k, v in counts.items() if k != "skip"),
        generated={op: by.get("generated", 0) for op, by in report.drawn.items()}, sanitized=report.sanitized,
        world_size=report.world_size, untested_ops=report.untested_ops,
    )  # fmt: skip


def verdict(report: ConformanceReport) -> str:
    """Conformant only when every case that ran passed: an expected failure is said, never counted as a pass."""
    if not report.passed:
        return "not conformant"
    return "conformant except expected failures" if report.counts()["xfail"] else "conformant"


def make_certificate(report: ConformanceReport, report_path: Path, sha256: str) -> Certificate:
    return Certificate(
        **claims(report), report_sha256=sha256, report_path=str(report_path),
        fingerprints=code_fingerprints([CORE_DISTRIBUTION, *report.plugins]),
    )  # fmt: skip


def _differences(cert: Certificate, data: bytes) -> str | None:
    """Where the certificate's claims differ from the report they were made from (None: nowhere)."""
    try:
        report = ConformanceReport.model_validate_json(data)
    except (ValidationError, ValueError) as exc:
        detail = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        return f"it is not a conformance report ({detail})"
    made = claims(report, cert.schema_version)
    wrong = [
        f"{k} (certificate: {getattr(cert, k)}, report: {v})"
        for k, v in made.items()
        if getattr(cert, k) != v
    ]
    return "; ".join(wrong) or None


def stem(certificate: Certificate) -> str:
    """File stem: the device, plus a marker for partial runs so they never replace a complete one."""
    if certificate.scope == "complete":
        return certificate.canonical_device
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


CertificateStatus = Literal["verified", "stale", "unverified", "corrupt"]


class CheckedCertificate(BaseModel):
    """A stored certificate as found now: ``verified`` only when its report is there, hashes to the
    recorded sha256, the suite and every recorded plugin are installed at the recorded versions, and
    the code of each recorded distribution still has the recorded fingerprint."""

    path: str
    status: CertificateStatus
    reason: str = ""
    certificate: Certificate | None = None
    #: the report that was checked (the recorded path, or the one found beside the certificate)
    report: str | None = None


def installed_version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def report_candidates(path: Path, cert: Certificate) -> list[Path]:
    """Where the report may be: the recorded path (on the machine that ran the suite), then beside the
    certificate as ``store`` keeps it (``<stem>.report/report.json``) or as a committed folder holds it."""
    return [Path(cert.report_path), path.with_name(f"{path.stem}.report") / "report.json",
            path.with_name("report.json")]  # fmt: skip


#: a report or certificate larger than this is not read (a path such as /dev/zero must not exhaust memory)
MAX_FILE_BYTES = 1 << 30


def read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file of sane size; OSError otherwise (a FIFO would block, a
    device never end, a path with a NUL byte is no path)."""
    try:
        info = path.stat()
    except ValueError as exc:  # an embedded NUL byte
        raise OSError(f"not a usable path ({exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise OSError("not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise OSError(f"{info.st_size} bytes, more than any report")
    return path.read_bytes()


def _find_report(path: Path, cert: Certificate) -> tuple[Path | None, bytes, str]:
    """The first report that can be read and its bytes, or None and what went wrong at each place tried."""
    tried = []
    for candidate in report_candidates(path, cert):
        try:
            return candidate, read_regular(candidate), ""
        except OSError as exc:
            tried.append(f"{candidate}: {exc.strerror or exc}")
    return None, b"", "; ".join(tried)


def check_certificate(path: Path) -> CheckedCertificate:
    """Read and verify one certificate file; never raises for a bad file, it says what is wrong."""
    try:
        cert = Certificate.model_validate_json(read_regular(path))
    except (ValidationError, OSError, ValueError) as exc:
        detail = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        if isinstance(exc, ValidationError) and '"results"' in _head(path):
            detail = (
                "this is a conformance report, not a certificate (the certificate is the .json beside it)"
            )
        return CheckedCertificate(
            path=str(path), status="corrupt", reason=f"unreadable certificate: {detail}"
        )
    if cert.schema_version not in KNOWN_SCHEMAS:
        return _checked(path, cert, "corrupt", f"schema_version {cert.schema_version} is none this version of "
                                               f"tessera writes ({', '.join(map(str, KNOWN_SCHEMAS))})")  # fmt: skip
    report, data, tried = _find_report(path, cert)
    if report is None:
        return _checked(path, cert, "unverified", f"its report cannot be read ({tried})")
    digest = hashlib.sha256(data).hexdigest()
    if digest != cert.report_sha256:
        return _checked(path, cert, "unverified", f"its report {report} hashes to {digest[:12]}…, "
                                                  f"not the recorded {cert.report_sha256[:12]}…", report)  # fmt: skip
    wrong = _differences(cert, data)
    if wrong:
        return _checked(
            path, cert, "unverified", f"it says what its report {report} does not: {wrong}", report
        )
    status, reason = _installed_status(cert)
    if cert.schema_version < 3 and cert.counts.get("xfail") and status != "unverified":
        status, reason = (
            "stale",
            "made before expected failures were counted apart from passes; run the suite again",
        )
    if status == "verified":
        status, reason = untested_dtypes(cert.platform, cert.scope, data)
    checked = f"report checked: {report}"
    if str(report) != cert.report_path:
        checked += f", found beside the certificate (the recorded {cert.report_path} is missing)"
    return _checked(path, cert, status, f"{reason}; {checked}" if reason else checked, report)


def _head(path: Path) -> str:
    try:
        return read_regular(path)[:4096].decode(errors="replace")
    except OSError:
        return ""


def _installed_status(cert: Certificate) -> tuple[CertificateStatus, str]:
    """Whether what is installed now is what was certified: fingerprints, then versions, then code, then
    distributions installed since whose kernels could be selected on the certified platform."""
    if not cert.fingerprints:
        return "unverified", "made before code fingerprints were recorded; run the suite again"
    missing = sorted({CORE_DISTRIBUTION, *cert.plugins} - set(cert.fingerprints))
    if missing:
        return "unverified", f"it records no code fingerprint for {', '.join(missing)}"
    changed = [f"{dist} {ver} (installed: {installed_version(dist) or 'none'})"
               for dist, ver in sorted(cert.plugins.items()) if installed_version(dist) != ver]  # fmt: skip
    if cert.suite_version != SUITE_VERSION:
        changed.insert(0, f"suite {cert.suite_version} (installed: {SUITE_VERSION})")
    if changed:
        return "stale", "made with " + ", ".join(changed) + "; run the suite again"
    code = [dist for dist, fp in sorted(cert.fingerprints.items()) if code_fingerprint(dist) != fp]
    if code:
        whose = " and ".join(f"{dist}'s" for dist in code)
        return "stale", f"{whose} code changed since it was certified; run the suite again"
    added = sorted(candidate_distributions(cert.platform) - set(cert.plugins) - {CORE_DISTRIBUTION})
    if added:
        return "stale", (f"{', '.join(added)} installed since it was certified, with kernels that may be selected "
                         f"on {cert.platform}; run the suite again")  # fmt: skip
    return "verified", ""


def _checked(path: Path, cert: Certificate, status: CertificateStatus, reason: str,
             report: Path | None = None) -> CheckedCertificate:  # fmt: skip
    return CheckedCertificate(path=str(path), status=status, reason=reason, certificate=cert,
                              report=None if report is None else str(report))  # fmt: skip


def latest_certificates(platform: str) -> list[CheckedCertificate]:
    """Every stored certificate of ``platform`` (one per device and scope), each verified now; a corrupt
    file is listed as corrupt, never dropped."""
    folder = certificate_root() / platform
    found = [check_certificate(path) for path in (sorted(folder.glob("*.json")) if folder.is_dir() else [])]
    for i, checked in enumerate(found):
        cert = checked.certificate
        if cert is not None and cert.platform != platform:  # copied or moved into another platform's folder
            found[i] = checked.model_copy(update={"status": "unverified", "reason": f"a certificate of the "
                                                  f"{cert.platform!r} platform, in {platform}'s folder"})  # fmt: skip
    return found
