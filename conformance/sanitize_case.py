"""Replay one op case in this process and print its result as JSON (the last line of stdout).

    python -m tessera.conformance.sanitize_case --platform P --device I --case-id OP/KERNEL/DTYPE/CASE
        --seed S [--full]

``tessera conformance run --sanitize`` starts this under the platform's memory checker, one
process per case, so that a finding is pinned to the case that caused it. ``--seed`` is the run's
seed: the case (generated ones included) and its inputs are drawn exactly as in the run.
"""

from __future__ import annotations

import argparse
import sys

RESULT_MARKER = "TESSERA-CASE-RESULT "


def replay(platform_name: str, device: int, case_id: str, seed: int, full: bool):
    from tessera.conformance.cases import find_case
    from tessera.conformance.ops import run_op_case
    from tessera.conformance.runner import case_seed
    from tessera.discovery import get_discovery, select_platform
    from tessera.kernel_registry import get_registry, platform_facts

    op, kernel_name, dtype, name = case_id.split("/", 3)
    discovery = get_discovery()
    platform = select_platform(platform_name, discovery)
    platform.set_device(device)
    registry = get_registry(discovery)
    kernel = next((k for k in registry.kernels(op) if k.name == kernel_name), None)
    if kernel is None:
        raise SystemExit(f"no kernel {kernel_name!r} registered for {op}")
    case = find_case(f"{op}/{name}", full, seed)
    return run_op_case(registry, platform_facts(platform, device), kernel, case, dtype, platform.torch_device(device),
                       case_seed(seed, case), platform=platform)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tessera.conformance.sanitize_case")
    parser.add_argument("--platform", required=True)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--case-id", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    result = replay(args.platform, args.device, args.case_id, args.seed, args.full)
    sys.stdout.write(RESULT_MARKER + result.model_dump_json() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
