"""Bad arguments to the kernels and tune commands are one clear error each, not a traceback or an empty answer."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.cli.common import parse_shape
from tessera.errors import ConfigError

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kernels", "list", "--platform", "nosuch"], "nosuch"),
        (["kernels", "list", "--op", "nosuch"], "no op 'nosuch'; the ops are"),
        (["kernels", "explain", "rms_norm", "--dtype", "garbage"], "--dtype 'garbage': use one of float32"),
    ],
)
def test_kernels_commands_refuse_names_that_mean_nothing(args, message, fresh_discovery):
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [("garbage", "give tokens, hidden as NAME=VALUE"), ("tokens=abc,hidden=64", "NAME=VALUE"),
     ("tokens=-1,hidden=64", "NAME=VALUE"), ("tokens=8", "lacks hidden"), ("tokens=8,hidden=64,extra=1", "NAME=VALUE")],
)  # fmt: skip
def test_a_shape_that_is_not_the_kernels_is_a_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shape(text, ["tokens", "hidden"])
    assert parse_shape("tokens=8, hidden=64", ["tokens", "hidden"]) == {"tokens": 8, "hidden": 64}
    assert parse_shape("tokens=8,decode=0,dtype=bfloat16", ["tokens", "decode", "dtype"]) == {
        "tokens": 8, "decode": 0, "dtype": "bfloat16"}  # fmt: skip


def test_conformance_show_of_a_file_that_is_not_text(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_bytes(b"\xff\xfe{}")
    result = runner.invoke(app, ["conformance", "show", str(bad)])
    assert (
        result.exit_code != 0
        and "is not a conformance report" in result.output
        and "Traceback" not in result.output
    )


def test_a_chat_template_that_is_not_utf8_is_a_clear_error(tmp_path):
    from tessera.chat import ChatTemplateError, load_chat_template

    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "chat_template.jinja").write_bytes(b"\xff{{ messages }}")
    with pytest.raises(ChatTemplateError, match="is not UTF-8 text"):
        load_chat_template(tmp_path)


def test_generate_refuses_a_zero_context_and_a_call_without_prompts(fresh_discovery, tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["generate", "--max-model-len", "0"])
    assert result.exit_code == 2 and "max_model_len must be positive" in result.output, result.output
    assert "Value error" not in result.output
    from tessera import LLM
    from tessera.models.presets import preset_dir

    llm = LLM(preset_dir("tiny-llama"), load_format="random")
    with pytest.raises(ConfigError, match="takes a prompt or a list of prompts"):
        llm.generate(None)
