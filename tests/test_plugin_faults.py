"""No plugin can take the CLI or the engine down: each fault below is a fixture distribution, installed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.discovery import get_discovery, select_platform
from tessera.errors import PlatformError
from tessera.kernel_registry import get_registry, platform_facts

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    assert "Traceback" not in result.output
    return result


def reports(discovery=None):
    discovery = discovery or get_discovery()
    return {(r.plugin, r.distribution): r for r in discovery.reports()}


def report_of(plugin, discovery=None):
    found = [r for (name, _), r in reports(discovery).items() if name == plugin]
    assert len(found) == 1, found
    return found[0]


def listed(*args):
    result = invoke("platform", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return {p["plugin"]: p for p in json.loads(result.stdout)["plugins"]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The built-in tiny model (it has a tokenizer), made once for this module."""
    import os

    from tessera.default_model import ensure_default_model

    old = os.environ.get("TESSERA_CACHE")
    os.environ["TESSERA_CACHE"] = str(tmp_path_factory.mktemp("tessera_cache"))
    try:
        return ensure_default_model()
    finally:
        os.environ.pop("TESSERA_CACHE") if old is None else os.environ.__setitem__("TESSERA_CACHE", old)


def generate_on_cpu(model_dir):
    result = invoke("generate", "--model", str(model_dir), "--platform", "cpu", "--prompt", "hi", "-n", "3")
    assert result.exit_code == 0, result.output
    assert "platform cpu" in result.output and "3 tokens" in result.output
    return result


def test_sys_exit_at_import_is_broken_and_every_command_works(install_fixture, model_dir):
    install_fixture("sys_exit")
    report = report_of("sys_exit")
    assert report.status == "broken"
    assert "called sys.exit('plugin called sys.exit at import')" in report.error
    assert "fixture_sys_exit.py:5" in report.error
    assert report_of("cpu").status == "ok"
    assert listed()["sys_exit"]["status"] == "broken"
    assert invoke("platform", "list", "--strict").exit_code == 1
    assert invoke("platform", "show", "cpu").exit_code == 0
    assert invoke("kernels", "list").exit_code == 0
    assert invoke("kernels", "explain", "rms_norm", "--platform", "cpu").exit_code == 0
    generate_on_cpu(model_dir)


def test_sys_exit_in_a_hook_and_in_a_platform_member(install_fixture):
    install_fixture("exit_in_hook")
    install_fixture("bad_platforms")
    discovery = get_discovery()
    get_registry(discovery)
    hook = report_of("exit_in_hook", discovery)
    assert hook.status == "broken" and "tessera_register_kernels() raised called sys.exit(3)" in hook.error
    platform = select_platform("exiting_member", discovery)
    with pytest.raises(
        PlatformError, match=r"platform 'exiting_member' .*synchronize\(\) called sys.exit\(4\)"
    ):
        platform.synchronize()
    assert select_platform(None, discovery).name == "cpu"


def test_platform_whose_registration_raises(install_fixture, model_dir):
    install_fixture("register_raises")
    data = listed()
    fragile = data["fragile"]
    assert fragile["status"] == "broken"
    assert (
        "tessera_register_kernels() raised RuntimeError: kernel library version mismatch" in fragile["error"]
    )
    assert "removed (rms_norm/fragile_rms_norm)" in fragile["error"]
    table = invoke("platform", "list")
    assert "broken" in table.output and "tessera-fixture-fragile" in table.output
    assert invoke("platform", "list", "--strict").exit_code == 1
    # automatic selection skips it although its priority is the highest and it says it is available
    assert select_platform(None, get_discovery()).name == "cpu"
    explicit = invoke("generate", "--model", str(model_dir), "--platform", "fragile", "-n", "2")
    assert explicit.exit_code == 2
    assert "platform 'fragile' cannot be used: plugin 'fragile'" in explicit.output
    assert "kernel library version mismatch" in explicit.output
    shown = invoke("platform", "show", "fragile")
    assert shown.exit_code == 2 and "tessera-fixture-fragile" in shown.output
    assert "fragile_rms_norm" not in {k.name for k in get_registry().kernels("rms_norm")}
    generate_on_cpu(model_dir)


def test_pack_failing_half_way_loses_what_it_registered(install_fixture, model_dir):
    path = install_fixture("pack_register_raises")
    data = listed()
    assert data["half_pack"]["status"] == "broken"
    assert "ValueError: second kernel's library is missing" in data["half_pack"]["error"]
    assert "half_pack_rms_norm" in data["half_pack"]["error"]
    registry = get_registry()
    assert "half_pack_rms_norm" not in {k.name for k in registry.kernels()}
    cpu = platform_facts(select_platform("cpu"))
    assert registry.select("rms_norm", cpu, "float32").kernel.name != "half_pack_rms_norm"
    generate_on_cpu(model_dir)
    import fixture_half_pack

    assert fixture_half_pack.__file__.startswith(str(path)) and fixture_half_pack.CALLS == []


