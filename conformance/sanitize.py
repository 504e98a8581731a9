"""--sanitize: op cases run in processes of their own under the platform's memory checker.

The checker is the command prefix ``Platform.memory_checker()`` gives (compute-sanitizer's
memcheck on cuda). One process replays a group of cases (one op, kernel and dtype) by id and seed
(:mod:`tessera.conformance.sanitize_case`), synchronizing after each, so the checker's findings fall
between the start markers of the case that caused them and the next. A finding fails its case with
the checker's message, whatever the numbers said. A process that dies during a case fails that case
with its last words, and the group's remaining cases go on in a new process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from tessera.conformance.report import CaseResult
from tessera.conformance.sanitize_case import RESULT_MARKER, START_MARKER
from tessera.errors import TesseraError

#: per process: a checker slows kernels down a lot
TIMEOUT_S = 900
FINDING = re.compile(r"(=+ (ERROR|Invalid|Program hit|Out-of-range|Address|Malloc|Cuda API error).*)")


def checker_command(platform) -> list[str]:
    checker = platform.memory_checker()
    if not checker.command:
        raise TesseraError(
            f"--sanitize needs a memory checker, and platform {platform.name!r} offers none here: {checker.reason}. "
            "Run without --sanitize, or on a platform that offers one (cuda: compute-sanitizer)"
        )
    return list(checker.command)


def child_env() -> dict[str, str]:
    """The environment of this process, with its import path (so the child finds the same plugins)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


@dataclass
class _Segment:
    """What one case printed between its start marker and the next: its result and any findings."""

    case_id: str
    result: CaseResult | None = None
    findings: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)


def _segments(output: str) -> tuple[list[_Segment], list[str]]:
    """The output cut at the start markers; findings before the first marker come back apart."""
    segments: list[_Segment] = []
    before: list[str] = []
    for line in output.splitlines():
        if line.startswith(START_MARKER):
            segments.append(_Segment(line[len(START_MARKER) :].strip()))
        elif line.startswith(RESULT_MARKER) and segments:
            segments[-1].result = CaseResult.model_validate(json.loads(line[len(RESULT_MARKER) :]))
        else:
            finding = FINDING.search(line)
            if finding and "ERROR SUMMARY" not in line:  # the exit-time summary counts findings, it is none
                (segments[-1].findings if segments else before).append(finding.group(1).strip())
            if segments and line.strip():
                segments[-1].tail = (segments[-1].tail + [line.strip()])[-3:]
    return segments, before


def _judged(seg: _Segment, returncode: int | str, base: dict) -> CaseResult:
    if not seg.findings and seg.result is not None:
        seg.result.extra["sanitized"] = "clean"
        return seg.result
    detail = "; ".join(seg.findings[:3]) or (seg.tail[-1][:300] if seg.tail else "no output")
    message = f"sanitizer (exit {returncode}): {detail}"
    if seg.result is None:
        return CaseResult(status="fail", message=message + " (the process ended during this case)", **base)
    note = f"; {seg.result.message}" if seg.result.message else ""
    return seg.result.model_copy(update={"status": "fail", "message": message + note})


def run_sanitized_group(prefix: list[str], platform_name: str, device: int, bases: list[dict], seed: int,
                        full: bool) -> list[CaseResult]:  # fmt: skip
    """Results of the cases ``bases`` (the CaseResult fields each case is known by, ``case_id`` among them)."""
    results: dict[str, CaseResult] = {}
    pending = [b["case_id"] for b in bases]
    by_id = {b["case_id"]: b for b in bases}
    while pending:
        ids = [a for c in pending for a in ("--case-id", c)]
        cmd = [*prefix, sys.executable, "-m", "tessera.conformance.sanitize_case", "--platform", platform_name,
               "--device", str(device), "--seed", str(seed), *ids] + (["--full"] if full else [])  # fmt: skip
        try:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S,
                                  env=child_env())  # fmt: skip
            output, returncode = done.stdout, done.returncode
        except (
            subprocess.TimeoutExpired
        ) as exc:  # the finished cases keep their results; the running one fails
            partial = exc.stdout or b""
            output = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            returncode = "timeout"
        segments, before = _segments(output)
        if returncode == "timeout":
            late = f"the process ran past {TIMEOUT_S} s"
            (segments[-1].findings if segments and segments[-1].result is None else before).append(late)
        if not segments:  # the process never reached a case: all of them fail with its words
            words = "; ".join(before[:3]) or (output.strip().splitlines() or ["no output"])[-1][:300]
            for c in pending:
                results[c] = CaseResult(status="error", message=f"sanitizer (exit {returncode}): {words}",
                                        **by_id[c])  # fmt: skip
            break
        if (
            returncode not in (0, "timeout")
            and segments[-1].result is not None
            and not any(s.findings for s in segments)
        ):
            segments[-1].findings.append(f"the process exited {returncode} after this case, with no finding")
        for seg in segments:
            results[seg.case_id] = _judged(seg, returncode, by_id[seg.case_id])
        pending = [c for c in pending if c not in results]
    return [results[b["case_id"]] for b in bases]
