"""The conformance report: a versioned pydantic schema, written as JSON and as a Markdown page."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
SUITE_VERSION = "0.2.1"  # 0.2: shape spaces, zoo, adversarial cases and postconditions; .1: empty query rows

Status = Literal["pass", "fail", "xfail", "xpass", "error", "skip"]


class CaseResult(BaseModel):
    level: Literal["platform", "op", "pair", "layer", "model", "perf"]
    case_id: str  # op/kernel/dtype/case
    op: str = ""
    kernel: str = ""
    provider: str = ""
    dtype: str = ""
    case: str = ""
    status: Status
    max_abs: float | None = None
    max_rel: float | None = None
    normalized: float | None = None
    budget: float | None = None
    message: str = ""
    seconds: float = 0.0
    extra: dict[str, float | str] = Field(default_factory=dict)

    @property
    def budget_share(self) -> float | None:
        if self.normalized is None or not self.budget:
            return None
        return self.normalized / self.budget


class DeviceSummary(BaseModel):
    name: str
    canonical_name: str
    arch: str
    driver: str | None = None
    runtime: str | None = None


class ConformanceReport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    suite_version: str = SUITE_VERSION
    platform: str
    device_index: int = 0
    device: DeviceSummary
    plugins: dict[str, str]  # distribution -> version (platform plugins and kernel packs)
    torch: str
    mode: Literal["quick", "full"]
    scope: str = "complete"  # or the --ops / --kernels / --dtypes filter of a partial run
    seed: int
    started: str
    duration_s: float
    #: op -> origin (fixed, generated, zoo, adversarial) -> number of cases (generated: drawn from the shape space)
    drawn: dict[str, dict[str, int]] = Field(default_factory=dict)
    sanitized: bool = False  # op cases ran under the platform's memory checker (--sanitize)
    limits: dict[str, float] = Field(default_factory=dict)  # measured copy GB/s, matmul TFLOP/s (--perf)
    #: the ranks the collective ops ran on (None: no collective case ran)
    world_size: int | None = None
    #: op -> why none of its cases ran (every one skipped): the run certifies nothing about it
    untested_ops: dict[str, str] = Field(default_factory=dict)
    results: list[CaseResult]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("pass", "fail", "xfail", "xpass", "error", "skip")}
        for r in self.results:
            out[r.status] += 1
        return out

    @property
    def passed(self) -> bool:
        c = self.counts()
        return c["fail"] == 0 and c["error"] == 0


def untested_ops(results: list[CaseResult]) -> dict[str, str]:
    """Op -> the reasons (distinct, joined) its cases were skipped, for each op none of whose op-level
    cases ran; an op with one case that ran (passed, failed or errored) is tested."""
    skipped: dict[str, list[str]] = {}
    ran: set[str] = set()
    for r in results:
        if r.level != "op" or not r.op:
            continue
        if r.status == "skip":
            skipped.setdefault(r.op, []).append(r.message or "skipped")
        else:
            ran.add(r.op)
    return {op: "; ".join(dict.fromkeys(why)) for op, why in sorted(skipped.items()) if op not in ran}


def excused_kernels(results: list[CaseResult]) -> dict[str, str]:
    """``op/kernel`` (or, for a layer, model or platform case, its case id) -> why, for each case its plugin
    declared an expected failure: a kernel that fails somewhere is not safe to select there, so a certificate
    never counts it as conformant."""
    excused: dict[str, list[str]] = {}
    for r in results:
        if r.status == "xfail":
            # an op case names one kernel; a layer, model or platform case is named by itself
            what = f"{r.op}/{r.kernel}" if r.level in ("op", "pair") and r.kernel else r.case_id
            why = r.extra.get("expected") or r.message.removeprefix("expected: ").split("; ", 1)[0]
            excused.setdefault(what, []).append(str(why))
    return {k: "; ".join(dict.fromkeys(why)) for k, why in sorted(excused.items())}


def write_report(report: ConformanceReport, folder: Path) -> tuple[Path, Path, str]:
    """Write report.json and report.md under ``folder``; returns both paths and the JSON's sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    data = report.model_dump_json(indent=2)
    json_path = folder / "report.json"
    json_path.write_text(data)
    md_path = folder / "report.md"
    md_path.write_text(markdown(report))
    return json_path, md_path, hashlib.sha256(data.encode()).hexdigest()


def untested_text(untested_ops: dict[str, str]) -> str:
    """``a, b (why); c (why)``: the untested ops grouped by the reason none of their cases ran."""
    by_reason: dict[str, list[str]] = {}
    for op, why in sorted(untested_ops.items()):
        by_reason.setdefault(why, []).append(op)
    return "; ".join(f"{', '.join(ops)} ({why})" for why, ops in by_reason.items())


def _untested_lines(report: ConformanceReport) -> list[str]:
    if not report.untested_ops:
        return []
    return [f"**Untested (none of their cases ran, so this run certifies nothing about them): "
            f"{untested_text(report.untested_ops)}.**", ""]  # fmt: skip


def markdown(report: ConformanceReport) -> str:
    c = report.counts()
    lines = [
        f"# Tessera conformance: {report.platform} on {report.device.name}",
        "",
        f"Suite {report.suite_version}, mode {report.mode}, scope {report.scope}, seed {report.seed}, torch {report.torch}, "
        f"driver {report.device.driver or '-'}, {report.started}, {report.duration_s:.1f} s.",
        "",
        f"**{c['pass']} passed, {c['fail']} failed, {c['error']} errors, {c['xfail']} expected failures, "
        f"{c['xpass']} unexpectedly passing, {c['skip']} skipped.**",
        "",
        *_untested_lines(report),
        "Error figures are against the float64 reference on the CPU; *share* is the normalized error "
        "over the op's budget for the dtype (1.0 = at the budget).",
        "",
        "| level | op | kernel | dtype | case | status | max abs | max rel | normalized | budget | share | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(report.results, key=lambda r: (r.level, r.op, r.kernel, r.dtype, r.case)):
        share = r.budget_share
        fmt = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731
        lines.append(
            f"| {r.level} | {r.op} | {r.kernel} | {r.dtype} | {r.case} | {r.status} | {fmt(r.max_abs)} | {fmt(r.max_rel)} | "
            f"{fmt(r.normalized)} | {fmt(r.budget)} | {'-' if share is None else f'{share:.2f}'} | {r.message[:120]} |"
        )
    if report.drawn:
        lines += [
            "",
            "Cases per op (fixed, drawn from the shape space, model zoo, adversarial inputs): "
            + "; ".join(
                f"{op} " + ", ".join(f"{k} {v}" for k, v in by.items()) for op, by in report.drawn.items()
            ),
        ]
    if report.world_size:
        lines += ["", f"The collective ops ran on {report.world_size} ranks (one process each)."]
    if report.sanitized:
        lines += [
            "",
            "The op cases ran under the platform's memory checker, one process per op, kernel and dtype "
            "(KV pairs and collectives ran without it).",
        ]
    if report.limits:
        lines += ["", "Measured limits: " + ", ".join(f"{k} {v:.1f}" for k, v in report.limits.items())]
    return "\n".join(lines) + "\n"
