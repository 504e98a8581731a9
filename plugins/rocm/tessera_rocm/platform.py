"""The AMD platform: detection through torch's ROCm (HIP) build, gfx architecture, fp8 flavour."""

from __future__ import annotations

import re

import torch

from tessera.platform import Availability, Capabilities, DeviceInfo, DeviceModulePlatform

# Marketing names by substring of the device name, then by architecture.
KNOWN_NAMES = ("MI355X", "MI350X", "MI325X", "MI308X", "MI300X", "MI300A", "MI250X", "MI250", "MI210")
ARCH_DEFAULT_NAME = {"gfx950": "MI355X", "gfx942": "MI300X", "gfx90a": "MI250X", "gfx1100": "RX_7900_XTX"}
FP8_BY_ARCH = {
    "gfx942": "float8_e4m3fnuz",
    "gfx950": "float8_e4m3fn",
    "gfx1200": "float8_e4m3fn",
    "gfx1201": "float8_e4m3fn",
}


def arch_from_gcn(gcn_arch_name: str) -> str:
    """``gfx942:sramecc+:xnack-`` -> ``gfx942``."""
    return gcn_arch_name.split(":", 1)[0].strip()


def fp8_dtype_for(arch: str) -> str | None:
    """e4m3fnuz on CDNA3 (gfx942), OCP e4m3fn on CDNA4 (gfx950) and RDNA4, none elsewhere."""
    return FP8_BY_ARCH.get(arch)


def canonical_device_name(name: str, arch: str) -> str:
    compact = name.replace(" ", "")
    for known in KNOWN_NAMES:
        if known in compact:
            return "AMD_" + known
    if arch in ARCH_DEFAULT_NAME:
        return "AMD_" + ARCH_DEFAULT_NAME[arch]
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or arch


def driver_version() -> str | None:
    try:
        with open("/sys/module/amdgpu/version") as f:
            return f.read().strip() or None
    except OSError:
        return None


class RocmPlatform(DeviceModulePlatform):
    """AMD GPUs through a ROCm build of torch (which serves them as torch "cuda" devices)."""

    name = "rocm"
    device_type = "cuda"
    priority = 100

    def availability(self) -> Availability:
        if not torch.version.hip:
            cuda = f", built for CUDA {torch.version.cuda}" if torch.version.cuda else ""
            return Availability(
                available=False,
                reason=f"this torch build ({torch.__version__}{cuda}) has no ROCm support "
                "(torch.version.hip is not set); install a ROCm build of torch to use AMD GPUs",
            )
        if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
            return Availability(
                available=False,
                reason=f"torch {torch.__version__} has HIP {torch.version.hip}, but no AMD GPU is visible "
                "(check rocm-smi, and HIP_VISIBLE_DEVICES)",
            )
        return Availability(
            available=True, reason=f"{torch.cuda.device_count()} device(s), HIP {torch.version.hip}"
        )

    def _arch(self, index: int) -> str:
        return arch_from_gcn(getattr(torch.cuda.get_device_properties(index), "gcnArchName", ""))

    def devices(self) -> list[DeviceInfo]:
        if not self.availability().available:
            return []
        out = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            arch = arch_from_gcn(getattr(props, "gcnArchName", ""))
            out.append(
                DeviceInfo(
                    index=i,
                    name=props.name,
                    vendor="AMD",
                    arch=arch,
                    canonical_name=canonical_device_name(props.name, arch),
                    memory_total=int(props.total_memory),
                    compute_units=int(props.multi_processor_count),
                    driver=driver_version(),
                    runtime=f"HIP {torch.version.hip}",
                )
            )
        return out

    def capabilities(self, device_index: int = 0) -> Capabilities:
        arch = self._arch(device_index)
        return Capabilities(
            dtypes=("float32", "float16", "bfloat16"),
            fp8_dtype=fp8_dtype_for(arch),
            graphs=True,
            pinned_memory=True,
            dist_backend="nccl",
            triton_backend=True,
        )

    def graph(self):
        return torch.cuda.CUDAGraph()
