"""Compile, for a GPU target, every kernel specialization a run under the Triton interpreter launched.

The pack's kernels are tested on the CPU under ``TRITON_INTERPRET=1``, which runs code that the compiler
rejects (a loop-carried value that changes type, an op or layout a backend lacks, a constexpr misused).
This check closes that gap without a GPU: ``LaunchRecorder`` watches the interpreter's launches and
binds each one's arguments the way ``JITFunction.run`` would for the target (pointer element types,
ints equal to 1 folded to constants, divisibility-by-16 and, on AMD, buffer-range attributes, the
constexpr values, the launch options that backend takes), and ``compile_specializations`` hands the
distinct specializations to a process without the interpreter that runs ``triton.compile`` on them
for the target (sm_90: through ptxas to a cubin; gfx942: as far as the installed triton gets, reported
per specialization as the last stage reached).

What it proves: the kernel source, at those constexprs and argument types, passes the target's
frontend and backend (ttir, ttgir, llir, ptx/amdgcn, the binary), and that the shared memory the binary
asks for fits the target's per-block limit (a launch on the card refuses more: ``OutOfResources``).
On sm_90 it also reads the registers and spills ptxas reports (its ``-v`` log, which triton prints on
request; without it, the registers from the cubin through triton's ``cuobjdump``): registers for the
block over the SM's 64K fail (the launch would be refused: "too many resources requested"; triton's
``.reqntid`` makes ptxas spill instead, so this is a guard), and spill stores are reported with their
bytes (a stack frame alone, a call or a local array, is no spill). What it does not prove: that the kernel computes the right thing on the device, its
registers and spills on gfx942 (not read there), that it performs, nor anything about specializations
the interpreter run did not launch (other tuned configs, other shapes' divisibility).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator

from tessera_triton.common import LAUNCH_KEYS
from tessera_triton.compile_observe import (
    REGISTER_FILE,
    block_registers,
    ptxas_log,
    resource_usage,
    stage_tracker,
)

#: target name -> (backend, arch, warp size), as triton.backends.compiler.GPUTarget takes them
TARGETS: dict[str, tuple[str, int | str, int]] = {"sm_90": ("cuda", 90, 32), "gfx942": ("hip", "gfx942", 64)}
#: what the last stage of each backend is (the binary)
FINAL_STAGE = {"cuda": "cubin", "hip": "hsaco"}
#: target name -> the most shared memory (LDS on AMD) one block may use, in bytes: sm_90's opt-in
#: maximum (227 KiB) and gfx942's 64 KiB
SHARED_LIMIT = {"sm_90": 232448, "gfx942": 65536}


@dataclasses.dataclass(frozen=True)
class Specialization:
    """One kernel compilation, as the target's launcher would ask for it."""

    module: str  # the kernel's module and qualified name, and its file for a module that is not importable
    qualname: str
    file: str
    target: str
    signature: tuple[tuple[str, str], ...]  # argument name -> triton type ("*bf16", "i32", "constexpr")
    constexprs: tuple[tuple[tuple[int, ...], object], ...]
    attrs: tuple[tuple[tuple[int, ...], tuple], ...]
    options: tuple[tuple[str, object], ...]  # launch options (num_warps, num_stages, ...)

    @property
    def kernel(self) -> str:
        return f"{self.module}.{self.qualname}"

    def describe(self) -> str:
        names = [name for name, _ in self.signature]
        consts = {names[path[0]]: value for path, value in self.constexprs if len(path) == 1}
        args = ", ".join(
            f"{name}={consts[name]!r}" if kind == "constexpr" else f"{name}: {kind}"
            for name, kind in self.signature
        )
        divisible = [names[path[0]] for path, attr in self.attrs if ("tt.divisibility", 16) in attr]
        opts = "".join(f"; {k}={v}" for k, v in self.options)
        return (
            f"{self.qualname}[{self.target}{opts}]({args}; divisible by 16: {', '.join(divisible) or 'none'})"
        )


