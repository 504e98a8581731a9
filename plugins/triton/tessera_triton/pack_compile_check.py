"""The pack's compile check: the conformance suite's Triton launches, compiled for sm_90 and gfx942.

``python -m tessera_triton.pack_compile_check [--dtypes float16,bfloat16] [--origins fixed] [--every]``
runs the suite's op cases of every ``triton_*`` kernel on the cpu platform under the interpreter,
records each launch (:class:`tessera_triton.compile_check.LaunchRecorder`), adds the launches the
suite's default configs never make (ssd_chunk_scan's segment combine and fix-up passes), and compiles
the distinct specializations (a covering subset unless ``--every``) for each target; it prints one
line per specialization and exits 1 if any failed. See :mod:`tessera_triton.compile_check` for what
a pass proves and what it does not.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import pkgutil
import sys
from collections.abc import Iterator, Sequence

from tessera_triton.compile_check import (
    TARGETS,
    CompileResult,
    LaunchRecorder,
    Specialization,
    compile_specializations,
)
from tessera_triton.compile_cover import covering

DTYPES = ("float16", "bfloat16")


@contextlib.contextmanager
def _cpu_triton() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("TESSERA_CPU_TRITON", "TRITON_INTERPRET")}
    os.environ.update(TESSERA_CPU_TRITON="1", TRITON_INTERPRET="1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fast_fp32_as_on_a_gpu() -> list[tuple[object, object]]:
    """The interpreter's ``fast_fp32_dot_precision`` is ieee; a GPU's is tf32 where it has it. Launches are
    recorded with tf32 (the interpreter takes it) and ``_as_on_target`` turns it back into ieee for a target
    without it, as the function would answer there."""
    import tessera_triton.kernels as kernels

    patched = []
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        if hasattr(module, "fast_fp32_dot_precision"):
            patched.append((module, module.fast_fp32_dot_precision))
            module.fast_fp32_dot_precision = lambda: "tf32"
    return patched


def _as_on_target(spec: Specialization) -> Specialization:
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend

    options = make_backend(GPUTarget(*TARGETS[spec.target])).parse_options({})
    if "tf32" in options.allowed_dot_input_precisions:
        return spec
    constexprs = tuple((k, "ieee" if v == "tf32" else v) for k, v in spec.constexprs)
    return dataclasses.replace(spec, constexprs=constexprs)


def _segmented_scan(dtype: str) -> None:
    """ssd_chunk_scan with 16-token segments: the combine and fix-up launches long sequences make."""
    import torch

    from tessera_triton.kernels import ssd_chunk_scan as ssd

    torch.manual_seed(0)
    lengths, heads, head_dim, state, groups, dt = [1, 32, 50], 4, 8, 16, 2, getattr(torch, dtype)
    rows = sum(lengths)
    x, B, C = (
        torch.randn(rows, *shape, dtype=dt) for shape in ((heads, head_dim), (groups, state), (groups, state))
    )
    qsl = torch.tensor([0, 1, 33, 83], dtype=torch.int32)
    states = torch.randn(len(lengths), heads, head_dim, state)
    config = {"BLOCK_L": 16, "BLOCK_P": 16, "SEGMENT": 16, "num_warps": 4, "num_stages": 1}
    ssd.ssd_chunk_scan(x, torch.randn(rows, heads).to(dt), -torch.rand(heads) - 0.1, B, C, torch.randn(heads),
                       torch.randn(heads), True, qsl, states, torch.arange(3, dtype=torch.int32),
                       torch.tensor([True, False, True]), 16, config=config)  # fmt: skip


def record_pack(
    dtypes: Sequence[str] = DTYPES, origins: Sequence[str] = ("fixed",), seed: int = 11
) -> list[Specialization]:
    """Every specialization the pack's conformance op cases (and the extra launches) make, per target.

    Must run in a process whose Triton kernels were defined under ``TRITON_INTERPRET=1``."""
    from triton.runtime.interpreter import InterpretedFunction

    from tessera.conformance.runner import RunOptions, run
    from tessera_triton.kernels import rms_norm

    if not isinstance(rms_norm._rms_norm_kernel, InterpretedFunction):
        raise RuntimeError(
            "the pack's kernels were imported without TRITON_INTERPRET=1: set it before importing them"
        )
    recorder = LaunchRecorder()
    options = RunOptions(platform="cpu", kernels=["triton_*"], dtypes=list(dtypes), seed=seed,
                         origins=list(origins), levels=("op",))  # fmt: skip
    patched = _fast_fp32_as_on_a_gpu()
    try:
        with _cpu_triton(), recorder.recording():
            run(options)
            for dtype in dtypes:
                _segmented_scan(dtype)
    finally:
        for module, value in patched:
            module.fast_fp32_dot_precision = value
    if recorder.errors:
        raise RuntimeError("launches that could not be recorded:\n" + "\n".join(recorder.errors))
    return list(dict.fromkeys(_as_on_target(spec) for spec in recorder.specializations))


def check_pack(dtypes: Sequence[str] = DTYPES, origins: Sequence[str] = ("fixed",), every: bool = False,
               jobs: int = 2) -> list[CompileResult]:  # fmt: skip
    specs = record_pack(dtypes, origins)
    return compile_specializations(specs if every else covering(specs), jobs=jobs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tessera_triton.pack_compile_check", description=__doc__)
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument(
        "--origins", default="fixed", help="conformance case origins: fixed,generated,adversarial"
    )
    parser.add_argument(
        "--every", action="store_true", help="every distinct specialization, not a covering subset"
    )
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    results = check_pack(args.dtypes.split(","), args.origins.split(","), args.every, args.jobs)
    for result in results:
        print(result.line())
    for target in TARGETS:
        mine = [r for r in results if r.spec.target == target]
        kernels = {r.spec.qualname for r in mine}
        failed = sorted({r.spec.qualname for r in mine if not r.ok})
        stages = sorted({r.stage for r in mine if r.ok})
        spilling = sorted({r.spec.qualname for r in mine if r.spills})
        read = "registers read" if any(r.registers is not None for r in mine) else "registers not read"
        print(f"{target}: {len(mine)} specializations of {len(kernels)} kernels, reached {', '.join(stages)}; "
              f"failed: {', '.join(failed) or 'none'}; {read}, spilling: {', '.join(spilling) or 'none'}")  # fmt: skip
    return 1 if any(not r.ok for r in results) else 0


if __name__ == "__main__":
    os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are imported (run() imports them)
    sys.exit(main())
