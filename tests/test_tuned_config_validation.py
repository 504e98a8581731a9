"""Tuned-config files are validated strictly and a bad one is reported and ignored: values must match a
candidate by type and value, the schema version must be one this tessera reads, and every message names
the file, the field and the value."""

from __future__ import annotations

import json
import logging

import pytest

from .test_tuning import KEY, SPACE, lookup, write


@pytest.mark.parametrize(
    ("config", "field", "bad"),
    [
        (
            {"BLOCK": 256.0, "num_warps": 2},
            "configs.tokens=1,hidden=1",
            "BLOCK=256.0 (float) is not a candidate",
        ),
        (
            {"BLOCK": 256, "num_warps": True},
            "configs.tokens=1,hidden=1",
            "num_warps=True (bool) is not a candidate",
        ),
        (
            {"BLOCK": "256", "num_warps": 2},
            "configs.tokens=1,hidden=1",
            "BLOCK='256' (str) is not a candidate",
        ),
    ],
)
def test_config_values_must_match_candidates_by_type(tmp_path, monkeypatch, caplog, config, field, bad):
    """A float where an int belongs crashed the Triton launch: membership is by type and value, and a bad
    file is reported (file, field, value) and ignored, the next file serving instead."""
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    path = write(tmp_path, "NVIDIA_H100", {"tokens=1,hidden=1": config})
    write(tmp_path, "sm_90", {"tokens=1,hidden=1": {"BLOCK": 64, "num_warps": 2}})
    with caplog.at_level(logging.WARNING, logger="tessera.tuning"):
        found = lookup([tmp_path])
    (error,) = found.errors
    assert str(path) in error and f"field {field}" in error and bad in error
    assert "(64, 128, 256; of type int)" in error or "(2, 4; of type int)" in error
    assert error in caplog.text
    got = found.get(KEY.of(tokens=1, hidden=1))
    assert got == {"BLOCK": 64, "num_warps": 2} and all(type(v) is int for v in got.values())
    assert SPACE.problem({"BLOCK": 128, "num_warps": 4}) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"schema_version": 99}, "field schema_version: schema_version 99 is not one this tessera reads (1)"),
        ({"schema_version": True}, "field schema_version: schema_version True is not one this tessera reads"),
        ({"key_fields": None}, "field key_fields: Input should be a valid array (got None)"),
        (
            {"configs": {"tokens=1,hidden=1": {"BLOCK": None, "num_warps": 2}}},
            "field configs.tokens=1,hidden=1.BLOCK",
        ),
        (
            {"kernel": None, "device": 3},
            "field kernel: Input should be a valid string (got None); field device",
        ),
    ],
)
def test_schema_problems_name_the_file_the_field_and_the_value(tmp_path, monkeypatch, change, expected):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    path = write(tmp_path, "NVIDIA_H100", {"tokens=1,hidden=1": {"BLOCK": 64, "num_warps": 2}})
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    found = lookup([tmp_path])
    (error,) = found.errors
    assert error.startswith(f"{path}: ") and expected in error
    assert "validation error for TunedConfigFile" not in error
    assert found.get(KEY.of(tokens=1, hidden=1)) == SPACE.default  # ignored, never fatal


def test_invalid_json_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TESSERA_TUNED_CONFIG_DIR", raising=False)
    path = tmp_path / "k" / "NVIDIA_H100.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"kernel": "k", ')
    (error,) = lookup([tmp_path]).errors
    assert error.startswith(f"{path}: not valid JSON")