@dataclasses.dataclass
class CompileResult:
    spec: Specialization
    ok: bool
    stage: str  # the last stage reached (the one that failed, when not ok; "launch" when it does not fit)
    message: str = ""
    shared: int | None = None  # bytes of shared memory the binary asks for, once compiled
    registers: int | None = None  # registers a thread (sm_90 cubins; None where not read)
    stack: int | None = None  # bytes of spill stores a thread, from ptxas -v (sm_90; None where not read)

    @property
    def spills(self) -> bool:
        return bool(self.stack)

    def line(self) -> str:
        state = "compiled" if self.ok else f"FAILED at {self.stage}"
        if self.shared is not None:
            state += f" ({self.shared} B shared"
            state += f", {self.registers} registers" if self.registers is not None else ""
            state += f", SPILLS {self.stack} B a thread" if self.spills else ""
            state += ")"
        tail = f"\n{self.message}" if self.message else ""
        return f"{self.spec.kernel} {state}: {self.spec.describe()}{tail}"


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


class LaunchRecorder:
    """Records the specializations of the interpreter's launches, for each target, deduplicated."""

    def __init__(self, targets: Iterable[str] = tuple(TARGETS)):
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import make_backend

        self.backends = {name: make_backend(GPUTarget(*TARGETS[name])) for name in targets}
        self.specializations: dict[Specialization, None] = {}  # insertion-ordered set
        self._binders: dict[tuple[int, str], tuple] = {}
        self.errors: list[str] = []  # launches whose arguments could not be bound for a target

    @contextlib.contextmanager
    def recording(self, execute: bool = True) -> Iterator[LaunchRecorder]:
        """Record the interpreter's launches while in the block; ``execute=False`` records without running
        them (the outputs stay as they were: for launches whose specializations alone are wanted)."""
        from triton.runtime.interpreter import InterpretedFunction

        original = InterpretedFunction.run
        recorder = self

        def run(fn_self, *args, grid, warmup, **kwargs):
            recorder.record(fn_self, args, kwargs)
            if execute:
                return original(fn_self, *args, grid=grid, warmup=warmup, **kwargs)
            return None

        InterpretedFunction.run = run
        try:
            yield self
        finally:
            InterpretedFunction.run = original

    def _binder(self, interpreted, target: str):
        from triton.runtime.jit import JITFunction, create_function_from_signature

        key = (id(interpreted.fn), target)
        if key not in self._binders:
            jit = JITFunction(interpreted.fn, **interpreted.kwargs)
            backend = self.backends[target]
            known = set(backend.parse_options({}).__dict__) | set(jit.arg_names)
            self._binders[key] = (
                jit,
                create_function_from_signature(jit.signature, jit.params, backend),
                known,
            )
        return self._binders[key]

    def record(self, interpreted, args: tuple, kwargs: dict) -> None:
        try:
            self._record(interpreted, args, kwargs)
        except Exception as e:  # noqa: BLE001 - kept, so the launch itself still runs and the failure is seen
            self.errors.append(
                f"{interpreted.fn.__module__}.{interpreted.fn.__qualname__}: {type(e).__name__}: {e}"
            )

    def _record(self, interpreted, args: tuple, kwargs: dict) -> None:
        fn = interpreted.fn
        for target, backend in self.backends.items():
            jit, binder, known = self._binder(interpreted, target)
            # a keyword that is neither a parameter nor a launch option of any backend: a compiled launch
            # refuses it (a config key meant for another kernel of the op, say)
            unknown = sorted(k for k in kwargs if k not in known and k not in LAUNCH_KEYS)
            if unknown:
                raise KeyError(f"Keyword argument {unknown[0]} was specified but unrecognised")
            # what launch_options passes on that backend
            given = {k: v for k, v in kwargs.items() if k in known}
            bound, specialization, _ = binder(*args, **given)
            options, signature, constexprs, attrs = jit._pack_args(backend, given, bound, specialization, {})
            launch = {k: v for k, v in given.items() if k not in jit.arg_names}
            spec = Specialization(
                fn.__module__, fn.__qualname__, fn.__code__.co_filename, target, tuple(signature.items()),
                _freeze(constexprs), _freeze(attrs), tuple(sorted(launch.items())),
            )  # fmt: skip
            self.specializations.setdefault(spec, None)


