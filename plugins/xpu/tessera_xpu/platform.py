"""The Intel GPU platform through torch.xpu. intel_extension_for_pytorch is never imported."""

from __future__ import annotations

import re

import torch

from tessera.platform import Availability, Capabilities, DeviceInfo, DeviceModulePlatform

# (substring of the device name, canonical name, architecture)
KNOWN_DEVICES = (
    ("Max 1550", "Intel_Max_1550", "pvc"),
    ("Max 1100", "Intel_Max_1100", "pvc"),
    ("B580", "Intel_Arc_B580", "bmg"),
    ("B570", "Intel_Arc_B570", "bmg"),
    ("140V", "Intel_LunarLake_Arc_140V", "lnl"),
    ("130V", "Intel_LunarLake_Arc_130V", "lnl"),
    ("A770", "Intel_Arc_A770", "dg2"),
)


def identify(name: str) -> tuple[str, str]:
    """(canonical name, architecture) for an XPU device name."""
    for needle, canonical, arch in KNOWN_DEVICES:
        if needle in name:
            return canonical, arch
    return re.sub(r"[^A-Za-z0-9]+", "_", name.replace("(R)", "").replace("(TM)", "")).strip("_"), "xe"


def _xpu():
    return getattr(torch, "xpu", None)


class XpuPlatform(DeviceModulePlatform):
    """Intel GPUs (Data Center GPU Max, Arc, Core Ultra iGPUs) through torch.xpu."""

    name = "xpu"
    device_type = "xpu"
    priority = 90

    def availability(self) -> Availability:
        xpu = _xpu()
        compiled = xpu is not None and getattr(xpu, "_is_compiled", lambda: True)()
        if not compiled:
            return Availability(
                available=False,
                reason=f"this torch build ({torch.__version__}) has no XPU support; "
                "install torch from the XPU wheel index to use Intel GPUs",
            )
        if not xpu.is_available() or xpu.device_count() == 0:
            return Availability(
                available=False,
                reason=f"torch {torch.__version__} has XPU support, but no Intel GPU is visible "
                "(check the Level Zero driver with sycl-ls, and ZE_AFFINITY_MASK)",
            )
        return Availability(available=True, reason=f"{xpu.device_count()} device(s)")

    def devices(self) -> list[DeviceInfo]:
        if not self.availability().available:
            return []
        xpu = _xpu()
        out = []
        for i in range(xpu.device_count()):
            props = xpu.get_device_properties(i)
            canonical, arch = identify(props.name)
            out.append(
                DeviceInfo(
                    index=i,
                    name=props.name,
                    vendor="Intel",
                    arch=arch,
                    canonical_name=canonical,
                    memory_total=int(props.total_memory),
                    compute_units=getattr(props, "gpu_eu_count", None),
                    driver=str(getattr(props, "driver_version", "")) or None,
                    runtime=f"torch.xpu {torch.__version__}",
                )
            )
        return out

    def capabilities(self, device_index: int = 0) -> Capabilities:
        xpu = _xpu()
        props = xpu.get_device_properties(device_index)
        return Capabilities(
            dtypes=("float32", "float16", "bfloat16"),
            fp8_dtype="float8_e4m3fn" if getattr(props, "has_fp8", False) else None,
            graphs=hasattr(xpu, "XPUGraph"),
            pinned_memory=True,
            dist_backend="xccl",
            triton_backend=True,
        )

    def graph(self):
        xpu = _xpu()
        return xpu.XPUGraph() if hasattr(xpu, "XPUGraph") else None
