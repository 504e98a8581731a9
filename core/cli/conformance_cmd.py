"""``tessera conformance run``, ``tessera conformance show`` and ``tessera conformance verify``."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from tessera.cli.common import console, user_errors

app = typer.Typer(help="Certify a platform's kernels on its device.", no_args_is_help=True)


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@app.command("run")
def run(
    platform: str | None = typer.Option(None, "--platform", "-p"),
    device: int = typer.Option(0, "--device"),
    full: bool = typer.Option(False, "--full", help="Add long contexts and large shapes."),
    quick: bool = typer.Option(False, "--quick", help="Small shapes only (the default)."),
    ops: str | None = typer.Option(None, "--ops", help="Comma-separated ops to test."),
    kernels: str | None = typer.Option(
        None, "--kernels", help="Comma-separated kernel names or globs (triton_*)."
    ),
    dtypes: str | None = typer.Option(
        None, "--dtypes", help="Comma-separated dtypes (default: the platform's)."
    ),
    perf: bool = typer.Option(
        False, "--perf", help="Also time each passing kernel against the measured limits."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Replay a run (the report records its seed)."),
    cases: str | None = typer.Option(
        None, "--cases", help="Comma-separated case names or globs (gen_*, zoo_*)."
    ),
    sanitize: bool = typer.Option(
        False,
        "--sanitize",
        help="Run the op cases under the platform's memory checker (a process per op, kernel and dtype).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: the user data dir)."),
) -> None:
    """Run the suite; write report.json, report.md and the certificate; exit 1 when anything fails."""
    from tessera.conformance.certificate import make_certificate, store
    from tessera.conformance.report import write_report
    from tessera.conformance.runner import RunOptions
    from tessera.conformance.runner import run as run_suite
    from tessera.paths import data_dir

    if quick and full:
        raise typer.BadParameter("--quick and --full exclude each other")
    with user_errors():
        options = RunOptions(platform=platform, device_index=device, full=full, ops=_split(ops), kernels=_split(kernels),
                             perf=perf, seed=seed, dtypes=_split(dtypes), cases=_split(cases), sanitize=sanitize)  # fmt: skip
        with fallbacks_collected() as fallbacks, progress_reporter() as progress:
            report = run_suite(options, progress)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = (
            out or data_dir() / "conformance" / f"{report.platform}-{report.device.canonical_name}-{stamp}"
        )
        json_path, md_path, sha = write_report(report, folder)
        cert_path = store(make_certificate(report, json_path, sha), folder)
    summarize(report)
    if fallbacks:
        by_op: dict[str, list[str]] = {}
        for pair in sorted(fallbacks):
            op, _, dtype = pair.partition("/")
            by_op.setdefault(op, []).append(dtype)
        ops = "; ".join(f"{op} ({', '.join(dtypes)})" for op, dtypes in by_op.items())
        console.print(f"[dim]the layer and model levels ran the reference kernel for {ops}: no faster kernel accepts "
                      "them here (`tessera kernels explain OP` says why)[/]", highlight=False)  # fmt: skip
    console.print(f"report: {json_path}\npage: {md_path}\ncertificate: {cert_path}")
    if not report.passed:
        raise typer.Exit(1)


@contextmanager
def progress_reporter() -> Iterator[Callable[[str, int, int], None]]:
    """A live bar on a terminal; elsewhere (a CI log) one plain line each time the op (or level) changes."""
    if console.is_terminal:
        with Progress(console=console) as bar:
            task = bar.add_task("conformance", total=None)
            yield lambda label, i, n: bar.update(task, description=label, completed=i, total=n)
        return
    last = [""]

    def line(label: str, i: int, n: int) -> None:
        head = label.split(" ")[0]
        if head != last[0]:
            last[0] = head
            console.print(f"[{i + 1:>{len(str(n))}}/{n}] {label}", highlight=False, markup=False)

    yield line


@contextmanager
def fallbacks_collected() -> Iterator[set[str]]:
    """Within the block the registry's "falls back to the reference kernel" warnings are gathered as
    ``op/dtype`` (for one summary line after the table) instead of printed; other records pass."""
    logger = logging.getLogger("tessera.kernels")
    pairs: set[str] = set()

    def gather(record: logging.LogRecord) -> bool:
        if "falls back to the reference kernel" not in str(record.msg):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        pairs.add(f"{args[0]}/{args[2]}" if len(args) >= 3 else record.getMessage())
        return False

    logger.addFilter(gather)
    try:
        yield pairs
    finally:
        logger.removeFilter(gather)


def summarize(report) -> None:
    table = Table(
        title=f"conformance of {report.platform} on {report.device.name} ({report.mode}, seed {report.seed})"
    )
    for column in ("level", "op", "kernel", "dtype", "pass", "fail", "other", "worst share of budget"):
        table.add_column(column)
    groups: dict[tuple, list] = {}
    for r in report.results:
        groups.setdefault((r.level, r.op, r.kernel, r.dtype), []).append(r)
    for (level, op, kernel, dtype), rs in sorted(groups.items()):
        shares = [r.budget_share for r in rs if r.budget_share is not None]
        fails = sum(r.status in ("fail", "error") for r in rs)
        other = sum(r.status in ("xfail", "xpass", "skip") for r in rs)
        style = "red" if fails else "green"
        table.add_row(level, op, kernel[:40], dtype, str(sum(r.status == "pass" for r in rs)), f"[{style}]{fails}[/]", str(other),
                      f"{max(shares):.2f}" if shares else "-")  # fmt: skip
    console.print(table)
    for r in report.results:
        if r.status in ("fail", "error", "xpass"):
            console.print(f"[red]{r.status}[/] {r.case_id}: {r.message}", highlight=False)
    if report.untested_ops:
        from tessera.conformance.report import untested_text

        console.print(f"[yellow]untested[/] (none of their cases ran): {untested_text(report.untested_ops)}",
                      highlight=False)  # fmt: skip
    c = report.counts()
    console.print(f"{c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['xfail']} xfail, {c['xpass']} xpass, "
                  f"{c['skip']} skipped in {report.duration_s:.1f}s")  # fmt: skip


@app.command("show")
def show(
    report: Path | None = typer.Argument(
        None, help="report.json (default: the latest certificate's report)."
    ),
) -> None:
    """Print a report's summary."""
    from pydantic import ValidationError

    from tessera.conformance.certificate import certificate_root
    from tessera.conformance.report import ConformanceReport
    from tessera.errors import TesseraError, describe_validation_error

    with user_errors():
        if report is None:
            report = _latest_verified_report(certificate_root())
        text = (
            report.read_bytes()
        )  # bytes: a file that is not UTF-8 is "not a report", not a decode traceback
        try:
            data = ConformanceReport.model_validate_json(text)
        except ValidationError as exc:
            raise TesseraError(
                f"{report} is not a conformance report ({describe_validation_error(exc)}); "
                "give the report.json that `tessera conformance run` wrote"
            ) from None
    summarize(data)


