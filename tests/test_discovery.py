"""Plugin discovery: the five shipped plugins, the allow-list, and every fault a plugin can have."""

from __future__ import annotations

import pytest

from tessera.discovery import discover, select_platform
from tessera.errors import PlatformError
from tessera.plugin_loading import api_compatible

SHIPPED = {"cpu", "triton", "cuda", "rocm", "xpu"}


def by_name(discovery):
    return {p.report.plugin: p.report for p in discovery.plugins}


def test_all_shipped_plugins_are_found(fresh_discovery):
    reports = by_name(discover())
    assert SHIPPED <= set(reports)
    for name in SHIPPED:
        assert reports[name].status == "ok", reports[name].error
        assert reports[name].distribution == f"tessera-{name}"
        assert reports[name].version == "0.1.0"
    assert reports["triton"].kernel_pack
    assert not reports["cpu"].kernel_pack


def test_platform_reports_on_a_cpu_machine(fresh_discovery):
    reports = {r.plugin: r for r in discover().reports()}
    cpu = reports["cpu"].platforms[0]
    assert cpu.available and cpu.devices and cpu.devices[0].memory_total > 0
    for name in ("cuda", "rocm", "xpu"):
        platform = reports[name].platforms[0]
        assert not platform.available
        assert "torch" in platform.reason and len(platform.reason) > 30


def test_allow_list_limits_loading(fresh_discovery):
    reports = by_name(discover(["cpu"]))
    assert set(reports) == {"cpu"}


def test_allow_list_naming_a_missing_plugin(fresh_discovery):
    reports = by_name(discover(["cpu", "npu"]))
    assert reports["cpu"].status == "ok"
    assert reports["npu"].status == "missing"
    assert "TESSERA_PLUGINS names 'npu'" in reports["npu"].error
    assert "installed:" in reports["npu"].error


def test_allow_list_from_environment(fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_PLUGINS", "cpu, xpu")
    assert set(by_name(fresh_discovery.get_discovery())) == {"cpu", "xpu"}


def test_plugin_that_fails_to_import(install_fixture):
    install_fixture("broken_import")
    discovery = discover()
    report = by_name(discovery)["broken_import"]
    assert report.status == "broken"
    assert report.distribution == "tessera-fixture-broken-import"
    assert (
        "ModuleNotFoundError" in report.error
        and "tessera_fixture_dependency_that_is_not_installed" in report.error
    )
    assert by_name(discovery)["cpu"].status == "ok"
    with pytest.raises(PlatformError, match="broken_import.*broken.*ModuleNotFoundError"):
        select_platform("broken_import", discovery)


def test_plugin_raising_in_tessera_platforms(install_fixture):
    install_fixture("raising_platforms")
    report = by_name(discover())["raising"]
    assert report.status == "broken"
    assert "tessera_platforms() raised RuntimeError: driver handshake failed" in report.error


def test_plugin_returning_the_wrong_type(install_fixture):
    install_fixture("wrong_type")
    report = by_name(discover())["wrong_type"]
    assert report.status == "broken"
    assert "expected a list of tessera.platform.Platform" in report.error and "'npu'" in report.error


def test_plugin_with_incompatible_api(install_fixture):
    install_fixture("old_api")
    report = by_name(discover())["old_api"]
    assert report.status == "incompatible"
    assert report.plugin_api == "0.3"
    assert "plugin API 0.3" in report.error and "implements plugin API 1.2" in report.error


def test_two_plugins_claiming_one_platform_name(install_fixture):
    install_fixture("duplicate_platform")
    discovery = discover()
    report = by_name(discovery)["duplicate"]
    assert report.status == "broken"
    assert "platform name 'cpu' is already provided by plugin 'cpu'" in report.error
    assert discovery.platform_owner["cpu"].report.plugin == "cpu"
    assert select_platform("cpu", discovery).devices()[0].name != "impostor"


def test_selection_prefers_highest_priority_available(fresh_discovery):
    # cuda, rocm and xpu outrank cpu but are unavailable on a CPU machine
    assert select_platform(None, discover()).name == "cpu"


def test_selecting_an_unavailable_platform_says_why(fresh_discovery):
    with pytest.raises(
        PlatformError, match=r"platform 'cuda' \(plugin 'cuda', tessera-cuda 0.1.0\) is not available"
    ):
        select_platform("cuda", discover())


def test_selecting_an_unknown_platform_lists_the_known(fresh_discovery):
    with pytest.raises(PlatformError) as info:
        select_platform("tpu", discover())
    message = str(info.value)
    assert message.startswith(
        "unknown platform 'tpu'; installed platforms: cpu (plugin cpu, tessera-cpu 0.1.0), "
    )
    assert all(f"{n} (plugin {n}, tessera-{n} 0.1.0)" in message for n in ("cuda", "rocm", "xpu"))
    assert "tessera-tpu" not in message  # never a suggestion to install a package that does not exist


def test_platform_from_environment(fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_PLATFORM", "xpu")
    with pytest.raises(PlatformError, match="'xpu'"):
        select_platform(None, discover())


@pytest.mark.parametrize(
    ("declared", "ok"),
    [
        ("1.0", True),
        ("1.1", True),
        ("1.2", True),
        ("1.3", False),
        ("0.9", False),
        ("2.0", False),
        ("one", False),
    ],
)
def test_api_version_rule(declared, ok):
    assert api_compatible(declared) is ok
