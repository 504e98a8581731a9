"""The pack's kernels compile for sm_90 and gfx942 at every specialization the conformance cases launch
under the interpreter (tessera_triton.compile_check), and the check catches a kernel that the
interpreter runs but the compiler rejects."""

from __future__ import annotations

import pkgutil

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from tessera_triton.compile_check import TARGETS, LaunchRecorder, compile_specializations  # noqa: E402


@triton.jit
def _sum_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr, tl.sum(tl.load(x_ptr + offs, mask=offs < n, other=0.0), axis=0))


@triton.jit
def _carried_type_change_kernel(x_ptr, out_ptr, n):
    # an int32 that the loop makes a float32: the interpreter (numpy) does not mind, the compiler does
    acc = 0
    i = 0
    while i < n:
        acc = acc + tl.load(x_ptr + i)
        i += 1
    tl.store(out_ptr, acc)


@triton.jit
def _dot_kernel(a_ptr, b_ptr, c_ptr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    m, n, k = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for i in range(0, 4):
        x = tl.load(a_ptr + m[:, None] * BK + k[None, :] + i * BM * BK)
        y = tl.load(b_ptr + k[:, None] * BN + n[None, :] + i * BK * BN)
        acc += tl.dot(x, y)
    tl.store(c_ptr + m[:, None] * BN + n[None, :], acc)


@triton.jit
def _spilling_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
    # a whole BLOCK x BLOCK fp32 tile live across two reductions: more than one warp's registers hold
    r = tl.arange(0, BLOCK)
    t = tl.load(x_ptr + r[:, None] * BLOCK + r[None, :])
    a = tl.sum(t * tl.exp(t), axis=1)
    b = tl.sum(t * tl.sin(t), axis=0)
    tl.store(y_ptr + r[:, None] * BLOCK + r[None, :], t * a[:, None] + b[None, :] + tl.cos(t) * t)


def compiled(kernel, *args, **constexprs):
    recorder = LaunchRecorder()
    with recorder.recording():
        kernel[(1,)](*args, **constexprs)
    return {r.spec.target: r for r in compile_specializations(list(recorder.specializations), jobs=1)}


@pytest.fixture(scope="module")
def targets() -> dict[str, str | None]:
    """Per target, None when this triton compiles a correct tiny kernel for it, else why not."""
    x, out = torch.arange(5, dtype=torch.float32), torch.zeros(1)
    results = compiled(_sum_kernel, x, out, 5, BLOCK=8)
    assert float(out) == 10.0
    return {target: None if r.ok else r.line() for target, r in results.items()}


def need(targets, target):
    if targets[target] is not None:
        pytest.skip(f"the installed triton cannot compile for {target}: {targets[target]}")


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_kernel_the_interpreter_runs_fails_the_compile_check(targets, target):
    need(targets, target)
    x, out = torch.arange(5, dtype=torch.float32), torch.zeros(1)
    _carried_type_change_kernel[(1,)](x, out, 5)
    assert float(out) == 10.0  # the interpreter ran it and got the sum
    result = compiled(_carried_type_change_kernel, x, out, 5)[target]
    assert not result.ok and result.stage == "frontend"
    line = result.line()
    assert line.startswith(f"{__name__}._carried_type_change_kernel FAILED at frontend"), line
    assert f"_carried_type_change_kernel[{target}](x_ptr: *fp32, out_ptr: *fp32, n: i32;" in line, line
    assert "Loop-carried variable acc has initial type int32 but is re-assigned to fp32" in line, line


@pytest.fixture(scope="module")
def dot_results() -> dict[tuple[str, str], object]:
    """(tiles, target) -> the compile result of _dot_kernel at tiles too large ("big") or fitting ("small")."""
    recorder, tiles = LaunchRecorder(), {"big": (256, 256, 256, 4), "small": (64, 64, 32, 2)}
    with recorder.recording(execute=False):
        for bm, bn, bk, stages in tiles.values():
            a, b = (
                torch.zeros(4 * bm * bk, dtype=torch.float16),
                torch.zeros(4 * bk * bn, dtype=torch.float16),
            )
            c = torch.zeros(bm * bn)
            _dot_kernel[(1,)](a, b, c, BM=bm, BN=bn, BK=bk, num_stages=stages, num_warps=8)
    by_bm = {bm: n for n, (bm, *_rest) in tiles.items()}  # BM (the constexpr at index 3) tells them apart
    return {(by_bm[dict(r.spec.constexprs)[(3,)]], r.spec.target): r
            for r in compile_specializations(list(recorder.specializations))}  # fmt: skip


@pytest.mark.cpu_dtypes_independent
@pytest.mark.parametrize("target", list(TARGETS))
def test_tiles_over_the_shared_memory_limit_fail_the_compile_check(targets, dot_results, target):
    """A config that compiles but asks for more shared memory than a block may have would fail at launch on
    the card (OutOfResources): the check reports it, and a config of the same kernel that fits passes."""
    need(targets, target)
    from tessera_triton.compile_check import SHARED_LIMIT

    big, small = dot_results["big", target], dot_results["small", target]
    assert not big.ok and big.stage == "launch", big.line()
    assert big.shared > SHARED_LIMIT[target]
    assert (
        f"needs {big.shared} bytes of shared memory a block, over {target}'s {SHARED_LIMIT[target]}"
        in big.line()
    )
    assert small.ok and 0 < small.shared <= SHARED_LIMIT[target], small.line()


@pytest.mark.cpu_dtypes_independent
def test_registers_and_spills_are_read_from_the_sm90_binary(targets):
    """Registers and spill stores are read from ptxas's -v log: a kernel that fits says how many registers
    it takes; one whose tile cannot stay in registers is reported as spilling, with the bytes."""
    need(targets, "sm_90")
    x, out = torch.arange(5, dtype=torch.float32), torch.zeros(1)
    fits = compiled(_sum_kernel, x, out, 5, BLOCK=8)["sm_90"]
    assert fits.ok and 0 < fits.registers <= 255 and fits.stack == 0 and not fits.spills, fits.line()
    assert f"{fits.registers} registers" in fits.line() and "SPILLS" not in fits.line()
    recorder = LaunchRecorder(["sm_90"])
    with recorder.recording(execute=False):
        _spilling_kernel[(1,)](torch.zeros(64 * 64), torch.zeros(64 * 64), BLOCK=64, num_warps=1)
    [spilled] = compile_specializations(list(recorder.specializations), jobs=1)
    assert spilled.ok and spilled.spills and spilled.stack > 1024, spilled.line()
    assert f"SPILLS {spilled.stack} B a thread" in spilled.line()


def test_a_block_over_the_register_file_is_refused_at_launch():
    """Registers are allocated per warp in 256-register granules: 255 a thread is 8192 a warp, so 8 warps
    fill the SM's 64K and a ninth would not fit."""
    from tessera_triton.compile_observe import REGISTER_FILE, block_registers

    assert block_registers(255, 8) == REGISTER_FILE and block_registers(255, 9) > REGISTER_FILE
    assert block_registers(1, 1) == 256 and block_registers(64, 32) == REGISTER_FILE


def test_a_keyword_the_kernel_lacks_is_a_compile_check_error():
    """A compiled launch refuses a keyword its kernel lacks (a config key meant for another kernel of the op
    reached linear_wna16's dot kernel that way on the H200); the recorder says so rather than dropping it."""
    x, out = torch.arange(5, dtype=torch.float32), torch.zeros(1)
    recorder = LaunchRecorder()
    with recorder.recording(), pytest.raises(KeyError, match="GEMV_ROWS"):
        _sum_kernel[(1,)](x, out, 5, BLOCK=8, GEMV_ROWS=4)
    assert any("Keyword argument GEMV_ROWS was specified but unrecognised" in e for e in recorder.errors), (
        recorder.errors
    )
    recorder = LaunchRecorder()  # a launch option of another backend is no error: launch_options drops it
    with recorder.recording():
        _sum_kernel[(1,)](x, out, 5, BLOCK=8, num_warps=1)
    assert recorder.errors == [] and float(out) == 10.0


@pytest.fixture(scope="module")
def pack_specializations(tmp_path_factory):
    from tessera import discovery, kernel_registry
    from tessera_triton.pack_compile_check import record_pack

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_HOME", str(tmp_path_factory.mktemp("home")))
        for name in ("TESSERA_PLUGINS", "TESSERA_PLATFORM", "TESSERA_KERNELS"):
            mp.delenv(name, raising=False)
        discovery._cached.clear()
        kernel_registry._cached.clear()
        try:
            yield record_pack()  # the fixed cases in float16 and bfloat16, and the segmented scan
        finally:
            discovery._cached.clear()
            kernel_registry._cached.clear()


def launched_kernels() -> set[str]:
    """The pack's kernels (its triton.jit functions named *kernel; the others are device functions)."""
    import importlib

    import tessera_triton.kernels as kernels

    names = set()
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        names |= {f"{module.__name__}.{n}" for n, v in vars(module).items() if n.endswith("kernel")
                  and type(v).__name__ in ("JITFunction", "InterpretedFunction") and v.fn.__module__ == module.__name__}  # fmt: skip
    return names


@pytest.mark.cpu_dtypes_independent  # it compiles the float16 and bfloat16 launches for GPU targets
@pytest.mark.parametrize("target", list(TARGETS))
def test_pack_compiles_at_every_launched_specialization(targets, pack_specializations, target):
    need(targets, target)
    from tessera_triton.compile_cover import covering

    mine = [s for s in pack_specializations if s.target == target]
    unlaunched = launched_kernels() - {s.kernel for s in mine}
    assert not unlaunched, f"no case launched {unlaunched}: add a launch to tessera_triton.pack_compile_check"
    dtypes = {kind for s in mine for _, kind in s.signature if kind in ("*fp16", "*bf16")}
    assert dtypes == {"*fp16", "*bf16"}
    results = compile_specializations(covering(mine))
    assert {r.spec.kernel for r in results} == launched_kernels()
    failed = [r.line() for r in results if not r.ok]
    assert not failed, "\n\n".join(failed)
    assert {r.stage for r in results} == {"cubin" if TARGETS[target][0] == "cuda" else "hsaco"}
    # on sm_90 the binaries' registers are read: no kernel spills at the configs the cases launch (the
    # defaults; causal_conv1d's prefill default spilled 240-320 B a thread at 255 registers until it took 8 warps)
    spilling = [r.line() for r in results if r.spills]
    assert not spilling, "\n\n".join(spilling)
    if target == "sm_90":
        assert all(r.registers for r in results)