def _latest_verified_report(root: Path) -> Path:
    """The report of the newest stored certificate, after verifying it (its status is printed)."""
    from tessera.cli.platform_cmd import certificate_line, certificates_of
    from tessera.errors import TesseraError

    certs = sorted(root.glob("*/*.json"), key=lambda p: p.stat().st_mtime)
    if not certs:
        raise TesseraError("no conformance run yet: run `tessera conformance run --platform P` first")
    newest = certs[-1]
    entry = next(c for c in certificates_of(newest.parent.name) if c["path"] == str(newest))
    console.print(certificate_line(entry), highlight=False)
    if entry["status"] == "corrupt" or entry["report"] is None:
        raise TesseraError(f"the newest certificate, {newest}, cannot be shown: {entry['reason']}")
    return Path(entry["report"])


@app.command("verify")
def verify(
    path: Path = typer.Argument(..., help="A certificate.json, or a folder holding one."),
) -> None:
    """Check a certificate against its report and what is installed here; exit 1 unless it is verified."""
    from tessera.cli.platform_cmd import certificate_entry, certificate_what
    from tessera.conformance.certificate import check_certificate

    with user_errors():
        checked = check_certificate(_certificate_file(path))
    entry = certificate_entry(checked)
    console.print(f"{escape(checked.path)}: {checked.status}", highlight=False)
    console.print(f"reason: {escape(checked.reason)}", highlight=False)
    if checked.certificate is not None:
        untested = entry["untested_ops"]
        console.print(f"recorded: {escape(entry['verdict'])} {certificate_what(entry)}", highlight=False)
        if untested:
            from tessera.conformance.report import untested_text

            console.print(f"untested: {escape(untested_text(untested))}", highlight=False)
        for what, why in entry["excused"].items():  # expected failures: not certified where they fail
            console.print(f"excused: {escape(what)} ({escape(why)})", highlight=False)
    if checked.status != "verified":
        raise typer.Exit(1)


def _certificate_file(path: Path) -> Path:
    """``path`` itself, or the one certificate in the folder ``path`` (``certificate.json`` first)."""
    from tessera.errors import TesseraError

    if path.is_file():
        return path
    if not path.is_dir():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise TesseraError(f"{path} {what}: give a certificate.json or the folder holding one")
    if (path / "certificate.json").is_file():
        return path / "certificate.json"
    found = sorted(p for p in path.glob("*.json") if p.name != "report.json")
    if len(found) != 1:
        what = (
            "no certificate"
            if not found
            else f"{len(found)} certificates ({', '.join(p.name for p in found)})"
        )
        raise TesseraError(f"{path} holds {what}: give the certificate file itself")
    return found[0]
