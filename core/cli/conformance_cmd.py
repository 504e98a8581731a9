"""``tessera conformance run`` and ``tessera conformance show``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import typer
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
                             perf=perf, seed=seed, dtypes=_split(dtypes))  # fmt: skip
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("conformance", total=None)

            def progress(label: str, i: int, n: int) -> None:
                bar.update(task, description=label, completed=i, total=n)

            report = run_suite(options, progress)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = (
            out or data_dir() / "conformance" / f"{report.platform}-{report.device.canonical_name}-{stamp}"
        )
        json_path, md_path, sha = write_report(report, folder)
        cert_path = store(make_certificate(report, json_path, sha), folder)
    summarize(report)
    console.print(f"report: {json_path}\npage: {md_path}\ncertificate: {cert_path}")
    if not report.passed:
        raise typer.Exit(1)


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
    from tessera.conformance.certificate import certificate_root
    from tessera.conformance.report import ConformanceReport

    with user_errors():
        if report is None:
            certs = sorted(certificate_root().glob("*/*.json"), key=lambda p: p.stat().st_mtime)
            if not certs:
                from tessera.errors import TesseraError

                raise TesseraError("no conformance run yet: run `tessera conformance run --platform P` first")
            import json

            report = Path(json.loads(certs[-1].read_text())["report_path"])
        data = ConformanceReport.model_validate_json(report.read_text())
    summarize(data)
