"""The device contract: what the engine may ask of a piece of hardware.

A platform plugin subclasses :class:`Platform` once per kind of device (cpu, cuda,
rocm, xpu, ...). The engine never asks "is this CUDA?": it reads
:class:`Capabilities` as data and calls the members below. A member joins this
class only when two platforms implement it differently.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

# The capabilities are typed data of the contract package (layers and kernels read them without the
# engine); plugins import them from here as before.
from tessera.pluggable_layers.device import Capabilities
from tessera.pluggable_layers.measure import LimitProbe

__all__ = [
    "DTYPE_NAMES",
    "Availability",
    "Capabilities",
    "DeviceInfo",
    "DeviceModulePlatform",
    "HostEvent",
    "LimitProbe",
    "MemoryChecker",
    "Platform",
    "dtype_from_name",
    "dtype_name",
]

DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


def dtype_from_name(name: str) -> torch.dtype:
    """Map a dtype name such as ``"bfloat16"`` or ``"float8_e4m3fn"`` to a torch dtype."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use a torch dtype name such as 'bfloat16'")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a torch dtype (``torch.bfloat16`` -> ``"bfloat16"``)."""
    return str(dtype).removeprefix("torch.")


class Availability(BaseModel):
    """Whether a platform can run on this machine, and if not, why."""

    model_config = ConfigDict(frozen=True)

    available: bool
    reason: str = ""


class DeviceInfo(BaseModel):
    """One device of a platform, as the user and the tuned-config lookup see it."""

    model_config = ConfigDict(frozen=True)

    index: int = 0
    name: str
    vendor: str
    arch: str = Field(description="architecture such as sm_90, gfx942, pvc, x86_64")
    canonical_name: str = Field(description="stable name used for tuned-config files, e.g. NVIDIA_H100")
    memory_total: int = Field(ge=0, description="bytes")
    compute_units: int | None = None
    driver: str | None = None
    runtime: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)


class Platform(abc.ABC):
    """A kind of device the engine can run on.

    Subclasses set the class attributes and implement the abstract members.
    Construction must be cheap and must not touch a device: plugins build their
    platforms at discovery time on machines that may not have the hardware.
    """

    #: unique name, used by ``--platform`` and in kernel registrations
    name: str = ""
    #: torch device type of its tensors ("cpu", "cuda", "xpu", ...)
    device_type: str = ""
    #: higher wins when no platform is named; accelerators above CPU
    priority: int = 0

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this platform can run here; the reason must help a person fix it."""

    @abc.abstractmethod
    def devices(self) -> list[DeviceInfo]:
        """Every device of this platform on this machine (empty when unavailable)."""

    @abc.abstractmethod
    def capabilities(self, device_index: int = 0) -> Capabilities:
        """What device ``device_index`` can do."""

    def torch_device(self, index: int = 0) -> torch.device:
        return torch.device(self.device_type, index)

    def set_device(self, index: int) -> None:  # noqa: B027 - a no-op is the right default
        """Make device ``index`` current for later allocations."""

    def synchronize(self, index: int | None = None) -> None:  # noqa: B027
        """Wait for all queued work on the device to finish."""

    @abc.abstractmethod
    def mem_get_info(self, index: int = 0) -> tuple[int, int]:
        """Free and total device memory in bytes."""

    def peak_memory(self, index: int = 0) -> int:
        """Bytes allocated at the peak since the last reset (0 when not tracked)."""
        return 0

    def default_cache_bytes(self, index: int = 0) -> int | None:
        """The KV and state cache budget when the config names none, or None to measure it: a profiling
        forward records the activation peak (``peak_memory``) and the cache gets what the memory
        utilization leaves. A platform whose memory is shared with the host, or whose peak is not
        tracked, returns a fixed budget."""
        return None

    def limit_probe(self, index: int = 0) -> LimitProbe:
        """The copy and matmul sizes (and the matmul dtype) the device's bandwidth and peak rate are measured
        at (``tessera bench``, ``conformance --perf``); the default suits an accelerator."""
        return LimitProbe()

    def reset_peak_memory(self, index: int = 0) -> None:  # noqa: B027
        """Start a new peak-memory measurement."""

    def empty_cache(self) -> None:  # noqa: B027
        """Return cached, unused device memory to the system."""

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def event(self, enable_timing: bool = True) -> Any:
        """A device event with ``record()``, ``synchronize()`` and ``elapsed_time(other)`` (ms)."""
        return HostEvent()

    def graph(self) -> Any | None:
        """A capturable graph object (with ``replay()`` and ``pool()``), or None without graphs."""
        return None

    def graph_capture(self, graph: Any, pool: Any = None) -> contextlib.AbstractContextManager:
        """Context manager capturing the work queued inside it into ``graph``."""
        raise NotImplementedError(f"platform {self.name!r} does not capture graphs")

    def memory_checker(self) -> MemoryChecker:
        """The memory checker this platform offers to ``tessera conformance run --sanitize``: a command
        prefix that runs a Python process under it (cuda: ``compute-sanitizer --tool memcheck``), which
        must exit non-zero on a finding, or None with the reason there is none here."""
        return MemoryChecker(command=None, reason=f"platform {self.name!r} offers no memory checker")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class MemoryChecker(BaseModel):
    """A platform's memory checker: the command prefix that runs a process under it, or None and why."""

    model_config = ConfigDict(frozen=True)

    command: list[str] | None = None
    reason: str = ""


