"""TESSERA_KERNELS and kernel_overrides: a typo, an unknown op or kernel, a duplicate entry are clear errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.errors import KernelError

runner = CliRunner()

BAD = {
    "rmsnorm=reference": [
        "unknown op 'rmsnorm'",
        "the ops are: rms_norm, add_rms_norm",
        "did you mean rms_norm?",
    ],
    "nosuchop=reference": [
        "TESSERA_KERNELS: nosuchop=reference: unknown op 'nosuchop'",
        "the ops are: rms_norm",
    ],
    "rms_norm=cpu_torch_rmsnorm": [
        "unknown kernel 'cpu_torch_rmsnorm' for rms_norm",
        "known kernels: cpu_torch_rms_norm, reference",
        "did you mean cpu_torch_rms_norm?",
    ],
    "rms_norm=reference,silu_and_mul=reference,rms_norm=cpu_torch_rms_norm": [
        "TESSERA_KERNELS names rms_norm twice (rms_norm=reference and rms_norm=cpu_torch_rms_norm)",
        "keep one entry per op",
    ],
}


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    from tessera.models.presets import preset_dir

    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    return preset_dir("tiny-llama")


@pytest.mark.parametrize("value", list(BAD))
def test_kernels_explain_rejects_bad_overrides(value, fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_KERNELS", value)
    # the op explained is not the one overridden: every entry is checked, not only the one asked about
    result = runner.invoke(app, ["kernels", "explain", "silu_and_mul", "--platform", "cpu"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    for expected in BAD[value]:
        assert expected in text
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", list(BAD))
def test_generate_rejects_bad_overrides(value, fresh_discovery, monkeypatch, tmp_path):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    monkeypatch.setenv("TESSERA_KERNELS", value)
    result = runner.invoke(app, ["generate", "--platform", "cpu", "-n", "2"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert BAD[value][0] in text and "Traceback" not in result.output


@pytest.mark.parametrize("value", list(BAD))
def test_python_api_rejects_bad_overrides(value, fresh_discovery, monkeypatch, model_dir):
    from tessera import LLM

    monkeypatch.setenv("TESSERA_KERNELS", value)
    with pytest.raises(KernelError) as info:
        LLM(str(model_dir), platform="cpu", load_format="random")
    assert all(expected in str(info.value) for expected in BAD[value])


def test_engine_config_overrides_are_checked_too(fresh_discovery, model_dir):
    from tessera import LLM

    with pytest.raises(KernelError, match=r"kernel override: rmsnorm=reference: unknown op 'rmsnorm'"):
        LLM(str(model_dir), platform="cpu", load_format="random", kernel_overrides={"rmsnorm": "reference"})
    with pytest.raises(
        KernelError, match=r"kernel override: rms_norm=fast: unknown kernel 'fast' for rms_norm"
    ):
        LLM(str(model_dir), platform="cpu", load_format="random", kernel_overrides={"rms_norm": "fast"})


def test_a_valid_override_is_taken(fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_KERNELS", "rms_norm=reference")
    result = runner.invoke(app, ["kernels", "explain", "rms_norm", "--platform", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert '"selected": "reference"' in result.output and '"override": "reference"' in result.output
