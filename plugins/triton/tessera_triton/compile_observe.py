"""What a compile tells the compile check (:mod:`tessera_triton.compile_check`): the last stage it reached,
and on sm_90 the registers and spills of the kernel.

The stages are seen through triton's stage inspection hook. ptxas's ``-v`` log says how many registers a thread uses and how many bytes it spills; triton prints it
when asked (``knobs.nvidia.dump_ptxas_log``), so the check reads it from the compile's stdout and runs
nothing twice. Without the log the registers come from the cubin through triton's own ``cuobjdump``
and the spills are unknown. A stack frame alone (a call, a local array) is no spill.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

#: sm_90's 32-bit registers per SM (and so per block), and a warp's allocation granule
REGISTER_FILE, REGISTER_GRANULE = 65536, 256


def block_registers(registers: int, warps: int) -> int:
    """Registers a block of ``warps`` warps takes: each warp's share rounded up to the allocation granule."""
    per_warp = -(-registers * 32 // REGISTER_GRANULE) * REGISTER_GRANULE
    return per_warp * warps


@contextlib.contextmanager
def ptxas_log(backend: str) -> Iterator[None]:
    """On cuda, have triton print ptxas's ``-v`` log (the compile check reads it from stdout)."""
    from triton import knobs

    nvidia = getattr(knobs, "nvidia", None)
    if backend != "cuda" or not hasattr(nvidia, "dump_ptxas_log"):
        yield
        return
    saved, nvidia.dump_ptxas_log = nvidia.dump_ptxas_log, True
    try:
        yield
    finally:
        nvidia.dump_ptxas_log = saved


def resource_usage(ptxas_log: str, cubin: bytes) -> tuple[int | None, int | None]:
    """(registers a thread, bytes of spill stores a thread): from ptxas's ``-v`` log where triton printed
    it, else the registers from the cubin (triton's cuobjdump) and the spills unknown (None). A stack
    frame alone (a call, a local array) is no spill."""
    used = re.search(r"Used (\d+) registers", ptxas_log)
    spilled = re.search(r"(\d+) bytes spill stores", ptxas_log)
    if used:
        return int(used.group(1)), int(spilled.group(1)) if spilled else 0
    return _cubin_registers(cubin), None


def _cubin_registers(cubin: bytes) -> int | None:
    """Registers a thread of the cubin's kernel, from triton's own cuobjdump (None when it cannot tell)."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    tool = tool if os.path.exists(tool) else shutil.which("cuobjdump")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        try:
            done = subprocess.run(
                [tool, "--dump-resource-usage", path], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError):
            return None
    found = re.search(r"REG:(\d+)", done.stdout) if done.returncode == 0 else None
    return int(found.group(1)) if found else None


def tracked(name: str, stage, reached: list[str]):
    """``stage`` that first appends its name to ``reached``."""

    def run(src, metadata):
        reached.append(name)
        return stage(src, metadata)

    return run


def stage_tracker(reached: list[str]):
    """A stage inspection hook that records in ``reached`` each stage the compile enters."""

    def hook(*args):
        if not args:  # asked for its contribution to the cache key
            return "", ""
        stages = args[1]
        for name, stage in list(stages.items()):
            stages[name] = tracked(name, stage, reached)
        return None

    return hook