class HostEvent:
    """A timing event for platforms without device events: a host clock read after a sync."""

    def __init__(self) -> None:
        self._t: float | None = None

    def record(self, stream: Any = None) -> None:
        import time

        self._t = time.perf_counter()

    def synchronize(self) -> None:
        return None

    def elapsed_time(self, end: HostEvent) -> float:
        if self._t is None or end._t is None:
            raise RuntimeError("both events must be recorded before elapsed_time()")
        return (end._t - self._t) * 1000.0


class DeviceModulePlatform(Platform):
    """Base for accelerators that torch exposes as a device module (``torch.get_device_module``).

    Implements the memory, synchronisation, event and graph members once through
    the module torch registers for ``device_type``; subclasses add detection.
    """

    def _module(self) -> Any:
        return torch.get_device_module(self.device_type)

    def set_device(self, index: int) -> None:
        self._module().set_device(index)

    def synchronize(self, index: int | None = None) -> None:
        self._module().synchronize(index)

    def mem_get_info(self, index: int = 0) -> tuple[int, int]:
        free, total = self._module().mem_get_info(index)
        return int(free), int(total)

    def peak_memory(self, index: int = 0) -> int:
        return int(self._module().max_memory_allocated(index))

    def reset_peak_memory(self, index: int = 0) -> None:
        self._module().reset_peak_memory_stats(index)

    def empty_cache(self) -> None:
        self._module().empty_cache()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        self._module().manual_seed_all(seed)

    def event(self, enable_timing: bool = True) -> Any:
        return self._module().Event(enable_timing=enable_timing)

    def graph_capture(self, graph: Any, pool: Any = None) -> contextlib.AbstractContextManager:
        return _contained_capture(self._module().graph(graph, pool=pool), graph)


@contextlib.contextmanager
def _contained_capture(capture: Any, graph: Any):
    """``capture`` (torch's graph context), left cleanly when the captured work fails.

    When the body raises, or ending the capture does (an operation inside invalidated it), torch's
    own exit stops at the failing ``capture_end`` and leaves the capture stream current, so every
    later capture and kernel in the process fails too. Here the capture is ended and the stream
    context left whatever happened, and the first error is the one raised.
    """
    stream_ctx = getattr(capture, "stream_ctx", None)
    capture.__enter__()
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            graph.capture_end()
        if stream_ctx is not None:
            with contextlib.suppress(Exception):
                stream_ctx.__exit__(None, None, None)
        raise
    try:
        capture.__exit__(None, None, None)
    except BaseException:
        if stream_ctx is not None:
            with contextlib.suppress(Exception):
                stream_ctx.__exit__(None, None, None)
        raise
