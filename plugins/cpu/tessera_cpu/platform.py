"""The CPU platform: always available, described from /proc and the CPU's feature flags."""

from __future__ import annotations

import os
import platform as pyplatform
from functools import lru_cache

import torch

from tessera.platform import Availability, Capabilities, DeviceInfo, LimitProbe, Platform

BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
#: A comma-separated dtype list (float32 first, then any of bfloat16, float16) that replaces what the
#: CPU flags say, so one machine can run what another kind of CPU would (CI covers both this way).
CPU_DTYPES_ENV = "TESSERA_CPU_DTYPES"
CPU_DTYPE_CHOICES = ("float32", "bfloat16", "float16")
#: Set to 1 (with TRITON_INTERPRET=1) to let the cpu platform run Triton kernels through the
#: interpreter: slow, for checking kernels on machines without a GPU.
CPU_TRITON_ENV = "TESSERA_CPU_TRITON"
FP16_FLAGS = {"avx512_fp16", "amx_fp16", "fphp", "asimdhp"}
#: the cache budget when the config names none: host memory is shared with everything else, and its
#: peak is not tracked, so it is not measured
DEFAULT_CACHE_BYTES = 1 << 30


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flags(info: dict[str, str] | None = None) -> set[str]:
    info = _cpuinfo() if info is None else info
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model_name(info: dict[str, str] | None = None) -> str:
    info = _cpuinfo() if info is None else info
    return info.get("model name") or info.get("Hardware") or pyplatform.processor() or pyplatform.machine()


def total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return total_memory_bytes()


def dtypes_from_env() -> tuple[str, ...] | None:
    """The dtypes ``TESSERA_CPU_DTYPES`` forces, None when unset; raises ValueError when malformed."""
    raw = os.environ.get(CPU_DTYPES_ENV, "").strip()
    if not raw:
        return None
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in CPU_DTYPE_CHOICES]
    if unknown or not names or names[0] != "float32" or len(set(names)) != len(names):
        raise ValueError(
            f"{CPU_DTYPES_ENV}={raw!r} is not a dtype list the cpu platform can report: give float32 first, "
            f"then any of bfloat16, float16, each once (e.g. {CPU_DTYPES_ENV}=float32,bfloat16), or unset it"
        )
    return names


def detected_dtypes(flags: set[str] | None = None) -> tuple[str, ...]:
    """The dtypes this CPU computes natively: float32, plus bfloat16 / float16 by feature flag."""
    flags = cpu_flags() if flags is None else flags
    dtypes = ["float32"]
    if flags & BF16_FLAGS:
        dtypes.append("bfloat16")
    if flags & FP16_FLAGS:
        dtypes.append("float16")
    return tuple(dtypes)


def _canonical(name: str) -> str:
    keep = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    while "__" in keep:
        keep = keep.replace("__", "_")
    return keep or "cpu"


class CpuPlatform(Platform):
    """The host CPU through torch's CPU backend."""

    name = "cpu"
    device_type = "cpu"
    priority = 0

    def availability(self) -> Availability:
        try:
            forced = dtypes_from_env()
        except ValueError as exc:
            return Availability(available=False, reason=str(exc))
        if forced is not None:
            return Availability(available=True, reason=f"the host CPU, dtypes forced by {CPU_DTYPES_ENV}")
        return Availability(available=True, reason="the host CPU is always available")

    def devices(self) -> list[DeviceInfo]:
        name = cpu_model_name()
        return [
            DeviceInfo(
                index=0,
                name=name,
                vendor=_cpuinfo().get("vendor_id", "unknown"),
                arch=pyplatform.machine(),
                canonical_name=_canonical(name),
                memory_total=total_memory_bytes(),
                compute_units=os.cpu_count(),
                runtime=f"torch {torch.__version__}",
                extra={
                    "isa": torch.backends.cpu.get_cpu_capability(),
                    "threads": str(torch.get_num_threads()),
                },
            )
        ]

    def capabilities(self, device_index: int = 0) -> Capabilities:
        dtypes = dtypes_from_env() or detected_dtypes()
        interpret = os.environ.get(CPU_TRITON_ENV) == "1" and os.environ.get("TRITON_INTERPRET") == "1"
        return Capabilities(
            dtypes=tuple(dtypes),
            graphs=False,
            pinned_memory=False,
            async_host_copy=False,  # tensors are host memory: results are read where they are
            dist_backend="gloo",
            ranks_share_device=True,  # ranks are processes on the host: any number share its memory
            triton_backend=interpret,
        )

    def default_cache_bytes(self, index: int = 0) -> int | None:
        return DEFAULT_CACHE_BYTES

    def limit_probe(self, index: int = 0) -> LimitProbe:
        # a 64 MiB copy still streams past the caches; a float32 1024^3 matmul (the CPU's fast path) takes
        # milliseconds where an accelerator's 8192^3 would take seconds
        return LimitProbe(copy_bytes=1 << 26, matmul_size=1024, matmul_dtype="float32")

    def torch_device(self, index: int = 0) -> torch.device:
        return torch.device("cpu")

    def mem_get_info(self, index: int = 0) -> tuple[int, int]:
        return available_memory_bytes(), total_memory_bytes()
