"""The shipped tuned configs, compiled for their target: what the conformance suite's launches never try.

The suite launches each kernel with its default config; a device's tuned file (``configs/<kernel>/<device>.json``
of the cuda and rocm plugins) selects others on the card: other tiles, warps and stages, and so other
constexprs. ``python -m tessera_triton.tuned_compile_check`` launches each tuned entry at its key's shape
(the kernel's ``tune_inputs``) with the launch recorded and not run, then compiles the specializations for
the file's target (sm_90 for the H100, H200 and sm_90 files; gfx942 for MI300X, MI325X and gfx942). Files
for other devices (sm_100, gfx950, XPU) have no target here and are listed as not compiled. A pass proves
what :mod:`tessera_triton.compile_check` proves, for the configs a card will actually use.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from tessera_triton.compile_check import (
    CompileResult,
    LaunchRecorder,
    Specialization,
    compile_specializations,
)

#: the device a tuned file is named after -> the compile target that stands for it here
TARGET_OF = {"NVIDIA_H100": "sm_90", "NVIDIA_H200": "sm_90", "sm_90": "sm_90",
             "AMD_MI300X": "gfx942", "AMD_MI325X": "gfx942", "gfx942": "gfx942"}  # fmt: skip
PLUGINS = ("tessera_cuda", "tessera_rocm", "tessera_xpu")


def kernels() -> dict[str, tuple]:
    """Kernel name -> (launcher, config space, tune-inputs function), from the pack's own registration."""
    from tessera.pluggable_layers.registry import KernelRegistry
    from tessera_triton.register import register_all

    registry = KernelRegistry()
    register_all(registry)
    return {k.name: (k.fn, k.config_space, k.tune_inputs) for k in registry.kernels() if k.config_space}


def tuned_files() -> list[Path]:
    """The tuned-config files of the installed platform plugins."""
    files = []
    for name in PLUGINS:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "configs"
            files += sorted(folder.glob("*/*.json"))
    return files


def record_tuned(files: Sequence[Path]) -> tuple[list[Specialization], list[str], list[str]]:
    """(specializations, problems, files with no target here) of every entry of ``files``.

    Must run in a process whose Triton kernels were defined under ``TRITON_INTERPRET=1``."""
    from tessera.pluggable_layers.checks import trusted_indices
    from tessera.pluggable_layers.tuning import load_config_file, parse_key

    known, specs, problems, skipped = kernels(), {}, [], []
    for path in files:
        kernel, target = path.parent.name, TARGET_OF.get(path.stem)
        if target is None:
            skipped.append(str(path))
            continue
        if kernel not in known:
            problems.append(f"{path}: no kernel {kernel!r} in the pack")
            continue
        fn, space, tune_inputs = known[kernel]
        try:
            data = load_config_file(path, kernel, space)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        recorder = LaunchRecorder(targets=(target,))
        for key, config in data.configs.items():
            shape = parse_key(key)
            dtype = getattr(torch, str(shape.get("dtype", "bfloat16")))
            args, kwargs = tune_inputs(shape, dtype, torch.device("cpu"))
            try:
                with recorder.recording(execute=False), trusted_indices():
                    fn(*args, config={**space.default, **config}, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported with the entry
                problems.append(f"{path}: configs.{key}: the launch failed: {type(exc).__name__}: {exc}")
        problems += [f"{path}: {e}" for e in recorder.errors]
        specs.update(dict.fromkeys(recorder.specializations))
    return list(specs), problems, skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tessera_triton.tuned_compile_check", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="tuned files (default: the installed plugins')")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    specs, problems, skipped = record_tuned(args.files or tuned_files())
    results: list[CompileResult] = compile_specializations(specs, jobs=args.jobs) if specs else []
    for result in results:
        print(result.line())
    for problem in problems:
        print(f"PROBLEM {problem}")
    failed = [r for r in results if not r.ok]
    print(f"{len(results)} specializations of tuned configs compiled, {len(failed)} failed, "
          f"{len(problems)} problems; {len(skipped)} files with no compile target here")  # fmt: skip
    return 1 if failed or problems else 0


if __name__ == "__main__":
    os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are imported
    sys.exit(main())
