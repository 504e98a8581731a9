"""Replay op cases in this process, printing a start marker before and a JSON result after each.

    python -m tessera.conformance.sanitize_case --platform P --device I --seed S [--full]
        --case-id OP/KERNEL/DTYPE/CASE [--case-id ...]

``tessera conformance run --sanitize`` starts this under the platform's memory checker, one process
per group of cases (one op, kernel and dtype): the device is synchronized after each case, so a
checker's finding is printed between that case's start marker and the next one, which pins it to
the case that caused it. ``--seed`` is the run's seed: the cases (generated ones included) and their
inputs are drawn exactly as in the run.
"""

from __future__ import annotations

import argparse
import sys

START_MARKER = "TESSERA-CASE-START "
RESULT_MARKER = "TESSERA-CASE-RESULT "


def replayer(platform_name: str, device: int, seed: int, full: bool):
    """A function that runs one case by id on the named platform, and that platform."""
    from tessera.conformance.cases import find_case
    from tessera.conformance.ops import run_op_case
    from tessera.conformance.runner import case_seed
    from tessera.discovery import get_discovery, select_platform
    from tessera.kernel_registry import get_registry, platform_facts

    discovery = get_discovery()
    platform = select_platform(platform_name, discovery)
    platform.set_device(device)
    registry = get_registry(discovery)
    facts, torch_device = platform_facts(platform, device), platform.torch_device(device)

    def replay(case_id: str):
        op, kernel_name, dtype, name = case_id.split("/", 3)
        kernel = next((k for k in registry.kernels(op) if k.name == kernel_name), None)
        if kernel is None:
            raise SystemExit(f"no kernel {kernel_name!r} registered for {op}")
        case = find_case(f"{op}/{name}", full, seed)
        return run_op_case(
            registry, facts, kernel, case, dtype, torch_device, case_seed(seed, case), platform=platform
        )

    return replay, platform


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tessera.conformance.sanitize_case")
    parser.add_argument("--platform", required=True)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--case-id", required=True, action="append")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    replay, platform = replayer(args.platform, args.device, args.seed, args.full)
    for case_id in args.case_id:
        sys.stdout.write(START_MARKER + case_id + "\n")
        sys.stdout.flush()
        result = replay(case_id)
        platform.synchronize()  # the checker reports this case's faults before the next marker
        sys.stdout.write(RESULT_MARKER + result.model_dump_json() + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