def _resolve(spec: Specialization):
    from triton.runtime.jit import JITFunction

    try:
        obj = importlib.import_module(spec.module)
        for part in spec.qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        loader = importlib.util.spec_from_file_location(f"_compile_check_{abs(hash(spec.file))}", spec.file)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        obj = module
        for part in spec.qualname.split("."):
            obj = getattr(obj, part)
    if not isinstance(obj, JITFunction):
        raise TypeError(f"{spec.kernel} is a {type(obj).__name__}, not a triton.jit function")
    return obj


def compile_one(spec: Specialization) -> CompileResult:
    """Compile one specialization in this process (which must not be running the interpreter)."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget

    backend, arch, warp = TARGETS[spec.target]
    reached = ["frontend"]  # the AST to ttir, before the first stage
    knobs.runtime.add_stages_inspection_hook = stage_tracker(reached)
    try:
        fn = _resolve(spec)
        target = GPUTarget(backend, arch, warp)
        src = triton.compiler.ASTSource(fn=fn, signature=dict(spec.signature), constexprs=dict(spec.constexprs),
                                        attrs={k: [list(a) for a in v] for k, v in spec.attrs})  # fmt: skip
        log = io.StringIO()
        with ptxas_log(backend), contextlib.redirect_stdout(log):  # ptxas -v: registers and spills
            compiled = triton.compile(src, target=target, options=dict(spec.options))
    except Exception as e:  # noqa: BLE001 - every compiler failure is the result being reported
        return CompileResult(spec, False, reached[-1], f"{type(e).__name__}: {str(e).strip()[-3000:]}")
    finally:
        knobs.runtime.add_stages_inspection_hook = None
    shared, limit = int(compiled.metadata.shared), SHARED_LIMIT[spec.target]
    registers, stack = (
        resource_usage(log.getvalue(), compiled.asm["cubin"]) if backend == "cuda" else (None, None)
    )
    if shared > limit:
        message = (f"needs {shared} bytes of shared memory a block, over {spec.target}'s {limit}: the launch "
                   "would fail with OutOfResources; use smaller tiles or fewer stages")  # fmt: skip
        return CompileResult(spec, False, "launch", message, shared, registers, stack)
    warps = int(compiled.metadata.num_warps)  # a block's (each block of a cluster has its own SM)
    if registers is not None and block_registers(registers, warps) > REGISTER_FILE:
        message = (f"needs {registers} registers a thread, {block_registers(registers, warps)} for its {warps} "
                   f"warps, over the SM's {REGISTER_FILE}: the launch would be refused (too many resources "
                   "requested); use fewer warps or smaller tiles")  # fmt: skip
        return CompileResult(spec, False, "launch", message, shared, registers, stack)
    return CompileResult(spec, True, reached[-1], shared=shared, registers=registers, stack=stack)


def _worker(path: str) -> None:
    """``python -m tessera_triton.compile_check PATH``: compiles the specializations pickled in PATH and
    pickles the results there."""
    with open(path, "rb") as f:
        specs = pickle.load(f)
    results = [compile_one(spec) for spec in specs]
    with open(path, "wb") as f:
        pickle.dump(results, f)


def compile_specializations(
    specs: Iterable[Specialization], jobs: int = 2, timeout: float = 600
) -> list[CompileResult]:
    """Compile each specialization for its target in ``jobs`` processes without the interpreter."""
    specs = list(specs)
    chunks = [specs[i::jobs] for i in range(jobs) if specs[i::jobs]]
    results: list[CompileResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        # compiled now, not found in an earlier run's cache
        env["TRITON_CACHE_DIR"] = os.path.join(tmp, "cache")
        paths = [os.path.join(tmp, f"chunk{i}.pkl") for i in range(len(chunks))]
        procs = []
        for path, chunk in zip(paths, chunks, strict=True):
            with open(path, "wb") as f:
                pickle.dump(chunk, f)
            cmd = [sys.executable, "-m", "tessera_triton.compile_check", path]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env))
        for proc, path in zip(procs, paths, strict=True):
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"the compile worker exited with {proc.returncode}:\n{out.decode()[-3000:]}"
                )
            with open(path, "rb") as f:
                results += pickle.load(f)
    order = {spec: i for i, spec in enumerate(specs)}
    return sorted(results, key=lambda r: order[r.spec])


if __name__ == "__main__":  # the classes pickled are the importable module's, not __main__'s
    from tessera_triton.compile_check import _worker as worker

    worker(sys.argv[1])
