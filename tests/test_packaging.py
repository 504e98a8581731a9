"""Packaging: every folder with an __init__.py is listed in its pyproject, entry points are declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from .conftest import REPO


def listed_packages(pyproject: Path) -> tuple[list[str], dict[str, str]]:
    data = tomllib.loads(pyproject.read_text())
    tool = data["tool"]["setuptools"]
    return tool["packages"], tool.get("package-dir", {})


def folder_of(package: str, package_dir: dict[str, str], root: Path) -> Path:
    best = max((k for k in package_dir if package == k or package.startswith(k + ".")), key=len, default="")
    rest = package[len(best) :].lstrip(".").split(".") if package != best else []
    base = root / package_dir[best] if best else root
    return base.joinpath(*[p for p in rest if p])


def folders_with_init(base: Path) -> set[Path]:
    return {p.parent for p in base.rglob("__init__.py") if "fixtures" not in p.parts}


def test_root_packages_match_the_tree():
    packages, package_dir = listed_packages(REPO / "pyproject.toml")
    listed = {folder_of(p, package_dir, REPO) for p in packages}
    present = set().union(*(folders_with_init(REPO / d) for d in ("core", "pluggable_layers", "conformance")))
    assert present - listed == set(), (
        f"folders with __init__.py missing from pyproject packages: {present - listed}"
    )
    assert listed - present == set(), f"packages listed without a folder: {listed - present}"


@pytest.mark.parametrize("plugin", ["cpu", "triton", "cuda", "rocm", "xpu"])
def test_plugin_distributions(plugin):
    root = REPO / "plugins" / plugin
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert data["project"]["name"] == f"tessera-{plugin}"
    assert (root / "README.md").is_file()
    eps = data["project"]["entry-points"]["tessera.plugins"]
    assert eps == {plugin: f"tessera_{plugin}.plugin"}
    packages, package_dir = listed_packages(root / "pyproject.toml")
    listed = {folder_of(p, package_dir, root) for p in packages}
    assert folders_with_init(root) == listed


@pytest.mark.parametrize("plugin", ["cpu", "rocm", "xpu"])
def test_triton_is_not_a_hard_dependency(plugin):
    data = tomllib.loads((REPO / "plugins" / plugin / "pyproject.toml").read_text())
    assert not any(d.startswith("triton") for d in data["project"]["dependencies"])


def test_core_does_not_depend_on_triton():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert not any("triton" in d for d in data["project"]["dependencies"])


def declared_names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for r in requirements}


def test_core_dependencies_are_what_it_imports():
    """tokenizers is needed by every real checkpoint, numpy by torch to import without a warning, msgspec by
    the tensor-parallel step messages; importlib-metadata by nothing on Python 3.11+."""
    names = declared_names(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert names == {
        "torch",
        "pluggy",
        "pydantic",
        "typer",
        "rich",
        "safetensors",
        "tokenizers",
        "numpy",
        "msgspec",
    }


def test_the_cpu_quick_start_installs_no_triton():
    readme = (REPO / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("bash .ci/run")]
    cpu_line = next(line for line in quick.splitlines() if "tessera generate" in line)
    assert "pip install -e . -e plugins/cpu &&" in cpu_line and "triton" not in cpu_line
    data = tomllib.loads((REPO / "plugins" / "cpu" / "pyproject.toml").read_text())
    assert declared_names(data["project"]["dependencies"]) == {"tessera"}


def test_the_model_zoo_ships_in_the_wheel(tmp_path):
    """The conformance suite reads its model-shape zoo as package data: a built wheel must hold it."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    for name in ("core", "pluggable_layers", "conformance"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "certificates"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("tessera-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tessera/conformance/data/model_zoo.json" in names
    from tessera.conformance import zoo

    assert {"Mixtral-8x7B", "Qwen1.5-MoE-A2.7B", "DeepSeek-V2-Lite", "Bamba-9B"} <= set(zoo.models())
