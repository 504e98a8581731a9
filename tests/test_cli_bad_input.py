"""Bad arguments to the kernels and tune commands are one clear error each, not a traceback or an empty answer."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.errors import ConfigError
from tessera.pluggable_layers.tuning import parse_shape

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
    [("garbage", "give tokens, hidden as NAME=POSITIVE_INTEGER"), ("tokens=abc,hidden=64", "POSITIVE_INTEGER"),
     ("tokens=-1,hidden=64", "POSITIVE_INTEGER"), ("tokens=0,hidden=64", "POSITIVE_INTEGER"),
     ("tokens=8", "lacks hidden"), ("tokens=8,hidden=64,extra=1", "NAME=POSITIVE_INTEGER")],
)  # fmt: skip
def test_a_shape_that_is_not_the_kernels_is_a_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shape(text, ["tokens", "hidden"])
    assert parse_shape("tokens=8, hidden=64", ["tokens", "hidden"]) == {"tokens": 8, "hidden": 64}
