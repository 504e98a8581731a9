"""`tessera generate` with no arguments (the README's first command) and `tessera inspect`."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from tessera.cli import app
from tessera.default_model import CONFIG, ensure_default_model


def test_default_model_is_deterministic(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "a"))
    first = load_file(ensure_default_model() / "model.safetensors")
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "b"))
    second = load_file(ensure_default_model() / "model.safetensors")
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)
    assert first["model.embed_tokens.weight"].shape == (CONFIG["vocab_size"], CONFIG["hidden_size"])


def test_generate_with_no_arguments_in_a_fresh_process(tmp_path):
    env = dict(os.environ, TESSERA_CACHE=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "generate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Tessera runs on" in done.stdout and "32 tokens" in done.stdout and "tokens/s" in done.stdout
    assert (tmp_path / "default-model-v1" / "model.safetensors").is_file()


def test_generate_and_inspect_with_a_model(checkpoints_dir_llama):
    runner = CliRunner()
    result = runner.invoke(app, ["generate", "--model", str(checkpoints_dir_llama), "--prompt", "hi"])
    assert result.exit_code == 2 and "no usable tokenizer" in result.output
    result = runner.invoke(app, ["inspect", "--model", str(checkpoints_dir_llama)])
    assert result.exit_code == 0, result.output
    for expected in (
        "model.layers.0.self_attn.attn",
        "paged_attention",
        "cpu_torch_paged_attention",
        "tessera-cpu",
    ):
        assert expected in result.output


def test_generate_reports_bad_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["generate", "--top-p", "2"])
    assert result.exit_code == 2 and "top_p: top_p must be in (0, 1]" in result.output
