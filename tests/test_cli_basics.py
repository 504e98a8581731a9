"""What a newcomer meets first: --version, python -m tessera, readable capabilities, errors for files
that are not there, explain's default dtype, a conformance log that reads well, generate's progress."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from tessera import LLM, SamplingParams
from tessera.cli import app
from tessera.config import auto_dtype
from tessera.models.spec import ModelSpec

runner = CliRunner()


def test_version_and_module_entry():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("tessera 0.1.0 (plugin API 1.")
    done = subprocess.run(
        [sys.executable, "-m", "tessera", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout == result.output


def test_platform_show_prints_capabilities_one_per_line(fresh_discovery, monkeypatch):
    monkeypatch.setenv("TESSERA_CPU_DTYPES", "float32,bfloat16")
    result = runner.invoke(app, ["platform", "show", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        "  dtypes: float32, bfloat16" in lines and "  graphs: no" in lines and "  dist backend: gloo" in lines
    )
    assert "{" not in result.output  # no Python dict repr


def test_conformance_show_of_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    missing = runner.invoke(app, ["conformance", "show", str(tmp_path / "nonexistent.json")])
    assert missing.exit_code == 2 and "cannot use" in missing.output and "No such file" in missing.output
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"hello": 1}))
    wrong = runner.invoke(app, ["conformance", "show", str(foreign)])
    assert wrong.exit_code == 2 and "is not a conformance report" in wrong.output
    assert "Traceback" not in missing.output + wrong.output


def test_explain_defaults_to_the_dtype_the_engine_runs(fresh_discovery, monkeypatch, checkpoints_dir_llama):
    monkeypatch.setenv("TESSERA_CPU_DTYPES", "float32,bfloat16")
    built_in = json.loads(runner.invoke(app, ["kernels", "explain", "rms_norm", "--json"]).stdout)
    assert built_in["dtype"] == "float32" and "built-in model" in built_in["dtype_source"]
    checkpoint = ModelSpec.from_dir(str(checkpoints_dir_llama)).torch_dtype
    given = runner.invoke(
        app, ["kernels", "explain", "rms_norm", "--json", "--model", str(checkpoints_dir_llama)]
    )
    assert json.loads(given.stdout)["dtype"] == auto_dtype(checkpoint, ("float32", "bfloat16"))
    chosen = runner.invoke(app, ["kernels", "explain", "rms_norm", "--json", "--dtype", "bfloat16"])
    assert json.loads(chosen.stdout)["dtype"] == "bfloat16"


def test_auto_dtype_prefers_the_checkpoints_own():
    assert auto_dtype("float32", ("float32", "bfloat16")) == "float32"
    assert auto_dtype("bfloat16", ("float32", "bfloat16")) == "bfloat16"
    assert auto_dtype("bfloat16", ("float32",)) == "float32"
    assert auto_dtype(None, ("float32", "float16", "bfloat16")) == "bfloat16"


def test_generate_shows_progress_unless_asked_not_to(checkpoints_dir_llama, capsys):
    llm = LLM(str(checkpoints_dir_llama), max_model_len=64)
    params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    prompts = [{"prompt_token_ids": [4, 5, 6]}, {"prompt_token_ids": [7, 8]}]
    llm.generate(prompts, params)
    shown = capsys.readouterr().err
    assert "Processed prompts" in shown and "2/2" in shown and "output" in shown and "tok/s" in shown
    llm.generate(prompts, params, use_tqdm=False)
    assert capsys.readouterr().err == ""
