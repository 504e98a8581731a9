"""Detection of cuda, rocm and xpu devices from simulated (monkeypatched) torch properties."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tessera_cuda.platform import CudaPlatform, canonical_device_name
from tessera_rocm.platform import RocmPlatform
from tessera_xpu.platform import XpuPlatform

GiB = 1 << 30


def simulate_torch_cuda(monkeypatch, props, cuda="12.8", hip=None):
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(props))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (props[i].major, props[i].minor))


def nvidia(name, major, minor, mem=80):
    return SimpleNamespace(
        name=name, major=major, minor=minor, total_memory=mem * GiB, multi_processor_count=132
    )


def amd(name, gcn, mem=192):
    return SimpleNamespace(
        name=name, gcnArchName=gcn, major=9, minor=4, total_memory=mem * GiB, multi_processor_count=304
    )


@pytest.mark.parametrize(
    ("props", "arch", "canonical", "fp8"),
    [
        (nvidia("NVIDIA H100 80GB HBM3", 9, 0), "sm_90", "NVIDIA_H100", "float8_e4m3fn"),
        (nvidia("NVIDIA H200", 9, 0, 141), "sm_90", "NVIDIA_H200", "float8_e4m3fn"),
        (nvidia("NVIDIA B300 SXM6 AC", 10, 3, 268), "sm_103", "NVIDIA_B300", "float8_e4m3fn"),
        (nvidia("NVIDIA A100-SXM4-80GB", 8, 0), "sm_80", "NVIDIA_A100", None),
    ],
)
def test_cuda_detection(monkeypatch, props, arch, canonical, fp8):
    simulate_torch_cuda(monkeypatch, [props])
    platform = CudaPlatform()
    assert platform.availability().available
    (device,) = platform.devices()
    assert (device.arch, device.canonical_name, device.vendor) == (arch, canonical, "NVIDIA")
    assert device.memory_total == props.total_memory
    caps = platform.capabilities(0)
    assert caps.fp8_dtype == fp8
    assert caps.graphs and caps.dist_backend == "nccl" and caps.triton_backend and caps.async_host_copy
    assert caps.graph_safe_collectives  # decode graphs stay on under tensor parallelism
    assert "bfloat16" in caps.dtypes
    assert not RocmPlatform().availability().available


def test_cuda_without_devices(monkeypatch):
    simulate_torch_cuda(monkeypatch, [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reason = CudaPlatform().availability().reason
    assert "no NVIDIA GPU is visible" in reason and "CUDA 12.8" in reason


def test_cuda_on_a_rocm_build(monkeypatch):
    simulate_torch_cuda(
        monkeypatch, [amd("AMD Instinct MI300X", "gfx942:sramecc+:xnack-")], cuda=None, hip="6.4"
    )
    assert "built for ROCm" in CudaPlatform().availability().reason


@pytest.mark.parametrize(
    ("props", "arch", "canonical", "fp8"),
    [
        (amd("AMD Instinct MI300X", "gfx942:sramecc+:xnack-"), "gfx942", "AMD_MI300X", "float8_e4m3fnuz"),
        (
            amd("AMD Instinct MI325X", "gfx942:sramecc+:xnack-", 256),
            "gfx942",
            "AMD_MI325X",
            "float8_e4m3fnuz",
        ),
        (
            amd("AMD Instinct MI355X", "gfx950:sramecc+:xnack-", 288),
            "gfx950",
            "AMD_MI355X",
            "float8_e4m3fn",
        ),
        (amd("AMD Instinct MI250X", "gfx90a:sramecc+:xnack-", 64), "gfx90a", "AMD_MI250X", None),
        (amd("Radeon RX 7900 XTX", "gfx1100", 24), "gfx1100", "AMD_RX_7900_XTX", None),
    ],
)
def test_rocm_detection(monkeypatch, props, arch, canonical, fp8):
    simulate_torch_cuda(monkeypatch, [props], cuda=None, hip="6.4.43482")
    platform = RocmPlatform()
    assert platform.availability().available
    (device,) = platform.devices()
    assert (device.arch, device.canonical_name, device.vendor) == (arch, canonical, "AMD")
    assert device.runtime == "HIP 6.4.43482"
    caps = platform.capabilities(0)
    assert (caps.fp8_dtype, caps.dist_backend, caps.graphs, caps.triton_backend) == (fp8, "nccl", True, True)
    assert not CudaPlatform().availability().available


def simulate_xpu(monkeypatch, props):
    monkeypatch.setattr(torch.xpu, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: bool(props))
    monkeypatch.setattr(torch.xpu, "device_count", lambda: len(props))
    monkeypatch.setattr(torch.xpu, "get_device_properties", lambda i=0: props[i])


@pytest.mark.parametrize(
    ("name", "canonical", "arch", "has_fp8", "fp8"),
    [
        ("Intel(R) Data Center GPU Max 1550", "Intel_Max_1550", "pvc", False, None),
        ("Intel(R) Arc(TM) B580 Graphics", "Intel_Arc_B580", "bmg", False, None),
        ("Intel(R) Arc(TM) 140V GPU (16GB)", "Intel_LunarLake_Arc_140V", "lnl", False, None),
        ("Intel(R) Future GPU", "Intel_Future_GPU", "xe", True, "float8_e4m3fn"),
    ],
)
def test_xpu_detection(monkeypatch, name, canonical, arch, has_fp8, fp8):
    props = SimpleNamespace(
        name=name, total_memory=64 * GiB, driver_version="1.6.31294", gpu_eu_count=512, has_fp8=has_fp8
    )
    simulate_xpu(monkeypatch, [props])
    platform = XpuPlatform()
    assert platform.availability().available
    (device,) = platform.devices()
    assert (device.canonical_name, device.arch, device.driver) == (canonical, arch, "1.6.31294")
    caps = platform.capabilities(0)
    assert caps.fp8_dtype == fp8 and caps.dist_backend == "xccl"
    assert caps.graphs == hasattr(torch.xpu, "XPUGraph")


def test_xpu_compiled_without_devices(monkeypatch):
    simulate_xpu(monkeypatch, [])
    assert "no Intel GPU is visible" in XpuPlatform().availability().reason


def test_canonical_names_do_not_confuse_h20_and_h200():
    assert canonical_device_name("NVIDIA H20") == "NVIDIA_H20"
    assert canonical_device_name("NVIDIA H200 NVL") == "NVIDIA_H200"
    assert canonical_device_name("Some New GPU") == "Some_New_GPU"
