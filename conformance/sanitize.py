"""--sanitize: each op case in a process of its own under the platform's memory checker.

The checker is the command prefix ``Platform.memory_checker()`` gives (compute-sanitizer's
memcheck on cuda); the process replays the case by id and seed
(:mod:`tessera.conformance.sanitize_case`) and prints its result. A non-zero exit or the
checker's error text fails the case with the checker's message, whatever the numbers said.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tessera.conformance.report import CaseResult
from tessera.conformance.sanitize_case import RESULT_MARKER
from tessera.errors import TesseraError

#: per case: a checker slows kernels down a lot
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


def run_sanitized(prefix: list[str], platform_name: str, device: int, case_id: str, seed: int, full: bool,
                  base: dict) -> CaseResult:  # fmt: skip
    cmd = [*prefix, sys.executable, "-m", "tessera.conformance.sanitize_case", "--platform", platform_name,
           "--device", str(device), "--case-id", case_id, "--seed", str(seed)] + (["--full"] if full else [])  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=child_env())
    except subprocess.TimeoutExpired:
        return CaseResult(status="error", message=f"sanitizer: the case ran past {TIMEOUT_S} s", **base)
    output = done.stdout + done.stderr
    result = None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            result = CaseResult.model_validate(json.loads(line[len(RESULT_MARKER) :]))
    findings = [m.group(1).strip() for m in FINDING.finditer(output)]
    findings = [f for f in findings if not re.search(r"ERROR SUMMARY: 0 errors", f)]
    if done.returncode != 0 or findings:
        detail = (
            "; ".join(findings[:3])
            or output.strip().splitlines()[-1:]
            and output.strip().splitlines()[-1][:300]
        )
        message = f"sanitizer (exit {done.returncode}): {detail or 'no output'}"
        if result is not None:
            return result.model_copy(
                update={
                    "status": "fail",
                    "message": message + (f"; {result.message}" if result.message else ""),
                }
            )
        return CaseResult(status="fail", message=message, **base)
    if result is None:
        return CaseResult(status="error", message="sanitizer: the case printed no result", **base)
    result.extra["sanitized"] = "clean"
    return result
