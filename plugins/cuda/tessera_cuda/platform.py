"""The NVIDIA platform: detection through torch's CUDA build, SM architecture, fp8 from sm_89."""

from __future__ import annotations

import os
import re
import shutil

import torch

from tessera.platform import Availability, Capabilities, DeviceInfo, DeviceModulePlatform, MemoryChecker

# Longest names first, so that "H200" is not taken for "H20".
KNOWN_DEVICES = (
    "GB300",
    "GB200",
    "B300",
    "B200",
    "H200",
    "H100",
    "H800",
    "H20",
    "GH200",
    "A100",
    "A800",
    "A10G",
    "L40S",
    "L40",
    "L4",
    "RTX 6000 Ada",
    "RTX 4090",
    "RTX 5090",
)


def arch_name(major: int, minor: int) -> str:
    """``sm_XY`` from a compute capability (9, 0) -> ``sm_90``, (10, 3) -> ``sm_103``."""
    return f"sm_{major}{minor}"


def fp8_dtype_for(major: int, minor: int) -> str | None:
    """e4m3fn on Ada (sm_89), Hopper and Blackwell; none before."""
    return "float8_e4m3fn" if (major, minor) >= (8, 9) else None


def canonical_device_name(name: str) -> str:
    """A short, stable name for tuned-config files: "NVIDIA H100 80GB HBM3" -> "NVIDIA_H100"."""
    for known in sorted(KNOWN_DEVICES, key=len, reverse=True):
        if re.search(rf"(^|[^A-Za-z0-9]){re.escape(known)}([^A-Za-z0-9]|$)", name):
            return "NVIDIA_" + known.replace(" ", "_")
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def driver_version() -> str | None:
    """The kernel driver version from /proc (no NVML needed), or None."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            match = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]+)", f.read())
        return match.group(1) if match else None
    except OSError:
        return None


class CudaPlatform(DeviceModulePlatform):
    """NVIDIA GPUs through a CUDA build of torch."""

    name = "cuda"
    device_type = "cuda"
    priority = 100

    def availability(self) -> Availability:
        if torch.version.hip:
            return Availability(
                available=False,
                reason=f"this torch build ({torch.__version__}) is built for ROCm (HIP {torch.version.hip}), "
                "not CUDA; the rocm platform (tessera-rocm) serves AMD GPUs",
            )
        if not torch.version.cuda:
            return Availability(
                available=False,
                reason=f"this torch build ({torch.__version__}) has no CUDA support; "
                "install a CUDA build of torch to use NVIDIA GPUs",
            )
        if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
            return Availability(
                available=False,
                reason=f"torch {torch.__version__} has CUDA {torch.version.cuda}, but no NVIDIA GPU is visible "
                "(check the driver with nvidia-smi, and CUDA_VISIBLE_DEVICES)",
            )
        return Availability(
            available=True, reason=f"{torch.cuda.device_count()} device(s), CUDA {torch.version.cuda}"
        )

    def devices(self) -> list[DeviceInfo]:
        if not self.availability().available:
            return []
        out = []
        driver = driver_version()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(
                DeviceInfo(
                    index=i,
                    name=props.name,
                    vendor="NVIDIA",
                    arch=arch_name(props.major, props.minor),
                    canonical_name=canonical_device_name(props.name),
                    memory_total=int(props.total_memory),
                    compute_units=int(props.multi_processor_count),
                    driver=driver,
                    runtime=f"CUDA {torch.version.cuda}",
                )
            )
        return out

    def capabilities(self, device_index: int = 0) -> Capabilities:
        major, minor = torch.cuda.get_device_capability(device_index)
        dtypes = ("float32", "float16", "bfloat16") if major >= 8 else ("float32", "float16")
        return Capabilities(
            dtypes=dtypes,
            fp8_dtype=fp8_dtype_for(major, minor),
            graphs=True,
            pinned_memory=True,
            dist_backend="nccl",
            graph_safe_collectives=True,  # NCCL collectives are captured into CUDA graphs
            triton_backend=True,
        )

    def graph(self):
        return torch.cuda.CUDAGraph()

    def memory_checker(self) -> MemoryChecker:
        """compute-sanitizer's memcheck (from the CUDA toolkit), when it is on PATH or in $CUDA_HOME/bin."""
        found = shutil.which("compute-sanitizer")
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        candidate = os.path.join(home, "bin", "compute-sanitizer")
        found = found or (candidate if os.access(candidate, os.X_OK) else None)
        if not found:
            return MemoryChecker(reason="compute-sanitizer is not on PATH nor in $CUDA_HOME/bin: install the CUDA "
                                        "toolkit's compute-sanitizer, or put it on PATH")  # fmt: skip
        return MemoryChecker(command=[found, "--tool", "memcheck", "--error-exitcode", "99",
                                      "--print-limit", "20", "--target-processes", "all"])  # fmt: skip