def test_two_packs_registering_one_kernel_name(install_fixture):
    install_fixture("kernel_pack")
    install_fixture("kernel_name_clash")
    data = listed()
    assert data["fast_norm"]["status"] == "ok"
    clash = data["name_clash"]
    assert clash["status"] == "broken"
    assert "'vendor_fast_rms_norm' for rms_norm is registered twice" in clash["error"]
    assert (
        "tessera-fixture-fast-norm 0.1.0" in clash["error"]
        and "tessera-fixture-name-clash 0.1.0" in clash["error"]
    )
    kernels = {k.name: k for k in get_registry().kernels()}
    assert kernels["vendor_fast_rms_norm"].provider == "tessera-fixture-fast-norm 0.1.0"
    assert "clash_silu_and_mul" not in kernels  # registered before the clash, rolled back with it


BAD_PLATFORMS = {
    "string_priority": ("broken", "BadPlatform.priority is 'high' (str); it must be an int"),
    "int_name": ("broken", "BadPlatform.name is 42; it must be a non-empty string"),
    "bool_availability": ("unavailable", "availability() returned True (bool); it must return"),
    "raising_devices": ("unavailable", "devices() raised RuntimeError: device enumeration failed"),
    "raising_capabilities": ("unavailable", "capabilities(0) raised RuntimeError: capability query failed"),
}


def test_platforms_with_bad_members(install_fixture, model_dir):
    install_fixture("bad_platforms")
    data = listed()
    for plugin, (outcome, message) in BAD_PLATFORMS.items():
        entry = data[plugin]
        if outcome == "broken":
            assert entry["status"] == "broken" and message in entry["error"], entry
        else:
            (platform,) = entry["platforms"]
            assert entry["status"] == "ok" and not platform["available"] and message in platform["reason"], (
                entry
            )
    assert invoke("platform", "list").exit_code == 0
    assert invoke("platform", "list", "--verbose").exit_code == 0
    for name in ("bool_availability", "raising_devices", "raising_capabilities"):
        shown = invoke("platform", "show", name)
        assert shown.exit_code == 0 and "available: False" in shown.output
        explained = invoke("kernels", "explain", "rms_norm", "--platform", name)
        assert explained.exit_code == 0 and "is not available here" in explained.output
        with pytest.raises(PlatformError, match=f"platform '{name}' .* is not available"):
            select_platform(name)
    assert invoke("platform", "show", "string_priority").exit_code == 2
    assert invoke("kernels", "list").exit_code == 0
    assert invoke("kernels", "explain", "rms_norm").exit_code == 0
    # every bad platform outranks cpu; automatic selection still lands on cpu
    assert select_platform(None).name == "cpu"
    generate_on_cpu(model_dir)


def test_a_distribution_squatting_the_cpu_entry_point(install_fixture, model_dir):
    install_fixture("squat_cpu")
    both = [r for (name, _), r in reports().items() if name == "cpu"]
    by_dist = {r.distribution: r for r in both}
    assert by_dist["tessera-cpu"].status == "ok"
    squatter = by_dist["tessera-fixture-squat-cpu"]
    assert squatter.status == "broken"
    assert "tessera-cpu 0.1.0" in squatter.error and "tessera-fixture-squat-cpu 0.1.0" in squatter.error
    assert "pip uninstall tessera-fixture-squat-cpu" in squatter.error
    assert "pip install" not in squatter.error
    result = invoke("platform", "list")
    assert "pip install tessera-cpu" not in result.output
    generate_on_cpu(model_dir)


def test_no_usable_platform_never_suggests_installing_what_is_installed(fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_PLUGINS", "cuda")
    with pytest.raises(PlatformError, match="no platform is available") as info:
        select_platform(None)
    assert "pip install tessera-cpu" not in str(info.value) and "tessera-cpu is installed" in str(info.value)


def test_slow_plugin_import_is_timed_and_named(install_fixture):
    install_fixture("slow_import")
    data = listed()
    slow = data["slow_import"]
    assert slow["status"] == "ok" and 1.4 < slow["load_seconds"] < 10
    assert any("import took 1." in w and "over 1 s" in w for w in slow["warnings"])
    assert data["cpu"]["load_seconds"] < 1.0 and data["cpu"]["warnings"] == []
    assert "tessera_register_kernels" in data["cpu"]["hook_seconds"]
    verbose = invoke("platform", "list", "--verbose")
    assert "load: import" in verbose.output
    assert "warning: plugin 'slow_import'" in verbose.output and "import took" in verbose.output


def test_slow_plugin_is_named_by_every_command(install_fixture, caplog):
    install_fixture("slow_import")
    with caplog.at_level("WARNING", logger="tessera.discovery"):
        assert invoke("kernels", "list").exit_code == 0
    assert any("slow_import" in r.getMessage() and "import took" in r.getMessage() for r in caplog.records)


def test_the_guard_lets_the_users_interrupt_through():
    from tessera.discovery_guard import guarded

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guarded(interrupted)
    exited = guarded(lambda: exec("import sys; sys.exit(7)"))
    assert not exited.ok and exited.error.startswith("called sys.exit(7)")
