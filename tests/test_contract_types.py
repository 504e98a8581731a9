"""The device facts the contract hands layers and kernels: typed Capabilities, one home for them,
the 1.0 keywords still accepted, and the reference platform the model level needs named when missing."""

from __future__ import annotations

from tessera.platform import Capabilities, LimitProbe, Platform
from tessera.pluggable_layers import device
from tessera.pluggable_layers.registry import PlatformFacts


def test_capabilities_have_one_home():
    assert Capabilities is device.Capabilities
    assert PlatformFacts("cuda").capabilities == Capabilities()  # typed, never None
    assert PlatformFacts.__dataclass_fields__["capabilities"].type in ("Capabilities", Capabilities)


def test_dead_members_are_gone():
    assert not hasattr(Platform, "plugin_api")
    assert not hasattr(Capabilities(), "warp_size") and not hasattr(Capabilities, "supports_dtype")


def test_a_1_0_plugin_passing_the_old_keywords_keeps_working():
    caps = Capabilities(dtypes=("float32", "bfloat16"), triton=True, warp_size=64)
    assert caps.triton_backend and caps.triton  # the 1.0 name still reads
    assert "warp_size" not in caps.model_dump() and "triton" not in caps.model_dump()


def test_cpu_platform_gives_its_device_choices_as_data():
    from tessera_cpu.platform import DEFAULT_CACHE_BYTES, CpuPlatform

    cpu = CpuPlatform()
    caps = cpu.capabilities()
    assert (caps.async_host_copy, caps.pinned_memory) == (False, False)
    assert cpu.default_cache_bytes() == DEFAULT_CACHE_BYTES == 1 << 30
    assert cpu.limit_probe() == LimitProbe(copy_bytes=1 << 26, matmul_size=1024, matmul_dtype="float32")
    # a platform that says nothing (an accelerator written against 1.0) measures and plans as before
    assert Platform.default_cache_bytes(cpu) is None
    assert Platform.limit_probe(cpu) == LimitProbe(
        copy_bytes=1 << 30, matmul_size=8192, matmul_dtype="bfloat16"
    )
    assert Capabilities().async_host_copy


def test_model_level_names_the_missing_reference_platform(fresh_discovery, monkeypatch):
    from tessera.conformance.levels import models
    from tessera_cpu.platform import CpuPlatform

    monkeypatch.setenv("TESSERA_PLUGINS", "triton")  # tessera-cpu installed but not loaded
    cpu = CpuPlatform()
    results = models.check(cpu, None, cpu.capabilities(), None, seed=1)
    assert [(r.op, r.status) for r in results] == [(arch, "error") for arch in models.ARCHS]
    message = results[0].message
    assert "compares with the 'cpu' platform" in message and "Install tessera-cpu" in message
    assert "unknown platform 'cpu'" in message
