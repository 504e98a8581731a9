"""Shared test fixtures: installed fixture plugins, simulated devices, fresh discovery."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# Triton kernels run on CPU tensors through the interpreter; the switch is read when a
# kernel is decorated, so it must be set before any kernel module is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_discovery(monkeypatch):
    """Clear the per-process discovery cache before and after the test."""
    from tessera import discovery as plugins
    from tessera import kernel_registry as kernels

    kernels._cached.clear()
    monkeypatch.delenv("TESSERA_PLUGINS", raising=False)
    monkeypatch.delenv("TESSERA_PLATFORM", raising=False)
    monkeypatch.delenv("TESSERA_KERNELS", raising=False)
    plugins._cached.clear()
    yield plugins
    plugins._cached.clear()
    kernels._cached.clear()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh TESSERA_HOME (certificates, caches, user data) for the test."""
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def install_fixture(monkeypatch, fresh_discovery):
    """Install a fixture distribution from tests/fixtures/<name> by putting its dist-info on sys.path."""
    added: list[str] = []

    def install(name: str, copy_to: Path | None = None) -> Path:
        """Install fixture ``name``; with ``copy_to``, a copy of it made there (a test may edit its code)."""
        path = FIXTURES / name
        assert path.is_dir(), f"no fixture plugin {name}"
        if copy_to is not None:
            shutil.copytree(path, copy_to, ignore=shutil.ignore_patterns("__pycache__"))
            path = copy_to
        monkeypatch.syspath_prepend(str(path))
        added.extend(p.stem for p in path.glob("*.py"))
        fresh_discovery._cached.clear()
        return path

    yield install
    for module in added:
        sys.modules.pop(module, None)


@pytest.fixture(scope="session")
def checkpoints_dir_llama(tmp_path_factory):
    from .hf_checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint("llama", tmp_path_factory.mktemp("llama_cli"))


@pytest.fixture(scope="session", autouse=True)
def strict_interpreted_launch():
    """Launches in the Triton interpreter refuse keywords their kernel lacks, as a compiled launch does
    (``KeyError: Keyword argument X was specified but unrecognised``); the interpreter alone would drop them,
    and a config key meant for another kernel of the op would pass every test here and fail on a GPU."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # no Triton installed: nothing is interpreted
        yield
        return
    from tessera_triton.common import LAUNCH_KEYS

    options = {*LAUNCH_KEYS, "num_ctas", "maxnreg"}
    run = InterpretedFunction.run

    def strict_run(self, *args, grid, warmup, **kwargs):
        unknown = sorted(k for k in kwargs if k not in self.arg_names and k not in options)
        if unknown:
            raise KeyError(f"Keyword argument {unknown[0]} was specified but unrecognised ({self.__name__})")
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = strict_run
    yield
    InterpretedFunction.run = run


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cpu_dtypes_independent: what the test checks does not depend on the dtypes the cpu platform reports "
        "(it names its own dtypes, or runs no cpu kernel); it runs where the cpu platform reports bfloat16, so "
        "CI's float32-only pass does not repeat it",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    forced = os.environ.get("TESSERA_CPU_DTYPES")
    if item.get_closest_marker("cpu_dtypes_independent") and forced is not None and "bfloat16" not in forced:
        pytest.skip("does not depend on the cpu platform's dtypes: runs in CI's bfloat16 pass only")
