"""`tessera platform list / show`: tables, JSON, --strict, and broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from tessera.cli import app

from .conftest import FIXTURES

runner = CliRunner()


def run_json(*args, env=None):
    result = runner.invoke(app, ["platform", "list", "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_shows_all_five(fresh_discovery):
    result = runner.invoke(app, ["platform", "list"])
    assert result.exit_code == 0, result.output
    for name in ("cpu", "cuda", "rocm", "xpu", "triton"):
        assert name in result.output
    assert "kernel pack" in result.output
    assert "has no CUDA support" in result.output


def test_json_fields(fresh_discovery):
    data = run_json()
    plugins = {p["plugin"]: p for p in data["plugins"]}
    for key in ("plugin", "distribution", "version", "status", "error", "kernel_pack", "platforms"):
        assert key in plugins["cpu"]
    cpu = plugins["cpu"]["platforms"][0]
    for key in ("name", "available", "reason", "priority", "devices"):
        assert key in cpu
    assert {"name", "arch", "memory_total"} <= set(cpu["devices"][0])
    assert plugins["triton"]["kernel_pack"] is True
    assert plugins["cuda"]["platforms"][0]["available"] is False


def test_allow_list_json_lists_only_cpu(fresh_discovery):
    data = run_json(env={"TESSERA_PLUGINS": "cpu"})
    assert [p["plugin"] for p in data["plugins"]] == ["cpu"]


def test_broken_plugin_listed_and_strict_exit_code(install_fixture):
    install_fixture("broken_import")
    result = runner.invoke(app, ["platform", "list"])
    assert result.exit_code == 0
    assert "broken" in result.output and "ModuleNotFoundError" in result.output
    assert runner.invoke(app, ["platform", "list", "--strict"]).exit_code == 1
    broken = next(p for p in run_json()["plugins"] if p["plugin"] == "broken_import")
    assert broken["status"] == "broken" and "ModuleNotFoundError" in broken["error"]


def test_strict_passes_on_a_healthy_install(fresh_discovery):
    assert runner.invoke(app, ["platform", "list", "--strict"]).exit_code == 0


def test_show_cpu_and_errors(fresh_discovery):
    result = runner.invoke(app, ["platform", "show", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["available"] and data["plugin"] == "cpu"
    unknown = runner.invoke(app, ["platform", "show", "tpu"])
    assert unknown.exit_code == 2 and "unknown platform 'tpu'" in unknown.output
    unavailable = runner.invoke(app, ["platform", "show", "rocm"])
    assert unavailable.exit_code == 0 and "no ROCm support" in unavailable.output


def test_console_script_with_a_broken_plugin_in_a_subprocess():
    env = dict(os.environ, PYTHONPATH=str(FIXTURES / "raising_platforms"))
    env.pop("TESSERA_PLUGINS", None)
    cmd = [sys.executable, "-m", "tessera.cli", "platform", "list", "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    raising = next(p for p in json.loads(done.stdout)["plugins"] if p["plugin"] == "raising")
    assert raising["status"] == "broken"
    strict = subprocess.run([*cmd, "--strict"], env=env, capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1
