"""Code fingerprints: a certificate records a sha256 of each distribution's code, so a kernel whose code
changed while its version stayed the same makes the certificate stale (in this process and in a fresh
one); the fingerprint is found where the code is imported from, editable installs included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.conformance import fingerprint
from tessera.conformance.certificate import check_certificate

from .certificate_helpers import certify_rms_norm

runner = CliRunner()
PACK = "tessera-fixture-fast-norm"


@pytest.fixture
def pack(tmp_path, install_fixture):
    """The fixture kernel pack (a faster rms_norm for the cpu platform), installed from a copy."""
    fingerprint.code_fingerprint.cache_clear()
    yield install_fixture("kernel_pack", copy_to=tmp_path / "pack") / "fixture_fast_norm.py"
    fingerprint.code_fingerprint.cache_clear()


@pytest.fixture
def certified(tmp_path, monkeypatch, pack):
    """A real certificate of a cpu run of rms_norm with the kernel pack installed."""
    return certify_rms_norm(tmp_path / "home", monkeypatch)


def test_the_editable_tessera_distribution_is_fingerprinted_from_all_its_package_folders():
    import importlib.metadata as importlib_metadata

    files = fingerprint._files(fingerprint._roots(importlib_metadata.distribution("tessera")))
    # three folders (core, pluggable_layers, conformance) under their import paths; shipped data counts,
    # the committed certificates and bytecode do not
    assert {"tessera/cli/conformance_cmd.py", "tessera/pluggable_layers/ops.py", "tessera/conformance/runner.py",
            "tessera/conformance/data/model_zoo.json"} <= set(files)  # fmt: skip
    assert not [f for f in files if "certificates/" in f or "__pycache__" in f or f.endswith(".pyc")]
    cuda = fingerprint._files(fingerprint._roots(importlib_metadata.distribution("tessera-cuda")))
    assert any(f.startswith("tessera_cuda/configs/") and f.endswith(".json") for f in cuda)


def test_fingerprints_are_cheap_and_cached_per_process():
    import importlib.metadata as importlib_metadata

    dists = ["tessera", *(d.metadata["Name"] for d in importlib_metadata.distributions()
                          if (d.metadata["Name"] or "").startswith("tessera-"))]  # fmt: skip
    fingerprint.code_fingerprint.cache_clear()
    start = time.perf_counter()
    found = fingerprint.code_fingerprints(dists)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    assert fingerprint.code_fingerprints(dists) == found
    warm = time.perf_counter() - start
    assert {"tessera", "tessera-cpu", "tessera-triton"} <= set(found)
    assert all(len(fp) == 64 for fp in found.values())
    assert cold < 1.0 and warm < 0.01, (
        cold,
        warm,
    )  # tens of ms cold here; the bound leaves room for a busy host


def test_a_package_is_fingerprinted_by_its_sources_and_data_wherever_it_is_installed(tmp_path, monkeypatch):
    """A real distribution (dist-info + package) installed in two places: same code, same fingerprint;
    bytecode and other files do not count; an edited .py or .json, or a rebuilt binary, does."""

    def install(where):
        (where / "pkg_fp" / "configs").mkdir(parents=True)
        (where / "pkg_fp" / "__init__.py").write_text("X = 1\n")
        (where / "pkg_fp" / "configs" / "tuned.json").write_text('{"block": 64}')
        info = where / "pkg_fp-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg-fp\nVersion: 0.1.0\n")
        (info / "top_level.txt").write_text("pkg_fp\n")
        return where / "pkg_fp"

    def fp():
        fingerprint.code_fingerprint.cache_clear()
        return fingerprint.code_fingerprint("pkg-fp")

    first = install(tmp_path / "a")
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    original = fp()
    (first / "__pycache__").mkdir()
    (first / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0junk")
    (first / "stray.pyc").write_bytes(b"\0junk")
    (first / "NOTES.md").write_text("not code")
    assert fp() == original
    (first / "configs" / "tuned.json").write_text('{"block": 128}')
    assert fp() != original
    (first / "configs" / "tuned.json").write_text('{"block": 64}')
    assert fp() == original
    # compiled code counts: an extension module, a versioned shared library, a device binary
    for name in ("_kernels.cpython-311-x86_64-linux-gnu.so", "libkernels.so.2", "gemm.cubin", "attn.hsaco"):
        (first / name).write_bytes(b"\x7fELF v1")
        with_binary = fp()
        assert with_binary != original, name
        (first / name).write_bytes(b"\x7fELF v2")  # rebuilt at the same version
        assert fp() not in (with_binary, original), name
        (first / name).unlink()
    assert fp() == original
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    install(tmp_path / "b")
    (first / "configs" / "tuned.json").write_text('{"block": 32}')  # a/ is no longer the one imported
    assert fp() == original  # found now under b/, by the same import-relative paths
    assert fingerprint.code_fingerprint("no-such-distribution") is None


def test_a_certificate_records_the_fingerprints_of_tessera_and_each_plugin(certified):
    data = json.loads(certified.read_text())
    assert data["schema_version"] == 3
    assert set(data["fingerprints"]) == {"tessera", *data["plugins"]} and PACK in data["plugins"]
    assert data["fingerprints"][PACK] == fingerprint.code_fingerprint(PACK)
    assert check_certificate(certified).status == "verified"


def test_a_kernel_whose_code_changed_at_the_same_version_makes_it_stale(certified, pack, tmp_path):
    source = pack.read_text()
    pack.write_text(source.replace("priority=200", "priority=201"))
    fingerprint.code_fingerprint.cache_clear()  # a new process sees the edit; this one caches it
    checked = check_certificate(certified)
    assert checked.status == "stale"
    assert checked.reason.startswith(f"{PACK}'s code changed since it was certified; run the suite again")
    # a fresh process, through the real CLI, sees the same
    env = {**os.environ, "PYTHONPATH": str(pack.parent), "TESSERA_HOME": str(tmp_path / "home")}
    shown = subprocess.run([sys.executable, "-m", "tessera.cli", "conformance", "verify", str(certified)],
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert ": stale" in shown.stdout and f"{PACK}'s code changed" in " ".join(shown.stdout.split())
    pack.write_text(source)
    fingerprint.code_fingerprint.cache_clear()
    assert check_certificate(certified).status == "verified"
    listed = runner.invoke(app, ["platform", "list"]).output
    assert "certificate: conformant" in listed
